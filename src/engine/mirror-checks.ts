/**
 * Whether the image cache can serve: it answers, and its disk has room. A cache that is down or
 * full does not make a host unfit (a per-job engine falls back to the upstream registry when its
 * mirror fails), but every pull then goes to the internet and a full cache stores nothing, so the
 * preflight says so with the fix.
 */
import { promises as fsp } from 'node:fs';
import type { HostProblem } from './host-checks.js';

/** The packaged cache's storage (packaging/systemd/runner-warden-mirror.yml). */
export const DEFAULT_MIRROR_STORAGE = '/var/lib/runner-warden-mirror';
/** The registry answers /v2/ from memory; two seconds means it is down or wedged. */
const MIRROR_PROBE_TIMEOUT_MS = 2_000;
/** Below this share of free space (or inodes) a pull can fill the disk mid-layer: call it full. */
export const MIRROR_MIN_FREE_RATIO = 0.05;

/** Problems of the mirror at `url` (policy docker.mirror) whose cache lives in `storage`. */
export async function mirrorProblems(url: string, storage: string | undefined): Promise<HostProblem[]> {
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
        fix: 'systemctl start runner-warden-mirror-gc.service (empties the cache; it refills on demand), and lower CAP_BYTES in its drop-in or grow the disk',
      });
    }
  }
  return out;
}
