/**
 * GitHub's secondary rate limits, as documented for the REST API: no more than 900 points a
 * minute to one endpoint (GET, HEAD and OPTIONS cost 1 point; POST, PATCH, PUT and DELETE cost 5)
 * and no more than 100 requests in flight at once, per caller (a token, or an App installation
 * whose tokens share one budget). Past either, the answer is 403 (or 429) with a message saying a
 * secondary rate limit was exceeded and, here always, `retry-after` in seconds.
 *
 * The window is a sliding minute. A refused request costs no points (so the numbers a fleet
 * simulation derives its lower bound from are exact), but it is counted in `answers`.
 */
import type { Clock } from '../../lib/clock.js';
import { SECONDARY_LIMIT_MESSAGE } from './faults.js';
import type { Reply } from './http.js';

/** The documented per-endpoint budget. */
export const DEFAULT_POINTS_PER_MINUTE = 900;
/** The documented cap on concurrent requests (REST and GraphQL together). */
export const DEFAULT_CONCURRENT = 100;
/** The sliding window of the points budget. */
const WINDOW_MS = 60_000;
/**
 * retry-after for a concurrency refusal: the undocumented wait GitHub asks for here is short; one
 * second lets the requests in flight finish.
 */
const CONCURRENCY_RETRY_AFTER_S = 1;

const SECONDARY_DOCS = 'https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits';

/** Options of the secondary limits; every field has a default. */
export interface SecondaryLimitOptions {
  /** Points a minute per caller and endpoint; default 900. */
  pointsPerMinute?: number;
  /** Requests in flight per caller; default 100. */
  concurrent?: number;
  /** The status of a refusal; default 403 (GitHub sends 403 or 429). */
  status?: 403 | 429;
}

/** The point cost of one request (GitHub's documented table). */
export function pointsOf(method: string): number {
  return ['GET', 'HEAD', 'OPTIONS'].includes(method.toUpperCase()) ? 1 : 5;
}

/** Counts of limit answers, for tests and the fleet simulation. */
export interface LimitAnswerCounts {
  points: number;
  concurrent: number;
}

/** Tracks points per caller and endpoint, and requests in flight per caller. */
export class SecondaryLimiter {
  private readonly windows = new Map<string, { at: number; points: number }[]>();
  private readonly inFlight = new Map<string, number>();
  readonly answers: LimitAnswerCounts = { points: 0, concurrent: 0 };
  readonly pointsPerMinute: number;
  readonly concurrent: number;
  private readonly status: 403 | 429;

  constructor(
    private readonly clock: Clock,
    opts: SecondaryLimitOptions = {},
  ) {
    this.pointsPerMinute = opts.pointsPerMinute ?? DEFAULT_POINTS_PER_MINUTE;
    this.concurrent = opts.concurrent ?? DEFAULT_CONCURRENT;
    this.status = opts.status ?? 403;
  }

  /**
   * Admits one request of `key` into flight, or returns the refusal. The caller must call the
   * returned release once the answer is written.
   */
  enter(key: string): { release: () => void } | { refused: Reply } {
    const n = this.inFlight.get(key) ?? 0;
    if (n >= this.concurrent) {
      this.answers.concurrent++;
      return { refused: this.refusal(CONCURRENCY_RETRY_AFTER_S) };
    }
    this.inFlight.set(key, n + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = (this.inFlight.get(key) ?? 1) - 1;
        if (left <= 0) this.inFlight.delete(key);
        else this.inFlight.set(key, left);
      },
    };
  }

  /** Charges one request to `key`'s budget for `endpoint` (method and route); the refusal when it is spent. */
  charge(key: string, method: string, endpoint: string): Reply | undefined {
    const now = this.clock.now();
    const id = `${key} ${method} ${endpoint}`;
    const log = (this.windows.get(id) ?? []).filter((e) => e.at > now - WINDOW_MS);
    const cost = pointsOf(method);
    let used = log.reduce((s, e) => s + e.points, 0);
    if (used + cost > this.pointsPerMinute) {
      // Wait until enough of the oldest charges leave the window for this one to fit.
      let waitMs = 0;
      for (const e of log) {
        used -= e.points;
        waitMs = e.at + WINDOW_MS - now;
        if (used + cost <= this.pointsPerMinute) break;
      }
      this.windows.set(id, log);
      this.answers.points++;
      return this.refusal(Math.max(1, Math.ceil(waitMs / 1000)));
    }
    log.push({ at: now, points: cost });
    this.windows.set(id, log);
    return undefined;
  }

  private refusal(retryAfterS: number): Reply {
    return {
      status: this.status,
      body: { message: SECONDARY_LIMIT_MESSAGE, documentation_url: SECONDARY_DOCS, status: String(this.status) },
      headers: { 'retry-after': String(retryAfterS) },
    };
  }
}
