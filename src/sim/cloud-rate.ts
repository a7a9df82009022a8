/**
 * The request rate a fake cloud API enforces, as the real ones do: a token bucket per account
 * (AWS documents its API throttling so; Azure Resource Manager throttles writes by a bucket per
 * subscription and region; a Google per-minute quota behaves as a bucket of one minute's worth
 * refilled evenly). A call takes one token; with none left it is refused, and the caller learns
 * when the next token comes. Time is the injected clock, so a fleet simulation can run on its own.
 */
import { systemClock, type Clock } from '../lib/clock.js';

/** A bucket of `burst` tokens refilled at `perSecond`. */
export interface CloudRate {
  burst: number;
  perSecond: number;
}

/** One account's bucket on one clock. */
export class RateBucket {
  private tokens: number;
  private at: number;
  /** Refusals so far. */
  refused = 0;

  constructor(
    readonly rate: CloudRate,
    private readonly clock: Clock = systemClock,
  ) {
    this.tokens = rate.burst;
    this.at = clock.now();
  }

  /** Takes a token: undefined when admitted, else the ms until one is there. */
  take(): number | undefined {
    const now = this.clock.now();
    this.tokens = Math.min(this.rate.burst, this.tokens + ((now - this.at) / 1000) * this.rate.perSecond);
    this.at = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return undefined;
    }
    this.refused++;
    return Math.ceil(((1 - this.tokens) / this.rate.perSecond) * 1000);
  }
}
