/**
 * Samples host figures on a timer (CPU load, memory, free bytes and inodes of the work
 * filesystem) and hands each sample to a callback. The health server and /metrics only read the
 * last sample: no work on the request path, so a scrape stays cheap even while a cleanup keeps
 * the disk busy.
 */
import { statfs } from 'node:fs/promises';
import { systemClock, type Clock } from '../lib/clock.js';
import { describeError, isAbort } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/log.js';
import type { HostFigures } from './metrics.js';

/**
 * Sampling interval. 15 s is the usual Prometheus scrape interval, so a scrape never sees a figure
 * more than one interval old; a sample reads /proc/stat, /proc/meminfo and one statfs, a fraction
 * of a millisecond of work, so this costs nothing on an idle host. Disk watermarks that drive
 * decisions are checked by cleanup itself, not from this sample.
 */
export const HOST_FIGURES_INTERVAL_MS = 15_000;

/** One sample: the figures plus the time they were taken (ISO 8601). */
export type HostSample = HostFigures & { updatedAt: string };

/** Where CPU and memory figures come from; the default is systeminformation. Tests inject fakes. */
export interface HostSources {
  cpuLoadPercent(): Promise<number | undefined>;
  memUsedPercent(): Promise<number | undefined>;
  /** Whether the container engine answers; undefined when the host has none (no socket). */
  containerEngine?(): Promise<HostFigures['containerEngine']>;
  /** The docker mode the current policy gets on this host. */
  dockerMode?(): Promise<HostFigures['dockerMode']>;
  /** Whether the image cache answers; undefined when the policy names none. */
  imageCache?(): Promise<HostFigures['imageCache']>;
}

/** Options of HostFiguresSampler; defaults: 15 s interval, system clock, systeminformation. */
export interface HostFiguresOptions {
  /** A path on the work filesystem (normally the slot's workDir). */
  workDir: string;
  onSample: (sample: HostSample) => void;
  intervalMs?: number;
  clock?: Clock;
  log?: Logger;
  sources?: HostSources;
}

/**
 * systeminformation, imported on first use: it evaluates every one of its modules at import, and
 * the agent reads its figures from /proc (proc-figures.ts) without it.
 */
async function loadSi(): Promise<{
  currentLoad(): Promise<{ currentLoad: number }>;
  mem(): Promise<{ total: number; available: number }>;
}> {
  return (await import('systeminformation')).default;
}

/** The systeminformation-backed sources. */
export const systemSources: HostSources = {
  async cpuLoadPercent() {
    const si = await loadSi();
    const load = await si.currentLoad();
    return load.currentLoad;
  },
  async memUsedPercent() {
    const si = await loadSi();
    const m = await si.mem();
    // "available" counts reclaimable cache as free, which is what a job can actually get.
    return m.total > 0 ? ((m.total - m.available) / m.total) * 100 : undefined;
  },
};

/** Takes host samples every `intervalMs` until aborted; see HOST_FIGURES_INTERVAL_MS. */
export class HostFiguresSampler {
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly sources: HostSources;
  private readonly intervalMs: number;

  constructor(private readonly opts: HostFiguresOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? silentLogger();
    this.sources = opts.sources ?? systemSources;
    this.intervalMs = opts.intervalMs ?? HOST_FIGURES_INTERVAL_MS;
  }

  /** Takes one sample. A figure that cannot be read is left out (and logged), never thrown. */
  async sampleOnce(): Promise<HostSample> {
    const sample: HostSample = { updatedAt: new Date(this.clock.now()).toISOString() };
    const [cpu, mem, fs, engine, docker, cache] = await Promise.allSettled([
      this.sources.cpuLoadPercent(),
      this.sources.memUsedPercent(),
      statfs(this.opts.workDir),
      this.sources.containerEngine?.(),
      this.sources.dockerMode?.(),
      this.sources.imageCache?.(),
    ]);
    if (engine.status === 'fulfilled' && engine.value !== undefined) sample.containerEngine = engine.value;
    if (docker.status === 'fulfilled' && docker.value !== undefined) sample.dockerMode = docker.value;
    if (cache.status === 'fulfilled' && cache.value !== undefined) sample.imageCache = cache.value;
    if (cpu.status === 'fulfilled' && cpu.value !== undefined) sample.cpuLoadPercent = round(cpu.value);
    if (mem.status === 'fulfilled' && mem.value !== undefined) sample.memUsedPercent = round(mem.value);
    if (fs.status === 'fulfilled') {
      const s = fs.value;
      sample.workFsFreeBytes = s.bavail * s.bsize;
      sample.workFsFreeInodes = s.ffree;
      if (s.blocks > 0) sample.workFsFreePercent = round((s.bavail / s.blocks) * 100);
      // Some filesystems (btrfs) report no inode total: leave the share out rather than say 0.
      if (s.files > 0) sample.workFsFreeInodesPercent = round((s.ffree / s.files) * 100);
    }
    for (const [what, r] of [
      ['cpu', cpu],
      ['memory', mem],
      ['work fs', fs],
      ['container engine', engine],
      ['docker mode', docker],
      ['image cache', cache],
    ] as const) {
      if (r.status === 'rejected') {
        this.log.warn({ figure: what, err: describeError(r.reason) }, 'host figure unavailable');
      }
    }
    return sample;
  }

  /** Samples at once, then every interval, until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        const sample = await this.sampleOnce();
        if (signal.aborted) break;
        this.opts.onSample(sample);
        await this.clock.sleep(this.intervalMs, signal);
      }
    } catch (err) {
      if (!isAbort(err) && !signal.aborted) throw err;
    }
  }
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
