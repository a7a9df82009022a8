import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { DockerApi } from '../../src/cleanup/docker-api.js';

const run = promisify(execFile);

/**
 * How long dockerd may take to answer /version: it starts its own containerd first; on this
 * 2-core machine that takes one to three seconds, twenty covers a loaded host.
 */
const START_TIMEOUT_MS = 20_000;
/** Grace after SIGTERM before SIGKILL: dockerd stops its containers and containerd first. */
const STOP_GRACE_MS = 15_000;

/** A dockerd of the test's own, confined to its lab root. */
export interface Dockerd {
  socket: string;
  /** Runs the docker CLI against this engine. */
  docker(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** Why dockerd could not start, for a test's skip message; undefined when it started. */
export type DockerdStart = { ok: true; dockerd: Dockerd } | { ok: false; reason: string };

/** Paths dockerd 20.10 writes outside its --data-root/--exec-root, removed after if it made them. */
const HOST_LEFTOVERS = ['/run/docker', '/run/containerd', '/etc/docker/key.json', '/var/run/docker'];

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts dockerd with its own data root, exec root, unix socket and pidfile inside
 * `root`, vfs storage, and no host network changes (no iptables, no default bridge, no ip_forward).
 * Containers get a cgroup parent of their own so their cgroup directories can be removed after.
 */
export async function startDockerd(root: string): Promise<DockerdStart> {
  const dir = path.join(root, 'docker');
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const socket = path.join(dir, 'docker.sock');
  const preexisting = new Map<string, boolean>();
  for (const p of HOST_LEFTOVERS) preexisting.set(p, await exists(p));
  const cgroupParent = `rw-test-${randomBytes(4).toString('hex')}`;
  // An empty config of its own, so a host /etc/docker/daemon.json changes nothing here.
  const config = path.join(dir, 'daemon.json');
  await fsp.writeFile(config, '{}\n');
  const log = await fsp.open(path.join(dir, 'dockerd.log'), 'w');
  const tmp = path.join(dir, 'tmp');
  await fsp.mkdir(tmp, { mode: 0o700 });
  let child: ChildProcess;
  try {
    child = spawn(
      'dockerd',
      [
        `--data-root=${path.join(dir, 'data')}`,
        `--exec-root=${path.join(dir, 'exec')}`,
        `--host=unix://${socket}`,
        `--pidfile=${path.join(dir, 'docker.pid')}`,
        '--storage-driver=vfs',
        '--iptables=false',
        '--ip6tables=false',
        '--bridge=none',
        '--ip-forward=false',
        '--ip-masq=false',
        `--cgroup-parent=/${cgroupParent}`,
        `--config-file=${config}`,
      ],
      // TMPDIR in the test's root: containerd dumps its goroutine stacks to the temp directory
      // (containerd.<pid>.stacks.log, at a slow health check under load), else the machine's /tmp.
      { stdio: ['ignore', log.fd, log.fd], detached: true, env: { ...process.env, TMPDIR: tmp } },
    );
  } catch (err) {
    await log.close();
    return { ok: false, reason: `dockerd could not be spawned: ${String(err)}` };
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined);
  const api = new DockerApi(socket);
  const deadline = Date.now() + START_TIMEOUT_MS;
  let up = false;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      await api.version();
      up = true;
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(dir, 'cli') };
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }, STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    await log.close().catch(() => undefined);
    // Mounts dockerd may have left under its roots (vfs has none, netns files may linger).
    const mounts = await fsp.readFile('/proc/self/mountinfo', 'utf8');
    for (const line of mounts.split('\n')) {
      const mp = line.split(' ')[4];
      if (mp && mp.startsWith(`${dir}/`)) await run('umount', ['-l', mp]).catch(() => undefined);
    }
    for (const [p, was] of preexisting) if (!was) await fsp.rm(p, { recursive: true, force: true }).catch(() => undefined);
    for (const ctrl of await fsp.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
      await fsp.rmdir(path.join('/sys/fs/cgroup', ctrl, cgroupParent)).catch(() => undefined);
    }
  };
  if (!up) {
    await stop();
    const tail = (await fsp.readFile(path.join(dir, 'dockerd.log'), 'utf8').catch(() => '')).split('\n').slice(-5).join(' | ');
    return { ok: false, reason: `dockerd did not answer within ${START_TIMEOUT_MS} ms: ${tail}` };
  }
  return {
    ok: true,
    dockerd: {
      socket,
      async docker(...args: string[]) {
        const { stdout } = await run('docker', args, { env, timeout: 60_000 });
        return stdout.trim();
      },
      stop,
    },
  };
}

/** Builds a busybox-static rootfs tar and imports it as `repo:tag`. */
export async function importBusybox(d: Dockerd, root: string, ref: string): Promise<void> {
  const rootfs = path.join(root, 'busybox-rootfs');
  await fsp.mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await fsp.copyFile('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  await fsp.chmod(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const app of ['sh', 'ls', 'cat', 'sleep', 'echo', 'touch']) {
    await fsp.symlink('busybox', path.join(rootfs, 'bin', app));
  }
  const tar = path.join(root, 'busybox-rootfs.tar');
  await run('tar', ['-C', rootfs, '-cf', tar, '.']);
  await d.docker('import', '-c', 'CMD ["/bin/sh"]', tar, ref);
}
