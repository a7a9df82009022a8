/**
 * The image cache's counters on the agent's /metrics: hits, misses and bytes pulled from the
 * upstream, read at scrape time from the mirror's debug server (distribution's expvar
 * `registry.proxy`), plus whether that server answered. The packaged mirror
 * (packaging/systemd/runner-warden-mirror.yml) serves on 127.0.0.1:5001 and its debug server on
 * the next port, 5002: {@link mirrorDebugAddress} follows that layout.
 *
 *   runner_warden_mirror_up                              1 when the debug server answered
 *   runner_warden_mirror_hits_total{kind=blob|manifest}  served from the cache
 *   runner_warden_mirror_misses_total{kind}              fetched from the upstream
 *   runner_warden_mirror_upstream_bytes_total            blob bytes fetched from the upstream
 *
 * The counters are the mirror's own: they start again at zero when it restarts (Prometheus
 * reads that as a counter reset).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { mirrorStats, type MirrorStats } from './mirror.js';

/** A scrape must not hang on a sick mirror; half a second is ample for a loopback expvar read. */
const SCRAPE_TIMEOUT_MS = 500;

/** The four collect() calls of one scrape share one read made within this window. */
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

/** Registers the mirror's metrics on `registry`; each scrape reads the counters once. */
export function registerMirrorMetrics(registry: Registry, source: MirrorDebugSource, read: (addr: string) => Promise<MirrorStats | undefined> = readStats): void {
  const registers = [registry];
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
    help: 'Blob bytes the image cache fetched from its upstream.',
    registers,
    async collect() {
      const s = await stats();
      this.reset();
      if (s) this.inc(s.blobBytesPulled);
    },
  });
}

function readStats(addr: string): Promise<MirrorStats | undefined> {
  return mirrorStats(addr, AbortSignal.timeout(SCRAPE_TIMEOUT_MS));
}
