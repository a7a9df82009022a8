import { mkdtemp, rm, chmod, mkdir, chown } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { lookupUser, type UserInfo } from '../../src/lib/users.js';

/** A test's own world: a temporary root and (optionally) an unprivileged runner user. */
export interface Lab {
  root: string;
  user: UserInfo;
  /** Kills the user's processes, removes the user and the root. */
  dispose(): Promise<void>;
}

/**
 * Makes a temp root (mode 755 so the runner user can reach its home inside) and a fresh runner
 * user whose home is `<root>/home/<name>`. Tests run as root (CI does); the user is removed in
 * dispose(), together with everything it still runs.
 */
export async function createLab(prefix = 'rw-test-'): Promise<Lab> {
  const root = await mkdtemp(path.join(os.tmpdir(), prefix));
  await chmod(root, 0o755);
  await mkdir(path.join(root, 'home'), { mode: 0o755 });
  const name = `rw${randomBytes(4).toString('hex')}`;
  const home = path.join(root, 'home', name);
  execFileSync('useradd', ['-m', '-d', home, '-s', '/bin/bash', '-K', 'MAIL_DIR=/nonexistent', name], {
    stdio: 'ignore',
  });
  const user = await lookupUser(name);
  if (!user) throw new Error(`useradd did not create ${name}`);
  await chown(home, user.uid, user.gid);
  return {
    root,
    user,
    async dispose() {
      try {
        execFileSync('pkill', ['-KILL', '-U', String(user.uid)], { stdio: 'ignore' });
      } catch {
        // no process left: expected
      }
      try {
        execFileSync('crontab', ['-r', '-u', name], { stdio: 'ignore' });
      } catch {
        // no crontab: expected
      }
      try {
        execFileSync('userdel', ['-f', name], { stdio: 'ignore' });
      } catch {
        // already gone
      }
      await rm(root, { recursive: true, force: true, maxRetries: 3 });
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
