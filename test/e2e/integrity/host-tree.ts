/**
 * A constructed host tree for the file-surface tests: a copy of this machine's /etc and package
 * database plus the other surface directories, under the test's own root. Plants land there, never
 * on the real /etc.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { IntegrityGuard } from '../../../src/integrity/guard.js';
import { takeSystemBaseline } from '../../../src/integrity/system-baseline.js';
import type { SurfaceName } from '../../../src/integrity/types.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import type { GuardContext, GuardJob } from '../../../src/lib/job-guard.js';

/** Builds `<root>/...` and returns the host-view runner root and state dir it uses. */
export async function buildHostTree(root: string): Promise<{ stateDir: string; runnerRoot: string }> {
  try {
    execFileSync('cp', ['-a', '/etc', path.join(root, 'etc')], { stdio: 'pipe' });
  } catch (err) {
    // Other tests add and remove users meanwhile: a lock file gone between listing and copying is fine.
    const lines = String((err as { stderr?: Buffer }).stderr ?? '')
      .trim()
      .split('\n');
    if (!lines.every((l) => /cannot stat .*: No such file or directory/.test(l))) throw err;
  }
  for (const d of [
    'usr/local/bin',
    'usr/local/share/ca-certificates',
    'usr/bin',
    'usr/lib/systemd/system',
    'usr/lib/udev/rules.d',
    'usr/lib/x86_64-linux-gnu/security',
    'usr/lib/python3/dist-packages/requests',
    'var/spool/cron/crontabs',
    'var/lib/dpkg',
    'var/lib/systemd/linger',
    'var/tmp',
    'tmp',
    'dev/shm',
    'root/.ssh',
    'opt/runner',
    'srv',
    'home',
  ]) {
    await mkdir(path.join(root, d), { recursive: true, mode: 0o755 });
  }
  await copyFile('/var/lib/dpkg/status', path.join(root, 'var/lib/dpkg/status'));
  // A system binary a job could replace in place (the image's git).
  await copyFile('/usr/bin/true', path.join(root, 'usr/bin/git'));
  await copyFile('/usr/bin/true', path.join(root, 'usr/bin/python3'));
  // A capability the image ships (ping's): carried from check to check while the file is unchanged.
  await copyFile('/usr/bin/true', path.join(root, 'usr/bin/ping'));
  execFileSync('setcap', ['cap_net_raw+ep', path.join(root, 'usr/bin/ping')]);
  await writeFile(path.join(root, 'usr/lib/x86_64-linux-gnu/security/pam_unix.so'), 'the image pam_unix\n');
  await writeFile(path.join(root, 'usr/lib/python3/dist-packages/requests/__init__.py'), '# requests\n');
  await writeFile(
    path.join(root, 'root/.ssh/authorized_keys'),
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImageKeyOfTheFleetxxxxxxxxxxxxxxxxxxxxxxx fleet\n',
    { mode: 0o600 },
  );
  await writeFile(path.join(root, 'root/.bashrc'), '# root bashrc\n');
  await writeFile(path.join(root, 'etc/machine-id'), 'fixture0machine0id000000000000001\n');
  return { stateDir: '/var/lib/runner-warden', runnerRoot: '/opt/runner' };
}

/** The runner user of the constructed trees (the tree's /etc/passwd has it). */
export const TREE_RUNNER = { name: 'runneru', uid: 4242, gid: 4242 };

/**
 * An integrity guard over the built tree `T` with `surfaces`, its baseline taken into `stateDir`,
 * the policy checking those surfaces, and a job under `root`; prepared for that job.
 */
export async function preparedTreeGuard(
  root: string,
  T: string,
  stateDir: string,
  surfaces: readonly SurfaceName[],
  ctx: GuardContext,
): Promise<{ guard: IntegrityGuard; policy: Policy; job: GuardJob }> {
  const o = { root: T, stateDir, excluded: ['/opt/runner'], user: TREE_RUNNER, netfilter: false };
  await takeSystemBaseline({ ...o, surfaces });
  const guard = new IntegrityGuard(o);
  const policy: Policy = structuredClone(DEFAULT_POLICY);
  policy.host.integrity.surfaces = [...surfaces];
  const job: GuardJob = {
    key: 'job-1',
    dir: path.join(root, 'job'),
    user: { ...TREE_RUNNER, home: '/home/runneru' },
    runnerRoot: '/opt/runner',
    stateDir,
  };
  await guard.prepare(job, policy, ctx);
  return { guard, policy, job };
}
