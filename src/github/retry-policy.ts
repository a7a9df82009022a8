/**
 * When and how long to wait before retrying a GitHub API call, per docs/runner-contract.md §10:
 * - primary limit exhausted (403/429 with x-ratelimit-remaining: 0): wait until x-ratelimit-reset;
 * - secondary limit (403/429 saying so): wait retry-after if given, else until reset if remaining is 0,
 *   else at least 60 s, doubling on each further try;
 * - 5xx and network errors: exponential backoff from 1 s; a 5xx with retry-after waits that long;
 * - everything else (401, 404, 409, 422, other 403s): no retry.
 * Every wait has full jitter: a backoff is uniform in [0, envelope]; a wait the server imposed
 * (retry-after, a reset) is never shortened, so it gets uniform [0, min(wait, LIMIT_JITTER_MAX_MS)]
 * on top. A fleet refused at the same second then comes back spread out, not in lockstep.
 * A host given its place in the fleet waits imposedWaitMs and then its slot instead (fleet-pacing.ts).
 * Kept apart from the Octokit adapter so the rules are unit-tested without HTTP.
 */

import { backoffDelay } from '../lib/backoff.js';

/** The first wait after a 5xx or network error; doubles per try. */
export const SERVER_ERROR_BASE_MS = 1_000;
/** The contract: without headers, wait at least 60 s after a secondary rate limit. */
export const SECONDARY_LIMIT_MIN_MS = 60_000;
/** Never wait longer than this for one retry (a reset can be up to an hour away). */
export const MAX_SINGLE_WAIT_MS = 60 * 60_000;
/** Tries per call, the first included, before the error goes to the caller (whose loop backs off further). */
export const MAX_TRIES = 5;
/** Cap of the backoff envelope after 5xx and network errors (the caller's own loop backs off beyond). */
export const SERVER_ERROR_MAX_MS = 60_000;
/**
 * The most jitter added to a wait the server imposed: spreading a fleet over up to five minutes
 * keeps it under the per-minute limits without holding a lone host back long after a reset.
 */
export const LIMIT_JITTER_MAX_MS = 5 * 60_000;

/** What came back, or the failure, as far as the retry decision needs it. */
export interface Attempt {
  status?: number;
  headers: Record<string, string | number | undefined>;
  message?: string;
  /** Network error (no response at all). */
  network?: boolean;
  /** 1-based number of this attempt. */
  attempt: number;
  /** Epoch ms now. */
  now: number;
  /** Uniform numbers in [0, 1) for the jitter; default Math.random. */
  random?: () => number;
}

/** The decision: retry after `waitMs`, or give up; `kind` names why (for logs and metrics). */
export type RetryDecision =
  | { retry: true; waitMs: number; kind: 'primary-limit' | 'secondary-limit' | 'retry-after' | 'server-error' | 'network' }
  | { retry: false };

function header(h: Attempt['headers'], name: string): string | undefined {
  const v = h[name] ?? h[name.toLowerCase()];
  return v === undefined ? undefined : String(v);
}

/** True when a 403/429 is a rate limit rather than a permission problem. */
export function isRateLimited(a: Pick<Attempt, 'status' | 'headers' | 'message'>): boolean {
  if (a.status !== 403 && a.status !== 429) return false;
  if (header(a.headers, 'x-ratelimit-remaining') === '0') return true;
  if (header(a.headers, 'retry-after') !== undefined) return true;
  return /rate limit/i.test(a.message ?? '');
}

/**
 * The part of a retry's wait the server imposed, without jitter (ms): retry-after, the time to a
 * primary reset, or the contract's minimum after a secondary limit without headers; 0 where the
 * wait is a backoff (5xx without retry-after, network). A host pacing its retries by its fleet
 * slot waits at least this long and then for its slot, instead of the jitter.
 */
export function imposedWaitMs(a: Attempt): number {
  const clamp = (ms: number): number => Math.min(Math.max(ms, 0), MAX_SINGLE_WAIT_MS);
  const retryAfter = header(a.headers, 'retry-after');
  const retryAfterMs = retryAfter !== undefined && Number.isFinite(Number(retryAfter)) ? Number(retryAfter) * 1000 : undefined;
  if (a.network) return 0;
  if ((a.status ?? 0) >= 500) return retryAfterMs !== undefined ? clamp(retryAfterMs) : 0;
  if (!isRateLimited(a)) return 0;
  if (retryAfterMs !== undefined) return clamp(retryAfterMs);
  const remaining = header(a.headers, 'x-ratelimit-remaining');
  const reset = header(a.headers, 'x-ratelimit-reset');
  if (remaining === '0' && reset !== undefined && Number.isFinite(Number(reset))) return clamp(Number(reset) * 1000 - a.now + 1000);
  return clamp(SECONDARY_LIMIT_MIN_MS * 2 ** (a.attempt - 1));
}

/** Decides whether to retry an attempt and how long to wait first. */
export function decideRetry(a: Attempt): RetryDecision {
  if (a.attempt >= MAX_TRIES) return { retry: false };
  const random = a.random ?? Math.random;
  const clamp = (ms: number): number => Math.min(Math.max(ms, 0), MAX_SINGLE_WAIT_MS);
  // A wait the server imposed is kept whole; the jitter goes on top of it, over at least `spread`.
  const imposed = (ms: number, spread = 0): number =>
    clamp(ms + Math.floor(random() * (Math.min(Math.max(clamp(ms), spread), LIMIT_JITTER_MAX_MS) + 1)));
  const backoff = (): number => backoffDelay(a.attempt - 1, { baseMs: SERVER_ERROR_BASE_MS, maxMs: SERVER_ERROR_MAX_MS }, random);
  const retryAfter = header(a.headers, 'retry-after');
  const retryAfterMs = retryAfter !== undefined && Number.isFinite(Number(retryAfter)) ? Number(retryAfter) * 1000 : undefined;
  if (a.network) return { retry: true, waitMs: backoff(), kind: 'network' };
  const status = a.status ?? 0;
  if (status >= 500) {
    if (retryAfterMs !== undefined) return { retry: true, waitMs: imposed(retryAfterMs), kind: 'retry-after' };
    return { retry: true, waitMs: backoff(), kind: 'server-error' };
  }
  if (!isRateLimited(a)) return { retry: false };
  const remaining = header(a.headers, 'x-ratelimit-remaining');
  const reset = header(a.headers, 'x-ratelimit-reset');
  const secondary = /secondary rate limit/i.test(a.message ?? '') || remaining !== '0';
  const kind = secondary ? 'secondary-limit' : 'primary-limit';
  // A secondary limit's retry-after says when this caller may send again, not when the fleet
  // behind the same installation may: spreading over at least a minute keeps the refused hosts
  // from meeting the limit again all together a few seconds later.
  if (retryAfterMs !== undefined) return { retry: true, waitMs: imposed(retryAfterMs, secondary ? SECONDARY_LIMIT_MIN_MS : 0), kind };
  if (remaining === '0' && reset !== undefined && Number.isFinite(Number(reset))) {
    // One extra second: reset is a whole-second epoch and the server's clock may be a little ahead.
    return { retry: true, waitMs: imposed(Number(reset) * 1000 - a.now + 1000), kind };
  }
  return { retry: true, waitMs: imposed(SECONDARY_LIMIT_MIN_MS * 2 ** (a.attempt - 1)), kind: 'secondary-limit' };
}
