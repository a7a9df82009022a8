/**
 * The image cache's size cap, kept by the agent: over the cap (policy `docker.mirrorCapGiB`) the
 * least recently used blobs are deleted from the registry's store while it keeps serving, down to
 * {@link PRUNE_TO_RATIO} of the cap.
 *
 * Why this is safe with distribution 2.8 in proxy mode (docs/docker.md, "The image cache"):
 * - a blob whose `data` file is gone is a miss: the proxy's local Stat fails and it fetches the
 *   blob from its upstream again, rewriting the file; the same holds for a manifest's blob. The
 *   repository's links are left (a few bytes each; a dangling one is a miss too).
 * - the registry must not cache blob descriptors in memory (no `storage.cache.blobdescriptor`),
 *   or it would answer for a deleted blob from its cache and fail the read: the config this
 *   project writes and ships has none.
 * - a blob read or written within {@link IN_USE_MS} is never deleted: an engine may be mid-pull,
 *   and an open file being served stays readable after its unlink anyway.
 * - registry `garbage-collect` is no use here: it removes only blobs no manifest references, and
 *   in a pull-through cache every blob is referenced.
 *
 * "Last used" is the file's access time. Most hosts mount with relatime, which updates atime on a
 * read only when atime is not newer than ctime (or a day old): each sweep therefore rewrites the
 * times of the blobs read since the previous sweep (same values, which moves ctime to now), so the
 * next read records itself again; last use is then known to a sweep's interval. On a noatime mount
 * atime never moves and the order becomes "cached first, pruned first".
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';

/** Prune to 90% of the cap, so a full cache is not pruned again by the next pull's few MB. */
export const PRUNE_TO_RATIO = 0.9;
/** A pull of a large image through slirp takes under a minute; five leave a wide margin for a blob being served or cached. */
export const IN_USE_MS = 5 * 60_000;
/** An upload (the proxy caching a blob) lasts as long as the upstream's transfer; an hour-old one was abandoned. */
export const STALE_UPLOAD_MS = 60 * 60_000;
/** Every minute: a pull through slirp fills well under 10 GB a minute, so the cap is overshot by little. */
export const SWEEP_EVERY_MS = 60_000;

/** Distribution's blob store under its storage root. */
const BLOBS_DIR = ['docker', 'registry', 'v2', 'blobs', 'sha256'];
/** Its repositories (uploads in progress live in `<repo>/_uploads/<id>/`). */
const REPOS_DIR = ['docker', 'registry', 'v2', 'repositories'];

/** One cached blob. */
export interface CachedBlob {
  digest: string;
  /** The blob's directory (`.../sha256/ab/<hex>`), removed whole. */
  dir: string;
  bytes: number;
  /** Last read or write, ms since the epoch. */
  lastUseMs: number;
}

/** What a sweep found and did. */
export interface SweepResult {
  /** Bytes of blobs in the store after the sweep. */
  bytes: number;
  blobs: number;
  capBytes: number;
  prunedBlobs: number;
  prunedBytes: number;
  /** Abandoned uploads removed. */
  staleUploads: number;
  /** Still over the cap after pruning: everything left was in use. The cache is full. */
  overCap: boolean;
}

/** The store's blobs; with `rearm`, re-arms relatime on the blobs read since the last sweep. */
export async function listBlobs(storage: string, rearm = false): Promise<CachedBlob[]> {
  const root = path.join(storage, ...BLOBS_DIR);
  const out: CachedBlob[] = [];
  for (const prefix of await fsp.readdir(root).catch(() => [] as string[])) {
    for (const hex of await fsp.readdir(path.join(root, prefix)).catch(() => [] as string[])) {
      const dir = path.join(root, prefix, hex);
      const data = path.join(dir, 'data');
      const st = await fsp.lstat(data, { bigint: true }).catch(() => undefined);
      if (!st?.isFile()) continue;
      if (rearm && st.atimeNs > st.ctimeNs) {
        // Same times: only ctime moves, so relatime records the next read.
        await fsp.utimes(data, Number(st.atimeNs) / 1e9, Number(st.mtimeNs) / 1e9).catch(() => undefined);
      }
      const lastUseMs = Number((st.atimeNs > st.mtimeNs ? st.atimeNs : st.mtimeNs) / 1_000_000n);
      out.push({ digest: `sha256:${hex}`, dir, bytes: Number(st.size), lastUseMs });
    }
  }
  return out;
}

/** Removes uploads older than {@link STALE_UPLOAD_MS}; returns how many. */
async function removeStaleUploads(storage: string, now: number): Promise<number> {
  const repos = path.join(storage, ...REPOS_DIR);
  let removed = 0;
  const walk = async (dir: string, depth: number): Promise<void> => {
    // Repository names nest (library/node); eight levels is more than any name uses.
    if (depth > 8) return;
    for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (!e.isDirectory()) continue;
      const p = path.join(dir, e.name);
      if (e.name !== '_uploads') {
        if (!e.name.startsWith('_')) await walk(p, depth + 1);
        continue;
      }
      for (const id of await fsp.readdir(p).catch(() => [] as string[])) {
        const st = await fsp.stat(path.join(p, id)).catch(() => undefined);
        if (st && now - st.mtimeMs > STALE_UPLOAD_MS) {
          await fsp.rm(path.join(p, id), { recursive: true, force: true });
          removed += 1;
        }
      }
    }
  };
  await walk(repos, 0);
  return removed;
}

/**
 * One sweep of `storage` against `capBytes`: re-arms access times, removes abandoned uploads and,
 * over the cap, deletes the least recently used blobs not in use until the store holds at most
 * {@link PRUNE_TO_RATIO} of the cap.
 */
export async function sweepMirror(storage: string, capBytes: number, now = Date.now(), inUseMs = IN_USE_MS): Promise<SweepResult> {
  const staleUploads = await removeStaleUploads(storage, now);
  const blobs = await listBlobs(storage, true);
  let bytes = blobs.reduce((s, b) => s + b.bytes, 0);
  let prunedBlobs = 0;
  let prunedBytes = 0;
  if (bytes > capBytes) {
    const target = Math.floor(capBytes * PRUNE_TO_RATIO);
    const candidates = blobs.filter((b) => now - b.lastUseMs >= inUseMs).sort((a, b) => a.lastUseMs - b.lastUseMs);
    for (const b of candidates) {
      if (bytes <= target) break;
      await fsp.rm(b.dir, { recursive: true, force: true });
      bytes -= b.bytes;
      prunedBlobs += 1;
      prunedBytes += b.bytes;
    }
  }
  return { bytes, blobs: blobs.length - prunedBlobs, capBytes, prunedBlobs, prunedBytes, staleUploads, overCap: bytes > capBytes };
}

/** Where the janitor works now (the policy may change): undefined when no cache of this host is configured. */
export type JanitorTarget = () => { storage: string; capBytes: number } | undefined;

/** Totals since the agent started, for /metrics. */
export interface JanitorTotals {
  sweeps: number;
  prunedBlobs: number;
  prunedBytes: number;
  last?: SweepResult;
}

/** Sweeps the host's image cache every {@link SWEEP_EVERY_MS} in the background (never on a job's path). */
export class MirrorJanitor {
  readonly totals: JanitorTotals = { sweeps: 0, prunedBlobs: 0, prunedBytes: 0 };
  private wasFull = false;

  constructor(
    private readonly target: JanitorTarget,
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly everyMs = SWEEP_EVERY_MS,
  ) {}

  /** One sweep now; undefined when there is nothing to sweep (no cache configured, or its store is absent). */
  async sweep(): Promise<SweepResult | undefined> {
    const t = this.target();
    if (!t || !(await fsp.stat(t.storage).catch(() => undefined))?.isDirectory()) return undefined;
    const r = await sweepMirror(t.storage, t.capBytes, this.clock.now());
    this.totals.sweeps += 1;
    this.totals.prunedBlobs += r.prunedBlobs;
    this.totals.prunedBytes += r.prunedBytes;
    this.totals.last = r;
    if (r.prunedBlobs > 0 || r.staleUploads > 0) {
      this.log.info({ storage: t.storage, ...r }, 'image cache pruned to its cap (least recently used blobs)');
    }
    if (r.overCap && !this.wasFull) {
      this.log.warn(
        {
          storage: t.storage,
          bytes: r.bytes,
          capBytes: r.capBytes,
          fix: 'raise docker.mirrorCapGiB; pulls still work (from the upstream)',
        },
        'image cache full: over its cap with every blob used in the last minutes',
      );
    }
    this.wasFull = r.overCap;
    return r;
  }

  /** Sweeps now and then every interval until `signal` aborts; a failed sweep is logged and retried. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.sweep().catch((err: unknown) => this.log.warn({ err: String(err) }, 'image cache sweep failed; retried'));
      await this.clock.sleep(this.everyMs, signal).catch(() => undefined);
    }
  }
}
