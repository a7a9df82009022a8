/**
 * A usable /dev/net/tun for test and bench worlds that start rootless engines (slirp4netns opens
 * it as the runner user). Test files and benches run in parallel processes: each holder leaves a
 * pid file in one registry, the first records the mode it found, the last one out restores it, so
 * two holders that overlap never leave the device wider than they found it.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The tun device slirp4netns opens; some machines ship it 0600, Debian's default is 0666. */
const TUN = '/dev/net/tun';

/** The holders' registry (a pid file each, and `mode`); removed when the last holder leaves. */
const TUN_HOLDERS = path.join(os.tmpdir(), 'rw-test-tun-holders');

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Makes /dev/net/tun usable by unprivileged users while held; the returned function restores the
 * mode found before the first holder, once no other live process holds it.
 */
export async function openTun(): Promise<() => Promise<void>> {
  await fsp.mkdir(TUN_HOLDERS, { recursive: true, mode: 0o700 });
  const orig = path.join(TUN_HOLDERS, 'mode');
  const mode = (await fsp.stat(TUN)).mode & 0o777;
  await fsp.writeFile(orig, String(mode), { flag: 'wx' }).catch(() => undefined);
  await fsp.writeFile(path.join(TUN_HOLDERS, String(process.pid)), '');
  await fsp.chmod(TUN, 0o666);
  return async () => {
    await fsp.rm(path.join(TUN_HOLDERS, String(process.pid)), { force: true });
    const others = (await fsp.readdir(TUN_HOLDERS).catch(() => [] as string[])).filter((f) => /^\d+$/.test(f) && alive(Number(f)));
    if (others.length > 0) return;
    const saved = Number.parseInt(await fsp.readFile(orig, 'utf8').catch(() => String(0o600)), 10);
    await fsp.chmod(TUN, Number.isInteger(saved) ? saved : 0o600);
    await fsp.rm(TUN_HOLDERS, { recursive: true, force: true });
  };
}
