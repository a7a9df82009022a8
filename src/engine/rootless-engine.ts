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
 *
 * The API socket is made by the agent before the engine starts and handed to dockerd as a
 * systemd-style activated socket (`--host=fd://`, LISTEN_FDS=1): it accepts connections from the
 * first millisecond, and a client that connects while the engine is still starting waits in the
 * socket's queue until dockerd serves it. So the listener need not wait for the engine; a job's
 * first `docker` call waits for whatever of the start is left. When the engine dies every copy
 * of the socket closes with it, so a waiting client gets an error, never a hang.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { ProcessContainer } from '../lib/cgroup.js';
import { signalGroup } from '../lib/process.js';

/**
 * How long the engine may take to answer its first /_ping: about one second on an idle host
 * (rootlesskit copies /etc up, dockerd starts containerd); thirty covers a host busy with the
 * previous job's cleanup without holding a broken engine forever (past it the engine is killed,
 * and clients waiting on its socket get an error).
 */
export const ENGINE_START_TIMEOUT_MS = 30_000;
/** One /_ping's limit on a running engine; it answers without touching disk. */
const PING_TIMEOUT_MS = 2_000;
/**
 * The activated socket's descriptor in rootlesskit's process (moved to 3 for dockerd by the
 * child's shell). A single digit, which every shell can redirect, and above what rootlesskit's
 * parent hands its child (3-5), so nothing in between clobbers it.
 */
const ACTIVATION_FD = 9;
/** Connections queued while the engine starts (the kernel caps it at somaxconn). */
const ACTIVATION_BACKLOG = 511;

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
  /**
   * Who starts containerd: dockerd, once it is up (`managed`, dockerd's default), or the child's
   * shell beside dockerd (`beside`), so that containerd's start overlaps dockerd's own.
   */
  containerd?: 'managed' | 'beside';
  /** dockerd's storage driver (default vfs; see {@link StorageDriver}). */
  storageDriver?: StorageDriver;
  container: ProcessContainer;
  signal: AbortSignal;
}

/**
 * vfs works on every kernel and copies every layer in full; overlay2 needs overlayfs mounts in a
 * user namespace (Linux 5.11 and later) on a data root whose filesystem can be an upper layer.
 */
export type StorageDriver = 'vfs' | 'overlay2';

/** A spawned engine: its socket already accepts connections, `ready` says when it serves them. */
export interface StartedEngine {
  pid: number;
  socket: string;
  /**
   * Milliseconds from spawn to the first /_ping answer; rejects with EngineStartError (the engine
   * exited, did not answer within ENGINE_START_TIMEOUT_MS, or the start was aborted).
   */
  ready: Promise<number>;
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
export function engineArgs(o: Pick<StartOptions, 'layout' | 'mirror' | 'hostLoopback' | 'net' | 'containerd' | 'storageDriver'>): string[] {
  const { layout } = o;
  const hostNet = o.net === 'host';
  const beside = o.containerd === 'beside';
  const dockerd = [
    'dockerd',
    `--data-root=${layout.dataRoot}`,
    `--exec-root=${layout.execRoot}`,
    // The socket the agent made (startEngine); dockerd neither creates nor removes it.
    '--host=fd://',
    `--pidfile=${path.join(layout.dir, 'dockerd.pid')}`,
    `--storage-driver=${o.storageDriver ?? 'vfs'}`,
    // No daemon.json of the runner user's or the host's: the engine's settings are these flags.
    `--config-file=${path.join(layout.dir, 'daemon.json')}`,
    ...(o.mirror ? [`--registry-mirror=${o.mirror}`, `--insecure-registry=${new URL(o.mirror).host}`] : []),
    // Without a network namespace of its own the engine may not touch the host's links or netfilter.
    ...(hostNet ? ['--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false'] : []),
    // In its own namespace the engine's ~60 iptables runs (a second or more of its start, each a
    // fork and exec) are replaced by the one rule below. What that gives up: dockerd's isolation
    // between the job's own bridge networks (they are one job's; other jobs have other engines).
    ...(hostNet ? [] : ['--iptables=false', '--ip6tables=false']),
    ...(beside ? [`--containerd=${containerdSocket(layout)}`] : []),
  ];
  // The child clears /run's copied-up docker leftovers, as dockerd-rootless.sh does, (in its own
  // network namespace) masquerades every bridge's traffic out through slirp's tap0, and hands
  // the agent's socket to dockerd as systemd would (LISTEN_PID is the shell's pid, which exec keeps).
  const masq = hostNet ? '' : 'iptables -w -t nat -A POSTROUTING -o tap0 -j MASQUERADE || exit 1; ';
  const activate = `exec 3<&${ACTIVATION_FD} ${ACTIVATION_FD}<&-; export LISTEN_FDS=1 LISTEN_PID=$$; `;
  const containerd = beside ? `containerd --config '${containerdConfig(layout)}' ${ACTIVATION_FD}<&- & ` : '';
  const child = `rm -f /run/docker /run/containerd /run/xtables.lock; ${masq}${containerd}${activate}exec "$@"`;
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

/** containerd's socket where dockerd's managed containerd would put it (socketPathProblem's limit holds). */
function containerdSocket(layout: EngineLayout): string {
  return path.join(layout.execRoot, 'containerd', 'containerd.sock');
}

function containerdConfig(layout: EngineLayout): string {
  return path.join(layout.dir, 'containerd.toml');
}

/**
 * containerd's configuration when the child starts it beside dockerd: the roots dockerd would
 * give its managed containerd, and the plugins that only probe and fail in a rootless engine
 * (CRI, and snapshotters for filesystems the data root is not on) left out.
 */
function containerdToml(layout: EngineLayout): string {
  const disabled = ['cri', 'aufs', 'btrfs', 'devmapper', 'zfs'].map((p) =>
    p === 'cri' ? '"io.containerd.grpc.v1.cri"' : `"io.containerd.snapshotter.v1.${p}"`,
  );
  return [
    'version = 2',
    `root = ${JSON.stringify(path.join(layout.dataRoot, 'containerd', 'daemon'))}`,
    `state = ${JSON.stringify(path.join(layout.execRoot, 'containerd', 'daemon'))}`,
    `disabled_plugins = [${disabled.join(', ')}]`,
    '[grpc]',
    `  address = ${JSON.stringify(containerdSocket(layout))}`,
    '[ttrpc]',
    `  address = ${JSON.stringify(`${containerdSocket(layout)}.ttrpc`)}`,
    '',
  ].join('\n');
}

/** Creates the engine directory (runner user, 0700) with an empty daemon.json and containerd's configuration. */
export async function createEngineDir(layout: EngineLayout, user: { uid: number; gid: number }): Promise<void> {
  await fsp.mkdir(layout.dir, { mode: 0o700 });
  await fsp.mkdir(layout.runtimeDir, { mode: 0o700 });
  await fsp.writeFile(path.join(layout.dir, 'daemon.json'), '{}\n', { mode: 0o644 });
  await fsp.writeFile(containerdConfig(layout), containerdToml(layout), { mode: 0o644 });
  for (const p of [layout.dir, layout.runtimeDir, path.join(layout.dir, 'daemon.json'), containerdConfig(layout)])
    await fsp.chown(p, user.uid, user.gid);
}

/**
 * Makes the engine's API socket (owned by the runner user, 0600) before the engine exists and
 * returns its listening descriptor for the engine to inherit; `close` drops the agent's copy.
 * It is bound under a temporary name and renamed: Node unlinks a socket's bound path when it
 * closes it, and the agent closes its copy as soon as the engine holds one.
 */
export async function listenEngineSocket(
  layout: EngineLayout,
  user: { uid: number; gid: number },
): Promise<{ fd: number; close: () => void }> {
  const tmp = `${layout.socket}.tmp`;
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path: tmp, backlog: ACTIVATION_BACKLOG }, resolve);
  });
  const close = (): void => void server.close();
  try {
    await fsp.lchown(tmp, user.uid, user.gid);
    await fsp.chmod(tmp, 0o600);
    await fsp.rename(tmp, layout.socket);
  } catch (err) {
    close();
    throw err;
  }
  const fd = (server as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    close();
    throw new EngineStartError('the engine socket has no descriptor to hand over', '');
  }
  return { fd, close };
}

/** What spawnEngine needs: the full rootlesskit arguments (engineArgs, or a variant of them in the bench). */
export interface SpawnOptions {
  layout: EngineLayout;
  user: { uid: number; gid: number };
  rootlesskit: string;
  args: string[];
  path: string;
  /** The engine's cgroup; its path undefined = none (the process joins it before exec). */
  containerPath?: string;
}

/**
 * Spawns rootlesskit (→ dockerd) as the runner user with the activated socket, inside the given
 * cgroup from its first instruction. Resolves once it runs; the socket accepts from then on.
 */
export async function spawnEngine(o: SpawnOptions): Promise<{ child: ChildProcess; pid: number; spawnedAt: number }> {
  const { layout } = o;
  const log = await fsp.open(layout.log, 'a', 0o600);
  await fsp.chown(layout.log, o.user.uid, o.user.gid);
  const drop = ['setpriv', `--reuid=${o.user.uid}`, `--regid=${o.user.gid}`, '--clear-groups', '--', o.rootlesskit, ...o.args];
  const [cmd, args] =
    o.containerPath === undefined
      ? [drop[0] as string, drop.slice(1)]
      : ['/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', o.containerPath, ...drop]];
  let sock: { fd: number; close: () => void } | undefined;
  try {
    sock = await listenEngineSocket(layout, o.user);
    const stdio: Array<'ignore' | number> = ['ignore', log.fd, log.fd];
    for (let fd = 3; fd < ACTIVATION_FD; fd++) stdio.push('ignore');
    stdio.push(sock.fd);
    const spawnedAt = Date.now();
    const child = spawn(cmd, args, {
      cwd: layout.dir,
      detached: true,
      stdio,
      env: { PATH: o.path, HOME: layout.dir, XDG_RUNTIME_DIR: layout.runtimeDir, LANG: 'C.UTF-8' },
    });
    child.on('error', () => undefined);
    child.unref();
    if (child.pid === undefined) throw new EngineStartError('the engine could not be spawned', await logTail(layout.log));
    return { child, pid: child.pid, spawnedAt };
  } finally {
    // The engine holds its own copy now (or never will): the agent's must not keep the socket open.
    sock?.close();
    await log.close();
  }
}

/**
 * Spawns the engine and returns at once (after `onSpawn`, which records the pid before anything
 * else can fail); `ready` settles with its first answer.
 */
export async function startEngine(o: StartOptions, onSpawn: (pid: number) => Promise<void>): Promise<StartedEngine> {
  const { layout } = o;
  const { child, pid, spawnedAt } = await spawnEngine({
    layout,
    user: o.user,
    rootlesskit: o.rootlesskit,
    args: engineArgs(o),
    path: o.path,
    ...(o.container.path !== undefined ? { containerPath: o.container.path } : {}),
  });
  await onSpawn(pid);
  return { pid, socket: layout.socket, ready: firstAnswer(child, layout, spawnedAt, o.signal) };
}

/**
 * Milliseconds from `spawnedAt` to the engine's first answer. The activated socket queues the
 * ping until dockerd serves it, so one ping that may wait out the whole start replaces a poll;
 * it ends early (false) when every copy of the socket closed, i.e. the engine died.
 */
async function firstAnswer(child: ChildProcess, layout: EngineLayout, spawnedAt: number, signal: AbortSignal): Promise<number> {
  const deadline = spawnedAt + ENGINE_START_TIMEOUT_MS;
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  while (Date.now() < deadline && !signal.aborted && !exited()) {
    if (await ping(layout.socket, deadline - Date.now(), signal)) return Date.now() - spawnedAt;
    // Refused or reset: the engine is dying; let its exit be seen rather than spinning.
    await new Promise((r) => setTimeout(r, 20));
  }
  if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
  const why = signal.aborted
    ? 'engine start aborted'
    : exited()
      ? `the engine exited (${child.exitCode ?? child.signalCode}) before answering`
      : `the engine did not answer within ${ENGINE_START_TIMEOUT_MS} ms`;
  throw new EngineStartError(why, await logTail(layout.log));
}

/** True when an engine answers `GET /_ping` on `socket`. */
export function ping(socket: string, timeoutMs = PING_TIMEOUT_MS, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const opts = { socketPath: socket, path: '/_ping', method: 'GET', timeout: Math.max(1, timeoutMs), ...(signal ? { signal } : {}) };
    const req = http.request(opts, (res) => {
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
