/**
 * The two Octokit request hooks of the adapter: retries behind the host's shared gate, and App
 * authentication with the clock-driven installation token cache. Apart from octokit.ts so that
 * each can be read (and tested) on its own.
 *
 * Hook order matters: Octokit binds each hook to the options of the call, so only the innermost
 * hook (the auth one, registered by the constructor) can change what is sent; the retry hook, the
 * outermost, only decides whether and when to call again.
 */
import type { Octokit } from '@octokit/core';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { InstallationTokenCache } from './app-token.js';
import type { FleetSlots } from '../lib/fleet-slots.js';
import type { HostGate } from './host-gate.js';
import { decideRetry, imposedWaitMs, type Attempt } from './retry-policy.js';

/** Called after every HTTP exchange, for metrics (endpoint is the route template). */
export type RequestObserver = (info: {
  endpoint: string;
  status: number;
  rateLimitRemaining?: number;
  /** Set when the answer was a rate limit (the host's gate then closes). */
  limit?: 'primary' | 'secondary' | 'retry-after';
}) => void;

interface OctokitErrorLike {
  status?: number;
  message?: string;
  response?: { headers?: Record<string, string | number | undefined>; data?: unknown };
}

/** What the retry hook needs. */
export interface RetryHookDeps {
  clock: Clock;
  log: Logger;
  gate: HostGate;
  onRequest?: RequestObserver;
  signal?: AbortSignal;
  random?: () => number;
  /** This host's GitHub slots (host config `fleet`); absent: waits are full jitter alone. */
  slots?: FleetSlots;
}

/**
 * Retries per retry-policy.ts. Before every try the call waits for the host's gate; a rate-limit
 * or retry-after answer closes the gate for the whole host (every call waits), a 5xx or network
 * failure only delays this call. With fleet slots, every failure closes the gate until the host's
 * next slot at or after what the server imposed (no jitter: the slot spreads the fleet), so a host
 * that is failing sends only in its own slots, whatever kind of failure it met.
 */
/** How many times a failed request was sent, for the error the retry hook gave up with. */
const sentTimes = new WeakMap<object, number>();

/** The number of attempts behind an error thrown by the retry hook (1 when it is not one of its). */
export function attemptsOf(err: unknown): number {
  return typeof err === 'object' && err !== null ? (sentTimes.get(err) ?? 1) : 1;
}

export function installRetryHook(octokit: Octokit, d: RetryHookDeps): void {
  octokit.hook.wrap('request', async (request, options) => {
    const endpoint = `${options.method} ${options.url}`;
    for (let attempt = 1; ; attempt++) {
      await d.gate.wait(d.signal);
      try {
        const res = await request(options);
        d.onRequest?.({ endpoint, status: res.status, rateLimitRemaining: numOrUndefined(res.headers['x-ratelimit-remaining']) });
        return res;
      } catch (err) {
        if (d.signal?.aborted) throw err;
        const e = err as OctokitErrorLike;
        const headers = e.response?.headers ?? {};
        // No response at all (refused, reset, DNS, or the request deadline): a network failure.
        // A certificate the CA bundle does not trust is permanent, not a network blip: fail at once.
        const network = (e.status === undefined || (e.status === 500 && !e.response)) && !isTlsTrustError(err);
        const tried: Attempt = {
          status: e.status,
          headers,
          message: errorMessage(e),
          network,
          attempt,
          now: d.clock.now(),
          ...(d.random ? { random: d.random } : {}),
        };
        const decision = decideRetry(tried);
        const limit = !decision.retry
          ? undefined
          : decision.kind === 'primary-limit'
            ? 'primary'
            : decision.kind === 'secondary-limit'
              ? 'secondary'
              : decision.kind === 'retry-after'
                ? 'retry-after'
                : undefined;
        d.onRequest?.({
          endpoint,
          status: e.status ?? 0,
          rateLimitRemaining: numOrUndefined(headers['x-ratelimit-remaining']),
          ...(limit ? { limit } : {}),
        });
        if (!decision.retry) {
          if (typeof err === 'object' && err !== null) sentTimes.set(err, attempt);
          throw err;
        }
        const now = d.clock.now();
        const waitMs = d.slots ? d.slots.retryAt(now, imposedWaitMs(tried)) - now : decision.waitMs;
        d.log.warn({ endpoint, status: e.status, attempt, waitMs, kind: decision.kind }, 'github request will be retried');
        if (limit || d.slots) d.gate.pause(now + waitMs);
        else await d.clock.sleep(waitMs, d.signal);
      }
    }
  });
}

/** The mint endpoint: authenticated with the App JWT, never with an installation token. */
const MINT_ROUTE = /\/app\/installations\/[^/]+\/access_tokens$/;

/**
 * An Octokit auth strategy over the token cache: every request carries a token valid for at
 * least RENEW_BEFORE_MS more; a 401 on a cached token (revoked, or a host clock far off) drops it
 * and the call is sent once more with a fresh one.
 */
export function cachedAppAuth(tokens: InstallationTokenCache) {
  return () => ({
    async hook(
      request: ((o: unknown) => Promise<unknown>) & {
        endpoint: { merge: (r: unknown, p?: unknown) => { url: string; headers: Record<string, string> } };
      },
      route: unknown,
      parameters?: unknown,
    ): Promise<unknown> {
      const ep = request.endpoint.merge(route, parameters);
      // Each try of a mint (the retry hook calls this hook again) carries a JWT signed now.
      if (MINT_ROUTE.test(ep.url)) {
        ep.headers.authorization = `bearer ${tokens.jwt()}`;
        return request(ep);
      }
      if (ep.headers.authorization) return request(ep);
      const token = await tokens.get();
      ep.headers.authorization = `token ${token}`;
      try {
        return await request(ep);
      } catch (err) {
        if ((err as { status?: number }).status !== 401) throw err;
        tokens.invalidate(token);
        ep.headers.authorization = `token ${await tokens.get()}`;
        return request(ep);
      }
    },
    async auth(): Promise<{ type: 'token'; token: string; tokenType: 'installation' }> {
      return { type: 'token', token: await tokens.get(), tokenType: 'installation' };
    },
  });
}

/** True for TLS verification failures (untrusted or mismatched certificates) anywhere in the cause chain. */
function isTlsTrustError(err: unknown): boolean {
  for (let e: unknown = err, i = 0; e && i < 6; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) return true;
  }
  return false;
}

function numOrUndefined(v: unknown): number | undefined {
  const n = Number(v);
  return v === undefined || !Number.isFinite(n) ? undefined : n;
}

/** The message of an Octokit failure: the API's own when it sent one. */
export function errorMessage(e: OctokitErrorLike): string {
  const data = e.response?.data as { message?: unknown } | undefined;
  if (data && typeof data.message === 'string') return data.message;
  return e.message ?? 'unknown error';
}
