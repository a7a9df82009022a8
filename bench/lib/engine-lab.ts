/**
 * What the engine and image-cache benches share: a throwaway runner user in a root of its own,
 * /dev/net/tun held for its rootless engines, the docker CLI pointed at one engine's socket (and
 * timed), a job's engine awaited until it answers, medians.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { openTun } from '../../src/sim/tun.js';
import { ping } from '../../src/engine/rootless-engine.js';
import { createLogger } from '../../src/lib/log.js';

const execFileP = promisify(execFile);

/** A bench's runner user and root; `dispose` kills what the user left and removes all of it. */
export interface EngineLab {
  root: string;
  name: string;
  uid: number;
  gid: number;
  dispose(): Promise<void>;
}

/**
 * Makes `<tmp>/rw-bench-<what>-XXXX` (0755, with a 0711 `jobs/`), a user `<prefix><hex>` homed in
 * it, and holds /dev/net/tun; `cgroupParent` is the engines' cgroup parent, removed on dispose.
 */
export async function makeEngineLab(what: string, prefix: string, cgroupParent: string): Promise<EngineLab> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), `rw-bench-${what}-`));
  await fsp.chmod(root, 0o755);
  const name = `${prefix}${randomBytes(3).toString('hex')}`;
  execFileSync('useradd', ['-m', '-d', path.join(root, name), '-s', '/bin/sh', name]);
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }));
  const closeTun = await openTun();
  await fsp.mkdir(path.join(root, 'jobs'), { mode: 0o711 });
  return {
    root,
    name,
    uid,
    gid,
    async dispose() {
      await closeTun();
      try {
        execFileSync('pkill', ['-KILL', '-U', String(uid)]);
      } catch {
        // nothing left
      }
      execFileSync('userdel', ['-f', name]);
      await fsp.rm(root, { recursive: true, force: true });
      for (const ctrl of await fsp.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
        await fsp.rmdir(path.join('/sys/fs/cgroup', ctrl, cgroupParent)).catch(() => undefined);
      }
    },
  };
}

/** The docker CLI against one engine; asynchronous, so an in-process paced upstream keeps serving. */
export async function docker(socket: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('docker', args, {
    env: { PATH: process.env.PATH, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: '/nonexistent' },
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  return stdout.trim();
}

/** The median of `xs` (NaN for none). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** The guards' context for a bench: warnings to stderr, a fresh 10-minute signal at each read. */
export function benchGuardContext(): { log: ReturnType<typeof createLogger>; readonly signal: AbortSignal } {
  return {
    log: createLogger({ level: 'warn', destination: { write: (l: string) => void process.stderr.write(l) } }),
    get signal(): AbortSignal {
      return AbortSignal.timeout(600_000);
    },
  };
}

/** How long one docker CLI call against `socket` takes, in ms. */
export async function timedDocker(socket: string, ...args: string[]): Promise<number> {
  const t = performance.now();
  await docker(socket, ...args);
  return performance.now() - t;
}

/**
 * Waits until the engine on a prepared job's DOCKER_HOST answers (a bench's clock starts after
 * the engine's start); returns its socket path. `timeoutMs` means the engine failed.
 */
export async function answeringSocket(dockerHost: string | undefined, timeoutMs: number): Promise<string> {
  const socket = (dockerHost ?? '').replace(/^unix:\/\//, '');
  const deadline = Date.now() + timeoutMs;
  while (!(await ping(socket, 2_000))) {
    if (Date.now() > deadline) throw new Error(`the job's engine did not answer in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return socket;
}
