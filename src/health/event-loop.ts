/**
 * Event-loop delay of the agent's process, published per window so that the figures do not depend
 * on how often anyone scrapes.
 *
 * A timer fires every EVENT_LOOP_RESOLUTION_MS and records how late it fired (what Node's
 * `monitorEventLoopDelay` records, from JavaScript instead of libuv), into a ring of the window's
 * samples: percentiles are exact over the samples held, the maximum over the whole window. This
 * replaced `monitorEventLoopDelay`, whose histogram (three significant figures from 1 ns up)
 * is a fixed 0.36 MiB an idle agent held for one gauge, and which loaded `perf_hooks`.
 */
import type { Clock } from '../lib/clock.js';
import { isAbort } from '../lib/errors.js';
import type { LoopFigures } from './metric-set.js';

/**
 * Window over which the event-loop delay percentiles are published: one minute is four scrapes at
 * the usual 15 s interval, long enough to catch a stall, short enough that an old one ages out.
 */
export const EVENT_LOOP_WINDOW_MS = 60_000;

/** Sampling resolution of the event-loop delay monitor; 20 ms costs nothing measurable. */
export const EVENT_LOOP_RESOLUTION_MS = 20;

/**
 * Most samples held for the percentiles (4 bytes each, 16 KiB): a 60 s window at 20 ms needs
 * 3,000; a longer window keeps its last 4,096 (82 s at 20 ms), its maximum still over all of it.
 */
export const EVENT_LOOP_MAX_SAMPLES = 4096;

/** One window's delays in milliseconds: the most recent `capacity` for percentiles, the maximum of all. */
export class DelaySamples {
  private readonly ring: Float32Array;
  private next = 0;
  private held = 0;
  private maxMs = 0;

  constructor(capacity: number) {
    this.ring = new Float32Array(Math.max(1, Math.min(EVENT_LOOP_MAX_SAMPLES, Math.ceil(capacity))));
  }

  /** Samples recorded since the last reset (up to the capacity). */
  get count(): number {
    return this.held;
  }

  record(delayMs: number): void {
    const d = delayMs > 0 ? delayMs : 0;
    this.ring[this.next] = d;
    this.next = (this.next + 1) % this.ring.length;
    if (this.held < this.ring.length) this.held++;
    if (d > this.maxMs) this.maxMs = d;
  }

  reset(): void {
    this.next = 0;
    this.held = 0;
    this.maxMs = 0;
  }

  /** p50, p99 (nearest rank) and max in seconds; zeros when nothing was recorded. */
  figures(): LoopFigures {
    if (this.held === 0) return { p50: 0, p99: 0, max: 0 };
    const sorted = this.ring.slice(0, this.held).sort();
    const rank = (p: number): number => (sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0) / 1e3;
    return { p50: rank(50), p99: rank(99), max: this.maxMs / 1e3 };
  }
}

/** Measures while run() is active; figures() reads the last window (or the current one before the first ends). */
export class EventLoopDelay {
  private samples: DelaySamples | undefined;
  private published: LoopFigures | undefined;

  constructor(
    private readonly clock: Clock,
    readonly windowMs: number = EVENT_LOOP_WINDOW_MS,
  ) {}

  /** Measures until `signal` aborts; calls `onPublish` after each window. */
  async run(signal: AbortSignal, onPublish: () => void): Promise<void> {
    const samples = new DelaySamples(this.windowMs / EVENT_LOOP_RESOLUTION_MS);
    this.samples = samples;
    // Real time on purpose: the delay is the real loop's, whatever clock paces the windows.
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      samples.record(now - last - EVENT_LOOP_RESOLUTION_MS);
      last = now;
    }, EVENT_LOOP_RESOLUTION_MS);
    // The owner awaits run(); the sampler alone must not keep the process alive.
    timer.unref();
    try {
      for (;;) {
        await this.clock.sleep(this.windowMs, signal);
        this.published = samples.figures();
        onPublish();
        samples.reset();
      }
    } catch (err) {
      if (!isAbort(err) && !signal.aborted) throw err;
    } finally {
      clearInterval(timer);
      this.samples = undefined;
    }
  }

  /** p50, p99 and max in seconds; zeros before anything was measured. */
  figures(): LoopFigures {
    if (this.published) return this.published;
    if (this.samples && this.samples.count > 0) return this.samples.figures();
    return { p50: 0, p99: 0, max: 0 };
  }
}
