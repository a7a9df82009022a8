/**
 * A throwaway world on this machine: a temporary root and an unprivileged runner user whose home
 * is inside it. Used by the tests, the benchmarks and the demo; all of them run as root. The user
 * is removed in dispose(), together with everything it still runs.
 */
import { mkdtemp, rm, chmod, mkdir, chown } from 'node:fs/promises';
import { lstatSync, readdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { lookupUser, type UserInfo } from '../lib/users.js';

/** A local user made for one run; remove() kills its processes and deletes it (not its home). */
export interface ThrowawayUser {
  user: UserInfo;
  remove(): void;
}

/** Creates a fresh unprivileged user whose home is `<root>/home/<name>`. Needs root. */
export async function createThrowawayUser(root: string): Promise<ThrowawayUser> {
  await mkdir(path.join(root, 'home'), { recursive: true, mode: 0o755 });
  const name = `rw${randomBytes(4).toString('hex')}`;
  const home = path.join(root, 'home', name);
  execFileSync('useradd', ['-m', '-d', home, '-s', '/bin/bash', '-K', 'MAIL_DIR=/nonexistent', name], { stdio: 'ignore' });
  const user = await lookupUser(name);
  if (!user) throw new Error(`useradd did not create ${name}`);
  await chown(home, user.uid, user.gid);
  return {
    user,
    remove() {
      for (const [cmd, args] of [
        ['pkill', ['-KILL', '-U', String(user.uid)]],
        ['crontab', ['-r', '-u', name]],
      ] as const) {
        try {
          execFileSync(cmd, [...args], { stdio: 'ignore' });
        } catch {
          // Nothing to kill, no crontab.
        }
      }
      removeSharedTempEntries(user.uid);
      try {
        execFileSync('userdel', ['-f', name], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    },
  };
}

/** The machine's shared temp directories, where a user's programs write outside any root of ours. */
const SHARED_TEMP_DIRS = ['/tmp', '/var/tmp', '/dev/shm'];

/**
 * Removes what `uid` left at the top of the shared temp directories (a rootless containerd's stack
 * dump in /tmp, a tool's cache) before the user is deleted: once the uid is free, the next
 * throwaway user may get it and would find those entries as its own.
 */
function removeSharedTempEntries(uid: number): void {
  for (const dir of SHARED_TEMP_DIRS) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const full = path.join(dir, name);
      try {
        if (lstatSync(full).uid === uid) rmSync(full, { recursive: true, force: true });
      } catch {
        // Gone meanwhile, or not removable: nothing else of the machine is touched.
      }
    }
  }
}

/**
 * Removes a throwaway root. Node's recursive rm builds whole paths and fails with ENAMETOOLONG on a
 * tree deeper than PATH_MAX (a hostile job's 20,000 levels, left in the trash when the agent
 * stopped); coreutils rm walks such a tree relative to open directories.
 */
export async function removeRoot(root: string): Promise<void> {
  try {
    await rm(root, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    execFileSync('rm', ['-rf', '--one-file-system', '--', root], { stdio: 'ignore' });
  }
}

/** A temporary root and an unprivileged runner user. */
export interface Lab {
  root: string;
  user: UserInfo;
  /** Kills the user's processes, removes the user and the root. */
  dispose(): Promise<void>;
}

/**
 * Makes a temp root (mode 755 so the runner user can reach its home inside) and a fresh runner
 * user whose home is `<root>/home/<name>`.
 */
export async function createLab(prefix = 'rw-test-'): Promise<Lab> {
  const root = await mkdtemp(path.join(os.tmpdir(), prefix));
  await chmod(root, 0o755);
  let owner: ThrowawayUser;
  try {
    owner = await createThrowawayUser(root);
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return {
    root,
    user: owner.user,
    async dispose() {
      owner.remove();
      await removeRoot(root);
    },
  };
}

/** Runs a bash script as the lab user and returns stdout (throws on non-zero exit). */
export function runAs(user: UserInfo, script: string, env: Record<string, string> = {}): string {
  return execFileSync('bash', ['-c', script], {
    uid: user.uid,
    gid: user.gid,
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: user.home, USER: user.name, ...env },
    cwd: user.home,
    encoding: 'utf8',
  });
}
