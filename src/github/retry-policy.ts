/**
 * When and how long to wait before retrying a GitHub API call, per runner-contract.md §7:
 * - primary limit exhausted (403/429 with x-ratelimit-remaining: 0): wait until x-ratelimit-reset;
 * - secondary limit (403/429 saying so): wait retry-after if given, else until reset if remaining is 0,
 *   else at least 60 s, doubling on each further try;
 * - 5xx and network errors: exponential backoff from 1 s;
 * - everything else (401, 404, 409, 422, other 403s): no retry.
 * Kept apart from the Octokit adapter so the rules are unit-tested without HTTP.
 */

/** The first wait after a 5xx or network error; doubles per try. */
export const SERVER_ERROR_BASE_MS = 1_000;
/** The contract: without headers, wait at least 60 s after a secondary rate limit. */
export const SECONDARY_LIMIT_MIN_MS = 60_000;
/** Never wait longer than this for one retry (a reset can be up to an hour away). */
export const MAX_SINGLE_WAIT_MS = 60 * 60_000;
/** Tries per call, the first included, before the error goes to the caller (whose loop backs off further). */
export const MAX_TRIES = 5;

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
}

/** The decision: retry after `waitMs`, or give up; `kind` names why (for logs and metrics). */
export type RetryDecision =
  | { retry: true; waitMs: number; kind: 'primary-limit' | 'secondary-limit' | 'server-error' | 'network' }
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

/** Decides whether to retry an attempt and how long to wait first. */
export function decideRetry(a: Attempt): RetryDecision {
  if (a.attempt >= MAX_TRIES) return { retry: false };
  const clamp = (ms: number): number => Math.min(Math.max(ms, 0), MAX_SINGLE_WAIT_MS);
  if (a.network) {
    return { retry: true, waitMs: SERVER_ERROR_BASE_MS * 2 ** (a.attempt - 1), kind: 'network' };
  }
  const status = a.status ?? 0;
  if (status >= 500) {
    return { retry: true, waitMs: SERVER_ERROR_BASE_MS * 2 ** (a.attempt - 1), kind: 'server-error' };
  }
  if (!isRateLimited(a)) return { retry: false };
  const retryAfter = header(a.headers, 'retry-after');
  const remaining = header(a.headers, 'x-ratelimit-remaining');
  const reset = header(a.headers, 'x-ratelimit-reset');
  const secondary = /secondary rate limit/i.test(a.message ?? '') || remaining !== '0';
  if (retryAfter !== undefined && Number.isFinite(Number(retryAfter))) {
    return { retry: true, waitMs: clamp(Number(retryAfter) * 1000), kind: secondary ? 'secondary-limit' : 'primary-limit' };
  }
  if (remaining === '0' && reset !== undefined && Number.isFinite(Number(reset))) {
    // One extra second: reset is a whole-second epoch and the server's clock may be a little ahead.
    return { retry: true, waitMs: clamp(Number(reset) * 1000 - a.now + 1000), kind: secondary ? 'secondary-limit' : 'primary-limit' };
  }
  return {
    retry: true,
    waitMs: clamp(SECONDARY_LIMIT_MIN_MS * 2 ** (a.attempt - 1)),
    kind: 'secondary-limit',
  };
}
