/**
 * The primary rate limit: one hourly bucket per caller, the `x-ratelimit-*` headers on every REST
 * answer (docs/runner-contract.md §10), and a switch that exhausts it for tests of waiting until the reset.
 */
import type { Clock } from '../../lib/clock.js';
import { apiError, type Reply } from './http.js';

/** The primary window is one hour. */
const WINDOW_S = 3600;
/** Unauthenticated callers get 60 requests an hour (GitHub docs). */
const ANONYMOUS_LIMIT = 60;

const RATE_LIMIT_DOCS = 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api';

interface Bucket {
  limit: number;
  used: number;
  /** Epoch seconds. */
  reset: number;
}

/** Numbers of one bucket, as /rate_limit reports them. */
export interface RateSnapshot {
  limit: number;
  remaining: number;
  used: number;
  reset: number;
}

/** Counts REST calls per caller key and answers 403/429 once a bucket is empty. */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private exhaustedUntil = 0;
  private exhaustStatus = 403;
  /** Primary-limit refusals answered so far. */
  answers = 0;

  constructor(
    private readonly clock: Clock,
    private readonly limit: number,
    /** The hourly budget of an App installation (shared by all its tokens); default `limit`. */
    private readonly installationLimit: number = limit,
  ) {}

  /**
   * Counts one call for `key` (unless `count` is false) and returns the headers to send, plus the
   * rate-limit reply when the bucket is empty (the call then does not run).
   */
  take(key: string, count: boolean): { headers: Record<string, string>; limited?: Reply } {
    const b = this.bucket(key);
    if (this.clock.now() < this.exhaustedUntil) {
      b.used = b.limit;
      b.reset = Math.ceil(this.exhaustedUntil / 1000);
    }
    const empty = b.used >= b.limit;
    if (count && !empty) b.used++;
    const headers = this.headers(b);
    if (!count || !empty) return { headers };
    this.answers++;
    const who = key === 'anonymous' ? '127.0.0.1' : key.startsWith('installation:') ? `installation ID ${key.slice(13)}` : 'user ID 1';
    const limited = apiError(this.exhaustStatus, `API rate limit exceeded for ${who}.`);
    limited.body = { ...(limited.body as object), documentation_url: RATE_LIMIT_DOCS };
    return { headers, limited };
  }

  /** The bucket numbers without counting (for /rate_limit). */
  snapshot(key: string): RateSnapshot {
    const b = this.bucket(key);
    return { limit: b.limit, remaining: Math.max(0, b.limit - b.used), used: b.used, reset: b.reset };
  }

  /** Every caller gets 403 (or 429) with remaining 0 until `resetInSeconds` from now. */
  exhaust(resetInSeconds: number, status: 403 | 429 = 403): void {
    this.exhaustedUntil = this.clock.now() + resetInSeconds * 1000;
    this.exhaustStatus = status;
    for (const b of this.buckets.values()) {
      b.used = b.limit;
      b.reset = Math.ceil(this.exhaustedUntil / 1000);
    }
  }

  private bucket(key: string): Bucket {
    const nowS = Math.floor(this.clock.now() / 1000);
    let b = this.buckets.get(key);
    if (!b || nowS >= b.reset) {
      const limit = key === 'anonymous' ? ANONYMOUS_LIMIT : key.startsWith('installation:') ? this.installationLimit : this.limit;
      b = { limit, used: 0, reset: nowS + WINDOW_S };
      this.buckets.set(key, b);
    }
    return b;
  }

  private headers(b: Bucket): Record<string, string> {
    return {
      'x-ratelimit-limit': String(b.limit),
      'x-ratelimit-remaining': String(Math.max(0, b.limit - b.used)),
      'x-ratelimit-used': String(b.used),
      'x-ratelimit-reset': String(b.reset),
      'x-ratelimit-resource': 'core',
    };
  }
}
