/**
 * A stock Debian root for the integrity figures: `debootstrap bookworm` (the default variant, the
 * required and important packages a Debian install starts from), built once and kept in a
 * root-only cache directory outside /tmp, so that the figure is about a stock image and not about
 * whatever the bench machine has accumulated. Building takes minutes (network to the mirror);
 * later runs reuse it. The root is only read: the benches point the check's `root` prefix at it.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** The default cache: a bench-owned directory, root-only, outside /tmp's shared space. */
export const STOCK_CACHE = '/var/cache/runner-warden-bench';
/** The suite and mirror: Debian 12, as the project's packages target. */
const SUITE = 'bookworm';
const MIRROR = 'http://deb.debian.org/debian';
/** debootstrap of the default variant takes 3 to 10 minutes on two loaded cores; a hung mirror must not hang the bench forever. */
const BUILD_TIMEOUT_MS = 30 * 60_000;

/** What the stock root is: its path and a one-line description for the bench's output. */
export interface StockRoot {
  root: string;
  about: string;
}

/** The cached stock root, built first when absent (`cache` overrides the directory). */
export async function stockRoot(o: { cache?: string; mirror?: string; log?: (line: string) => void } = {}): Promise<StockRoot> {
  const cache = o.cache ?? STOCK_CACHE;
  const root = path.join(cache, `debian-${SUITE}`);
  const marker = path.join(cache, `debian-${SUITE}.complete`);
  if (!(await stat(marker).catch(() => undefined))) {
    await mkdir(cache, { recursive: true, mode: 0o700 });
    await chmod(cache, 0o700);
    const partial = `${root}.partial`;
    await rm(partial, { recursive: true, force: true });
    o.log?.(`building the stock root once: debootstrap ${SUITE} ${partial} (minutes; cached in ${cache})`);
    // A private mount namespace: debootstrap's /proc and /sys mounts never show in the host's table.
    await run('unshare', ['--mount', '--propagation', 'private', 'debootstrap', SUITE, partial, o.mirror ?? MIRROR]);
    await rm(root, { recursive: true, force: true });
    await rename(partial, root);
    await writeFile(marker, `debootstrap ${SUITE} ${o.mirror ?? MIRROR} ${new Date().toISOString()}\n`);
  }
  const status = await readFile(path.join(root, 'var/lib/dpkg/status'), 'utf8');
  const packages = status.split('\n').filter((l) => /^Status: .* installed$/.test(l)).length;
  return { root, about: `debootstrap ${SUITE} (default variant, ${packages} packages) at ${root}` };
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: BUILD_TIMEOUT_MS });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}:\n${err}`)),
    );
  });
}
