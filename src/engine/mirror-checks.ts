/**
 * Whether the image cache can serve: it answers, and its disk has room. A cache that is down or
 * full does not make a host unfit (a per-job engine falls back to the upstream registry when its
 * mirror fails), but every pull then goes to the internet and a full cache stores nothing, so the
 * preflight says so with the fix.
 */
import { promises as fsp } from 'node:fs';
import type { HostProblem } from './host-checks.js';
import { listBlobs } from './mirror-janitor.js';

/** The packaged cache's storage (packaging/systemd/runner-warden-mirror.yml). */
export const DEFAULT_MIRROR_STORAGE = '/var/lib/runner-warden-mirror';
/** The registry answers /v2/ from memory; two seconds means it is down or wedged. */
const MIRROR_PROBE_TIMEOUT_MS = 2_000;
/** Below this share of free space (or inodes) a pull can fill the disk mid-layer: call it full. */
export const MIRROR_MIN_FREE_RATIO = 0.05;

/** GiB of policy docker.mirrorCapGiB in bytes. */
export const gibToBytes = (gib: number): number => Math.round(gib * 1024 ** 3);

/**
 * Problems of the mirror at `url` (policy docker.mirror) whose cache lives in `storage`; with
 * `capBytes` (policy docker.mirrorCapGiB), also a cap the disk cannot hold and a cache still over
 * its cap (the agent's pruning found every blob in use: full).
 */
export async function mirrorProblems(url: string, storage: string | undefined, capBytes?: number): Promise<HostProblem[]> {
  const out: HostProblem[] = [];
  const answered = await fetch(`${url.replace(/\/$/, '')}/v2/`, { signal: AbortSignal.timeout(MIRROR_PROBE_TIMEOUT_MS) }).then(
    (r) => r.status,
    (err: unknown) => (err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)),
  );
  if (typeof answered === 'string') {
    out.push({
      what: `the image cache (docker.mirror ${url}) does not answer: ${answered}; engines pull from the upstream registry directly`,
      fix: 'systemctl start runner-warden-mirror (journalctl -u runner-warden-mirror says why it stopped), or set docker.mirror to the cache that runs',
    });
  }
  const fs = storage ? await fsp.statfs(storage).catch(() => undefined) : undefined;
  if (storage && fs && fs.blocks > 0) {
    const free = fs.bavail / fs.blocks;
    const inodes = fs.files > 0 ? fs.ffree / fs.files : 1;
    if (Math.min(free, inodes) < MIRROR_MIN_FREE_RATIO) {
      out.push({
        what: `the image cache's disk is full: ${(free * 100).toFixed(1)}% space and ${(inodes * 100).toFixed(1)}% inodes free at ${storage} (under ${MIRROR_MIN_FREE_RATIO * 100}%); new images are not cached`,
        fix: 'systemctl start runner-warden-mirror-gc.service (empties the cache at once; it refills on demand), and lower docker.mirrorCapGiB or grow the disk',
      });
    }
    if (capBytes !== undefined && capBytes > fs.blocks * fs.bsize) {
      out.push({
        what: `the image cache's cap (docker.mirrorCapGiB, ${(capBytes / 1024 ** 3).toFixed(1)} GiB) is larger than its disk (${((fs.blocks * fs.bsize) / 1024 ** 3).toFixed(1)} GiB at ${storage}): the disk fills before the cap is reached`,
        fix: 'set docker.mirrorCapGiB below the size of the disk that holds the cache (less what jobs need)',
      });
    }
  }
  if (storage && capBytes !== undefined) {
    const bytes = (await listBlobs(storage)).reduce((sum, b) => sum + b.bytes, 0);
    if (bytes > capBytes) {
      out.push({
        what: `the image cache is full: ${(bytes / 1024 ** 3).toFixed(2)} GiB cached at ${storage}, over its cap of ${(capBytes / 1024 ** 3).toFixed(2)} GiB (docker.mirrorCapGiB); the agent prunes the least recently used blobs every minute, and pulls still work meanwhile`,
        fix: 'wait a minute for the agent to prune it; if it stays full, every blob is in use: raise docker.mirrorCapGiB',
      });
    }
  }
  return out;
}
