/**
 * Starts and stops one rootless dockerd for one job. The engine runs as the runner user (no
 * supplementary groups) inside rootlesskit's user, mount, network and pid namespaces, so
 * whatever a job asks of it (--privileged, -v /:/host, --pid=host) gets at most the runner user's
 * own rights on the host. Everything it writes lives under the job's engine directory:
 *
 * ```
 *  <job.dir>/engine/            runner user, 0700
 *    run/                       XDG_RUNTIME_DIR (rootlesskit state in run/rootlesskit)
 *    data/  exec/               --data-root, --exec-root
 *    docker.sock                DOCKER_HOST for the listener
 *    engine.log                 rootlesskit's and dockerd's output
 * ```
 * The whole tree of processes sits in one cgroup of its own and in rootlesskit's pid namespace:
 * killing the namespace's first process kills every container with it.
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { ProcessContainer } from '../lib/cgroup.js';
import { signalGroup } from '../lib/process.js';

/**
 * How long the engine may take to answer its first /_ping: about one second on an idle host
 * (rootlesskit copies /etc up, dockerd starts containerd); thirty covers a host busy with the
 * previous job's cleanup without holding a broken engine forever.
 */
export const ENGINE_START_TIMEOUT_MS = 30_000;
/**
 * Poll interval for the first answer. The socket exists early in dockerd's start and a ping on
 * it waits until the API serves, so the poll only matters before the socket appears: 10 ms of
 * failed connects cost nothing.
 */
const PING_POLL_MS = 10;
/** One /_ping's limit; the engine answers it without touching disk. */
const PING_TIMEOUT_MS = 2_000;

/** The files of one job's engine. */
export interface EngineLayout {
  dir: string;
  runtimeDir: string;
  dataRoot: string;
  execRoot: string;
  socket: string;
  log: string;
  /** Root-owned record of what was started (pid, cgroup) so a restarted agent can stop it. */
  record: string;
}

/** The engine directory of a job (a child of the root-owned per-job directory). */
export function engineLayout(jobDir: string): EngineLayout {
  return engineLayoutAt(path.join(jobDir, 'engine'), path.join(jobDir, 'engine.json'));
}

/**
 * An engine directory anywhere under a root-owned 0711 parent (a warm engine started before its
 * job existed lives beside the per-job directories); `record` is its root-owned record.
 */
export function engineLayoutAt(dir: string, record: string): EngineLayout {
  return {
    dir,
    runtimeDir: path.join(dir, 'run'),
    dataRoot: path.join(dir, 'data'),
    execRoot: path.join(dir, 'exec'),
    socket: path.join(dir, 'docker.sock'),
    log: path.join(dir, 'engine.log'),
    record,
  };
}

/** What start needs besides the layout. */
export interface StartOptions {
  layout: EngineLayout;
  user: { uid: number; gid: number };
  /** rootlesskit's path. */
  rootlesskit: string;
  /** PATH the engine sees (must hold dockerd, containerd, runc, slirp4netns). */
  path: string;
  /** Registry mirror URL as the engine must reach it (already translated for slirp4netns). */
  mirror?: string;
  /** Allow the engine to reach the host's loopback (only for a loopback mirror). */
  hostLoopback: boolean;
  /**
   * rootlesskit's network: slirp4netns (default; needs /dev/net/tun, gives the engine bridges of
   * its own) or host (no tun, but no bridge networks: `docker network create` and service
   * containers fail; measured for docs/docker.md, not offered by the policy).
   */
  net?: 'slirp4netns' | 'host';
  container: ProcessContainer;
  signal: AbortSignal;
}

/** A started engine. */
export interface StartedEngine {
  pid: number;
  socket: string;
  /** Milliseconds from spawn to the first /_ping answer. */
  startMs: number;
}

/** Thrown when the engine does not come up; `log` holds the tail of its output. */
export class EngineStartError extends Error {
  override readonly name = 'EngineStartError';
  constructor(
    message: string,
    readonly log: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The longest socket path containerd accepts for its ttrpc socket, `<exec root>/containerd/
 * containerd.sock.ttrpc`, the longest socket an engine makes: 104 bytes (measured with Debian's
 * containerd 1.6: 105 fails). Past it dockerd waits 15 s for a containerd that never listens.
 */
export const MAX_ENGINE_SOCKET_BYTES = 104;

/** Why an engine cannot start in `layout` (its directory is too deep for its sockets), or undefined. */
export function socketPathProblem(layout: EngineLayout): { what: string; fix: string } | undefined {
  const longest = path.join(layout.execRoot, 'containerd', 'containerd.sock.ttrpc');
  const over = Buffer.byteLength(longest) - MAX_ENGINE_SOCKET_BYTES;
  if (over <= 0) return undefined;
  return {
    what: `the engine directory ${layout.dir} is too deep: containerd's socket ${longest} would be ${over} bytes over the ${MAX_ENGINE_SOCKET_BYTES} a socket address takes`,
    fix: `a runner.jobRoot (or runner name) at least ${over} characters shorter`,
  };
}

/** rootlesskit's and dockerd's arguments; exported for the docs and the tests. */
export function engineArgs(o: Pick<StartOptions, 'layout' | 'mirror' | 'hostLoopback' | 'net'>): string[] {
  const { layout } = o;
  const hostNet = o.net === 'host';
  const dockerd = [
    'dockerd',
    `--data-root=${layout.dataRoot}`,
    `--exec-root=${layout.execRoot}`,
    `--host=unix://${layout.socket}`,
    `--pidfile=${path.join(layout.dir, 'dockerd.pid')}`,
    '--storage-driver=vfs',
    // No daemon.json of the runner user's or the host's: the engine's settings are these flags.
    `--config-file=${path.join(layout.dir, 'daemon.json')}`,
    ...(o.mirror ? [`--registry-mirror=${o.mirror}`, `--insecure-registry=${new URL(o.mirror).host}`] : []),
    // Without a network namespace of its own the engine may not touch the host's links or netfilter.
    ...(hostNet ? ['--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false'] : []),
    // In its own namespace the engine's ~60 iptables runs (a second or more of its start, each a
    // fork and exec) are replaced by the one rule below. What that gives up: dockerd's isolation
    // between the job's own bridge networks (they are one job's; other jobs have other engines).
    ...(hostNet ? [] : ['--iptables=false', '--ip6tables=false']),
  ];
  // The child clears /run's copied-up docker leftovers, as dockerd-rootless.sh does, and (in its
  // own network namespace) masquerades every bridge's traffic out through slirp's tap0.
  const masq = hostNet ? '' : 'iptables -w -t nat -A POSTROUTING -o tap0 -j MASQUERADE || exit 1; ';
  const child = `rm -f /run/docker /run/containerd /run/xtables.lock; ${masq}exec "$@"`;
  const net = hostNet
    ? ['--net=host']
    : [
        '--net=slirp4netns',
        '--mtu=65520',
        '--slirp4netns-sandbox=auto',
        '--slirp4netns-seccomp=auto',
        ...(o.hostLoopback ? [] : ['--disable-host-loopback']),
        '--port-driver=builtin',
      ];
  return [
    ...net,
    // /etc/subuid and /etc/subgid as the host checks read them, without four getsubids runs.
    '--subid-source=static',
    '--copy-up=/etc',
    '--copy-up=/run',
    '--pidns',
    `--state-dir=${path.join(layout.runtimeDir, 'rootlesskit')}`,
    '/bin/sh',
    '-c',
    child,
    'engine',
    ...dockerd,
  ];
}

/** Creates the engine directory (runner user, 0700) with an empty daemon.json. */
export async function createEngineDir(layout: EngineLayout, user: { uid: number; gid: number }): Promise<void> {
  await fsp.mkdir(layout.dir, { mode: 0o700 });
  await fsp.mkdir(layout.runtimeDir, { mode: 0o700 });
  await fsp.writeFile(path.join(layout.dir, 'daemon.json'), '{}\n', { mode: 0o644 });
  for (const p of [layout.dir, layout.runtimeDir, path.join(layout.dir, 'daemon.json')]) await fsp.chown(p, user.uid, user.gid);
}

/**
 * Spawns rootlesskit → dockerd as the runner user, inside `container` from its first
 * instruction, and waits for the first API answer. The caller records the pid before anything
 * else can fail.
 */
export async function startEngine(o: StartOptions, onSpawn: (pid: number) => Promise<void>): Promise<StartedEngine> {
  const { layout } = o;
  const log = await fsp.open(layout.log, 'a', 0o600);
  await fsp.chown(layout.log, o.user.uid, o.user.gid);
  const drop = ['setpriv', `--reuid=${o.user.uid}`, `--regid=${o.user.gid}`, '--clear-groups', '--', o.rootlesskit, ...engineArgs(o)];
  const [cmd, args] =
    o.container.path === undefined
      ? [drop[0] as string, drop.slice(1)]
      : ['/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', o.container.path, ...drop]];
  const started = Date.now();
  const child = spawn(cmd, args, {
    cwd: layout.dir,
    detached: true,
    stdio: ['ignore', log.fd, log.fd],
    env: { PATH: o.path, HOME: layout.dir, XDG_RUNTIME_DIR: layout.runtimeDir, LANG: 'C.UTF-8' },
  });
  await log.close();
  const pid = child.pid;
  child.on('error', () => undefined);
  child.unref();
  if (pid === undefined) throw new EngineStartError('the engine could not be spawned', await logTail(layout.log));
  await onSpawn(pid);
  const deadline = started + ENGINE_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (o.signal.aborted) break;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new EngineStartError(`the engine exited (${child.exitCode ?? child.signalCode}) before answering`, await logTail(layout.log));
    }
    if (await ping(layout.socket)) return { pid, socket: layout.socket, startMs: Date.now() - started };
    await new Promise((r) => setTimeout(r, PING_POLL_MS));
  }
  signalGroup(pid, 'SIGKILL');
  throw new EngineStartError(
    o.signal.aborted ? 'engine start aborted' : `the engine did not answer within ${ENGINE_START_TIMEOUT_MS} ms`,
    await logTail(layout.log),
  );
}

/** True when an engine answers `GET /_ping` on `socket`. */
export function ping(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: socket, path: '/_ping', method: 'GET', timeout: PING_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** The last lines of the engine's log (for error messages), at most 1 KiB. */
export async function logTail(file: string): Promise<string> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).slice(-6).join(' | ').slice(-1024);
}
