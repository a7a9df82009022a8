/**
 * Whether the image cache's size cap (policy `docker.mirrorCapGiB`) can work on this host, for
 * `validate`: a cap the cache's filesystem cannot hold, a cap smaller than an image the cache
 * holds, and a cap that, on the filesystem of the runner's `_work`, leaves the policy's disk
 * watermark no room (every job would end with the host recycled as `disk-low`). Read-only: it
 * stats the filesystems and reads the store's small blobs (manifests), nothing else.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { listBlobs, PRUNE_TO_RATIO } from './mirror-janitor.js';
import { MIRROR_MIN_FREE_RATIO } from './mirror-checks.js';

/**
 * Under this a cap cannot keep one language-SDK or browser CI image (their compressed layers run
 * to several hundred MB), and the sweep prunes to 90% of the cap: each job would fetch it again.
 */
export const MIN_USEFUL_CAP_BYTES = 1024 ** 3;
/** Manifests are a few KB (distribution refuses them over 4 MiB); a larger blob is a layer, not read. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

const GIB = 1024 ** 3;
const gib = (b: number): string => `${(b / GIB).toFixed(2)} GiB`;

/** One finding about the cap: `error` makes the policy unusable on this host, `warning` degrades it. */
export interface CapFinding {
  severity: 'error' | 'warning';
  /** The policy field at fault (`docker.mirrorCapGiB`, or the watermark it collides with). */
  field: string;
  /** What was found, with the figures. */
  what: string;
  /** What was expected of the field. */
  expected: string;
}

/** What the check needs. */
export interface CapFacts {
  capBytes: number;
  /** The cache's store (it may not exist yet: its nearest existing parent's filesystem is used). */
  storage: string;
  /** The runner's `_work` (likewise). */
  workDir: string;
  /** Policy `limits.minFreeDiskPercent`: below it after a job, the host is recycled. */
  minFreeDiskPercent: number;
}

/** The filesystem that holds (or will hold) `p`: its device, size and free bytes. */
async function fsOf(p: string): Promise<{ at: string; dev: number; bytes: number; availBytes: number }> {
  let at = path.resolve(p);
  for (;;) {
    const st = await fsp.stat(at).catch(() => undefined);
    if (st) {
      const fs = await fsp.statfs(at);
      return { at, dev: st.dev, bytes: fs.blocks * fs.bsize, availBytes: fs.bavail * fs.bsize };
    }
    if (at === '/') throw new Error(`no filesystem holds ${p}`);
    at = path.dirname(at);
  }
}

/** The largest image the store holds: a manifest's config plus its layers, in bytes (undefined: none). */
export async function largestCachedImage(storage: string): Promise<{ digest: string; bytes: number } | undefined> {
  let best: { digest: string; bytes: number } | undefined;
  for (const b of await listBlobs(storage)) {
    if (b.bytes > MAX_MANIFEST_BYTES) continue;
    const text = await fsp.readFile(path.join(b.dir, 'data'), 'utf8').catch(() => '');
    if (!text.startsWith('{')) continue;
    let m: { config?: { size?: unknown }; layers?: { size?: unknown }[] };
    try {
      m = JSON.parse(text) as typeof m;
    } catch {
      continue;
    }
    if (!Array.isArray(m.layers)) continue;
    const size = (x: { size?: unknown } | undefined): number => (typeof x?.size === 'number' && x.size > 0 ? x.size : 0);
    const bytes = size(m.config) + m.layers.reduce((sum, l) => sum + size(l), 0);
    if (!best || bytes > best.bytes) best = { digest: b.digest, bytes };
  }
  return best;
}

/** Every problem of the cap on this host, errors first. */
export async function mirrorCapProblems(f: CapFacts): Promise<CapFinding[]> {
  const out: CapFinding[] = [];
  const cap = 'docker.mirrorCapGiB';
  const store = await fsOf(f.storage);
  const work = await fsOf(f.workDir);
  const cached = (await listBlobs(f.storage)).reduce((sum, b) => sum + b.bytes, 0);
  if (f.capBytes > store.bytes) {
    out.push({
      severity: 'error',
      field: cap,
      what: `${gib(f.capBytes)} is larger than the filesystem that holds the cache's store ${f.storage} (${gib(store.bytes)} at ${store.at}): the disk fills before the cap is reached`,
      expected: `at most ${gib(store.bytes * (1 - MIRROR_MIN_FREE_RATIO))} (the filesystem less ${MIRROR_MIN_FREE_RATIO * 100}%), or a larger disk`,
    });
  } else if (store.dev !== work.dev && f.capBytes > store.bytes * (1 - MIRROR_MIN_FREE_RATIO)) {
    out.push({
      severity: 'warning',
      field: cap,
      what: `${gib(f.capBytes)} leaves under ${MIRROR_MIN_FREE_RATIO * 100}% of the cache's filesystem (${gib(store.bytes)} at ${store.at}) free when the cache is full: new images stop being cached before the cap is reached`,
      expected: `at most ${gib(store.bytes * (1 - MIRROR_MIN_FREE_RATIO))}`,
    });
  }
  if (store.dev === work.dev && f.capBytes <= store.bytes) {
    // The cache full at its cap, everything else on the disk as it is now (the cache's present bytes are counted once).
    const floorBytes = (store.bytes * f.minFreeDiskPercent) / 100;
    const room = store.bytes - floorBytes;
    const freeAtCap = store.availBytes + cached - f.capBytes;
    if (f.capBytes > room) {
      out.push({
        severity: 'error',
        field: cap,
        what: `the cache's store ${f.storage} is on the same filesystem as the runner's work directory ${f.workDir} (${gib(store.bytes)} at ${store.at}), and a cache full at ${gib(f.capBytes)} leaves less than limits.minFreeDiskPercent (${f.minFreeDiskPercent}%, ${gib(floorBytes)}) free even on an empty disk: every job would end with the host recycled (disk-low)`,
        expected: `at most ${gib(room)} less what the image and jobs need, or the store on another filesystem, or a lower limits.minFreeDiskPercent`,
      });
    } else if (freeAtCap < floorBytes) {
      out.push({
        severity: 'warning',
        field: cap,
        what: `the cache's store ${f.storage} is on the same filesystem as the runner's work directory ${f.workDir}, which has ${gib(store.availBytes)} free of ${gib(store.bytes)}; the cache grown to ${gib(f.capBytes)} (${gib(cached)} now) would leave ${gib(Math.max(0, freeAtCap))}, under limits.minFreeDiskPercent (${f.minFreeDiskPercent}%, ${gib(floorBytes)}): hosts would be recycled (disk-low) once the cache fills`,
        expected: `at most ${gib(Math.max(0, f.capBytes - (floorBytes - freeAtCap)))}, or the store on another filesystem`,
      });
    }
  }
  const largest = await largestCachedImage(f.storage);
  if (largest && largest.bytes > f.capBytes * PRUNE_TO_RATIO) {
    out.push({
      severity: 'error',
      field: cap,
      what: `${gib(f.capBytes)} cannot hold the largest image the cache holds now (${largest.digest}, ${gib(largest.bytes)} of layers at ${f.storage}): each pull of it is pruned before the next`,
      expected: `at least ${gib(largest.bytes / PRUNE_TO_RATIO)} (the sweep prunes to ${PRUNE_TO_RATIO * 100}% of the cap)`,
    });
  } else if (!largest && f.capBytes < MIN_USEFUL_CAP_BYTES) {
    out.push({
      severity: 'warning',
      field: cap,
      what: `${gib(f.capBytes)} is under ${gib(MIN_USEFUL_CAP_BYTES)}: too small to keep one language-SDK or browser CI image (several hundred MB of compressed layers), so each job would fetch it again`,
      expected: `at least ${gib(MIN_USEFUL_CAP_BYTES)}`,
    });
  }
  return out.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1));
}
