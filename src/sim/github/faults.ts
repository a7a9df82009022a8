/**
 * Injected failures: a test adds a fault, the next matching requests get it. Real behaviours
 * (409 for a taken name, 422 for deleting a busy runner, rate limits) are not faults; they live
 * in rest.ts and ratelimit.ts.
 */
import { STATUS_CODES } from 'node:http';
import { DOCS_URL } from './http.js';
import type { RequestKind } from './types.js';

/** The message GitHub sends when a secondary rate limit is hit (octokit matches "secondary rate"). */
export const SECONDARY_LIMIT_MESSAGE =
  'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. ' +
  'If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.';

/** Which requests a fault hits. */
export interface FaultMatch {
  method?: string;
  /** Tested against the path below the REST prefix (or the full path for broker requests). */
  path?: RegExp | string;
  /** Default 'rest', so a REST fault never eats a listener's long poll; 'any' hits every kind. */
  kind?: RequestKind | 'any';
}

/** A fault to inject. Without `status` and `reset` it only delays (by `delayMs`) and then answers normally. */
export interface FaultSpec {
  match?: FaultMatch;
  /** How many matching requests it hits; default 1, Infinity for all. */
  times?: number;
  status?: number;
  /** Default `{message: <status text>, documentation_url}`. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Real-time delay before the answer. */
  delayMs?: number;
  /**
   * The service finishes the request only once this settles, even when the client has gone (its
   * answer is then lost): a generate-jitconfig whose caller died still creates the runner, later.
   */
  completeWhen?: Promise<unknown>;
  /** Destroy the connection instead of answering (a network error for the client). */
  reset?: boolean;
}

/** An added fault; `remaining` counts down as it hits. */
export interface FaultHandle {
  readonly spec: FaultSpec;
  remaining: number;
  /** Stops the fault early. */
  remove(): void;
}

/** The list of active faults of one fake server. */
export class Faults {
  private active: FaultHandle[] = [];

  /** Adds a fault; the oldest matching fault is applied first. */
  add(spec: FaultSpec): FaultHandle {
    const handle: FaultHandle = {
      spec,
      remaining: spec.times ?? 1,
      remove: () => {
        this.active = this.active.filter((h) => h !== handle);
      },
    };
    this.active.push(handle);
    return handle;
  }

  /**
   * A secondary rate limit (docs/runner-contract.md §10): 403 (or 429) with the secondary message and, when
   * `retryAfter` is given, a `retry-after` header in seconds.
   */
  secondaryRateLimit(opts: { times?: number; retryAfter?: number; status?: 403 | 429; match?: FaultMatch } = {}): FaultHandle {
    const status = opts.status ?? 403;
    return this.add({
      ...(opts.match ? { match: opts.match } : {}),
      times: opts.times ?? 1,
      status,
      body: {
        message: SECONDARY_LIMIT_MESSAGE,
        documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits',
        status: String(status),
      },
      headers: opts.retryAfter === undefined ? {} : { 'retry-after': String(opts.retryAfter) },
    });
  }

  /**
   * The next `times` session creates (POST /_broker/sessions) get 409 SessionConflict, as if
   * another listener held the session: the listener retries.
   */
  sessionConflict(times = 1): FaultHandle {
    return this.add({
      match: { kind: 'broker', method: 'POST', path: '/sessions' },
      times,
      status: 409,
      body: { code: 'SessionConflict' },
    });
  }

  /** Removes every fault. */
  clear(): void {
    this.active = [];
  }

  /** Faults still waiting to hit. */
  list(): readonly FaultHandle[] {
    return this.active;
  }

  /** The fault for this request, consuming one hit, or undefined. */
  take(kind: RequestKind, method: string, path: string): FaultHandle | undefined {
    const h = this.active.find((f) => matches(f.spec.match, kind, method, path));
    if (!h) return undefined;
    h.remaining--;
    if (h.remaining <= 0) h.remove();
    return h;
  }
}

function matches(m: FaultMatch | undefined, kind: RequestKind, method: string, path: string): boolean {
  const wantKind = m?.kind ?? 'rest';
  if (wantKind !== 'any' && wantKind !== kind) return false;
  if (m?.method && m.method.toUpperCase() !== method) return false;
  if (m?.path !== undefined) {
    if (typeof m.path === 'string' ? m.path !== path : !m.path.test(path)) return false;
  }
  return true;
}

/** The default body of a fault reply. */
export function faultBody(status: number): unknown {
  return { message: STATUS_CODES[status] ?? 'Error', documentation_url: DOCS_URL, status: String(status) };
}
