/**
 * A constructed host tree for the file-surface tests: a copy of this machine's /etc and package
 * database plus the other surface directories, under the test's own root. Plants land there, never
 * on the real /etc.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';

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
