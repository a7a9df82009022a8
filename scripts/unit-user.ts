/**
 * Runs the unit layer without root when scripts/health-of-code.ts is started as root: the target
 * is that `npm run test:unit` passes and is fast for anyone, so measuring it as root would prove
 * nothing about the root-free claim. The run uses the system's `nobody` account (no user is
 * created or changed), a throwaway HOME and TMPDIR of its own, and, when `nobody` cannot read the
 * repository in place, a copy of it; cleanup() removes them all.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** The unprivileged account: present on every Debian and Ubuntu system, owning nothing. */
const USER = 'nobody';

/** Where and how to run the unit layer unprivileged. */
export interface UnprivilegedRun {
  user: string;
  uid: number;
  gid: number;
  /** The repository to run in: the real one, or a copy `nobody` can read. */
  root: string;
  copied: boolean;
  env: NodeJS.ProcessEnv;
  /** Removes the throwaway home, temporary directory and copy. */
  cleanup(): void;
}

/** uid or gid of the account, from `id` (so a system that numbers `nobody` differently works too). */
function idOf(flag: '-u' | '-g'): number {
  const r = spawnSync('id', [flag, USER], { encoding: 'utf8' });
  const n = Number(r.stdout.trim());
  if (r.status !== 0 || !Number.isInteger(n)) throw new Error(`no ${USER} account to run the unit layer as (id ${flag} ${USER} failed)`);
  return n;
}

/** Whether the account can read the repository's package.json and list its node_modules. */
function canRead(root: string, uid: number, gid: number): boolean {
  const probe = `const fs = require('node:fs'); fs.accessSync(${JSON.stringify(path.join(root, 'package.json'))}, fs.constants.R_OK); fs.readdirSync(${JSON.stringify(path.join(root, 'node_modules'))});`;
  return spawnSync(process.execPath, ['-e', probe], { uid, gid, stdio: 'ignore', cwd: '/' }).status === 0;
}

/** Prepares a run of the repository at `root` as `nobody`. Call cleanup() afterwards. */
export function unprivilegedRun(root: string): UnprivilegedRun {
  const uid = idOf('-u');
  const gid = idOf('-g');
  const scratch = mkdtempSync(path.join(tmpdir(), 'rw-unit-user-'));
  const cleanup = (): void => rmSync(scratch, { recursive: true, force: true });
  try {
    chmodSync(scratch, 0o755);
    const home = path.join(scratch, 'home');
    const tmp = path.join(scratch, 'tmp');
    for (const d of [home, tmp]) {
      mkdirSync(d, { mode: 0o700 });
      chownSync(d, uid, gid);
    }
    let runRoot = root;
    let copied = false;
    if (!canRead(root, uid, gid)) {
      runRoot = path.join(scratch, 'repo');
      cpSync(root, runRoot, { recursive: true, filter: (src) => path.basename(src) !== '.git' });
      spawnSync('chmod', ['-R', 'a+rX', runRoot], { stdio: 'ignore' });
      copied = true;
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: home,
      TMPDIR: tmp,
      npm_config_cache: path.join(home, '.npm'),
      npm_config_update_notifier: 'false',
    };
    return { user: USER, uid, gid, root: runRoot, copied, env, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}
