/**
 * What the engine and image-cache benches share: a throwaway runner user in a root of its own,
 * /dev/net/tun held for its rootless engines, and the docker CLI pointed at one engine's socket.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { openTun } from '../../src/sim/tun.js';

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
