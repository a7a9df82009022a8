/**
 * Event-loop delay of the agent's process, published per window so that the figures do not depend
 * on how often anyone scrapes.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
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

/** Measures while run() is active; figures() reads the last window (or the current one before the first ends). */
export class EventLoopDelay {
  private monitor: IntervalHistogram | undefined;
  private published: LoopFigures | undefined;

  constructor(
    private readonly clock: Clock,
    readonly windowMs: number = EVENT_LOOP_WINDOW_MS,
  ) {}

  /** Measures until `signal` aborts; calls `onPublish` after each window. */
  async run(signal: AbortSignal, onPublish: () => void): Promise<void> {
    const h = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
    h.enable();
    this.monitor = h;
    try {
      for (;;) {
        await this.clock.sleep(this.windowMs, signal);
        this.published = readLoop(h);
        onPublish();
        h.reset();
      }
    } catch (err) {
      if (!isAbort(err) && !signal.aborted) throw err;
    } finally {
      h.disable();
      this.monitor = undefined;
    }
  }

  /** p50, p99 and max in seconds; zeros before anything was measured. */
  figures(): LoopFigures {
    if (this.published) return this.published;
    if (this.monitor && this.monitor.count > 0) return readLoop(this.monitor);
    return { p50: 0, p99: 0, max: 0 };
  }
}

function readLoop(h: IntervalHistogram): LoopFigures {
  if (h.count === 0) return { p50: 0, p99: 0, max: 0 };
  // The histogram is in nanoseconds; Prometheus wants seconds.
  return { p50: h.percentile(50) / 1e9, p99: h.percentile(99) / 1e9, max: h.max / 1e9 };
}
