/**
 * The image cache on the agent's /metrics, read at scrape time from the mirror's debug server
 * (distribution's expvar `registry.proxy`), plus the size of its store. The packaged mirror
 * (packaging/systemd/runner-warden-mirror.yml) serves on 127.0.0.1:5001 and its debug server on
 * the next port, 5002: {@link mirrorDebugAddress} follows that layout.
 *
 *   runner_warden_mirror_up                              1 when the debug server answered
 *   runner_warden_mirror_hits_total{kind=blob|manifest}  served from the store
 *   runner_warden_mirror_misses_total{kind}              fetched from the upstream
 *   runner_warden_mirror_upstream_bytes_total            bytes fetched from the upstream
 *   runner_warden_mirror_served_bytes_total              bytes sent to engines
 *   runner_warden_mirror_cache_bytes                     size of the store (du, at most once a minute)
 *
 * and, from the agent's own pruning (src/engine/mirror-janitor.ts, {@link registerMirrorPruneMetrics}):
 *
 *   runner_warden_mirror_cap_bytes                       the cap (policy docker.mirrorCapGiB)
 *   runner_warden_mirror_blob_bytes                      bytes of cached blobs at the last sweep
 *   runner_warden_mirror_full                            1 when still over the cap after pruning
 *   runner_warden_mirror_pruned_blobs_total              blobs deleted, least recently used first
 *   runner_warden_mirror_pruned_bytes_total              their bytes
 *
 * The counters are the mirror's own, with distribution 2.8's quirks (measured, docs/docker.md):
 * it counts a blob fetched on a miss as a hit, never counts blob bytes pulled, and counts a blob's
 * bytes served twice; manifest hits, misses and bytes are right. They start again at zero when
 * the mirror restarts (a counter reset to Prometheus). The store's size is the agent's own figure.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { cacheBytes, mirrorStats, type MirrorStats } from './mirror.js';
import type { JanitorTotals } from './mirror-janitor.js';

/** A scrape must not hang on a sick mirror; half a second is ample for a loopback expvar read. */
const SCRAPE_TIMEOUT_MS = 500;

/** `du` over the store: a cache of tens of GB in thousands of blobs takes a second; once a minute is plenty for a size. */
const CACHE_SIZE_EVERY_MS = 60_000;
/** A scrape waits this long for the first size; later scrapes use the last one while the next is taken. */
const CACHE_SIZE_WAIT_MS = 2_000;

/** The collect() calls of one scrape share one read made within this window. */
const SHARE_READ_MS = 1_000;

const PREFIX = 'runner_warden_mirror_';

/**
 * The debug address of a mirror URL under the packaged layout (its port + 1, same host); only
 * for a loopback mirror, the one the agent's host serves. Undefined otherwise.
 */
export function mirrorDebugAddress(mirror: string | null | undefined): string | undefined {
  if (!mirror) return undefined;
  const u = new URL(mirror);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) return undefined;
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  return `${u.hostname}:${port + 1}`;
}

/** Where the collector reads: the debug address now (the policy may change), or undefined. */
export type MirrorDebugSource = () => string | undefined;

/** Registers the mirror's metrics on `registry`; each scrape reads the counters once. `storage` is its store (default none: no size). */
export function registerMirrorMetrics(
  registry: Registry,
  source: MirrorDebugSource,
  storage?: () => string | undefined,
  read: (addr: string) => Promise<MirrorStats | undefined> = readStats,
): void {
  const registers = [registry];
  let size: { at: number; bytes: Promise<number> } | undefined;
  const cacheSize = async (): Promise<number | undefined> => {
    const dir = storage?.();
    if (!dir) return undefined;
    if (!size || Date.now() - size.at > CACHE_SIZE_EVERY_MS) {
      const previous = size;
      const next = cacheBytes(dir);
      size = { at: Date.now(), bytes: next };
      // A previous size answers at once while the next is taken.
      if (previous) return previous.bytes;
    }
    return Promise.race([size.bytes, new Promise<undefined>((r) => setTimeout(() => r(undefined), CACHE_SIZE_WAIT_MS).unref())]);
  };
  let last: { at: number; addr: string | undefined; stats: Promise<MirrorStats | undefined> } | undefined;
  // One read per scrape, shared by the four metrics' collect() calls (prom-client calls each).
  const stats = (): Promise<MirrorStats | undefined> => {
    const addr = source();
    if (!last || last.addr !== addr || Date.now() - last.at > SHARE_READ_MS) {
      last = { at: Date.now(), addr, stats: addr ? read(addr) : Promise.resolve(undefined) };
    }
    return last.stats;
  };
  new Gauge({
    name: `${PREFIX}up`,
    help: 'Whether the image cache (registry mirror) debug server answered at this scrape (0 when no loopback mirror is configured).',
    registers,
    async collect() {
      this.set((await stats()) ? 1 : 0);
    },
  });
  new Counter({
    name: `${PREFIX}hits_total`,
    help: 'Requests the image cache served from its store, by kind (blob, manifest); the mirror’s own counter.',
    labelNames: ['kind'],
    registers,
    async collect() {
      const s = await stats();
      this.reset();
      if (!s) return;
      this.inc({ kind: 'blob' }, s.blobHits);
      this.inc({ kind: 'manifest' }, s.manifestHits);
    },
  });
  new Counter({
    name: `${PREFIX}misses_total`,
    help: 'Requests the image cache had to fetch from its upstream, by kind (blob, manifest).',
    labelNames: ['kind'],
    registers,
    async collect() {
      const s = await stats();
      this.reset();
      if (!s) return;
      this.inc({ kind: 'blob' }, s.blobMisses);
      this.inc({ kind: 'manifest' }, s.manifestMisses);
    },
  });
  new Counter({
    name: `${PREFIX}upstream_bytes_total`,
    help: 'Bytes the image cache fetched from its upstream, as it counts them (distribution 2.8 counts manifests only).',
    registers,
    async collect() {
      const s = await stats();
      this.reset();
      if (s) this.inc(s.blobBytesPulled + s.manifestBytesPulled);
    },
  });
  new Counter({
    name: `${PREFIX}served_bytes_total`,
    help: 'Bytes the image cache sent to engines, as it counts them (distribution 2.8 counts a blob twice).',
    registers,
    async collect() {
      const s = await stats();
      this.reset();
      if (s) this.inc(s.bytesServed);
    },
  });
  new Gauge({
    name: `${PREFIX}cache_bytes`,
    help: 'Size of the image cache’s store on disk (taken at most once a minute).',
    registers,
    async collect() {
      const b = await cacheSize();
      if (b !== undefined) this.set(b);
    },
  });
}

/** Registers the agent's pruning of the cache on `registry` (its figures as of the last sweep). */
export function registerMirrorPruneMetrics(registry: Registry, totals: () => JanitorTotals): void {
  const registers = [registry];
  const last = (set: (g: Gauge, t: JanitorTotals) => void) =>
    function (this: Gauge): void {
      const t = totals();
      if (t.last) set(this, t);
    };
  new Gauge({
    name: `${PREFIX}cap_bytes`,
    help: 'The image cache’s size cap (policy docker.mirrorCapGiB), as of the last sweep.',
    registers,
    collect: last((g, t) => g.set(t.last?.capBytes ?? 0)),
  });
  new Gauge({
    name: `${PREFIX}blob_bytes`,
    help: 'Bytes of blobs in the image cache after the agent’s last sweep (what the cap is measured against).',
    registers,
    collect: last((g, t) => g.set(t.last?.bytes ?? 0)),
  });
  new Gauge({
    name: `${PREFIX}full`,
    help: 'Whether the image cache was still over its cap after the last sweep (every blob left was in use); pulls still work.',
    registers,
    collect: last((g, t) => g.set(t.last?.overCap ? 1 : 0)),
  });
  new Counter({
    name: `${PREFIX}pruned_blobs_total`,
    help: 'Blobs the agent deleted from the image cache to keep it under its cap, least recently used first.',
    registers,
    collect() {
      this.reset();
      this.inc(totals().prunedBlobs);
    },
  });
  new Counter({
    name: `${PREFIX}pruned_bytes_total`,
    help: 'Bytes the agent deleted from the image cache to keep it under its cap.',
    registers,
    collect() {
      this.reset();
      this.inc(totals().prunedBytes);
    },
  });
}

function readStats(addr: string): Promise<MirrorStats | undefined> {
  return mirrorStats(addr, AbortSignal.timeout(SCRAPE_TIMEOUT_MS));
}
