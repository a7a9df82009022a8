/**
 * Retries of a cloud API call the API refused for its request rate (AWS `Throttling`, GCP 429
 * `rateLimitExceeded`, Azure 429 with `Retry-After`). A fleet recycled at once (a policy change,
 * a runner deprecation) sends every host's call in the same second; the API admits its burst and
 * refuses the rest. Each refused host then waits a FULL-jitter backoff (lib/backoff.ts: uniform in
 * [0, envelope], the envelope doubling per refusal), plus any `Retry-After` the API imposed, kept
 * whole, so the refused part of the fleet comes back spread over the window instead of together.
 * A host that knows its place in the fleet (`fleet`) waits instead for its own slot of a window
 * sized from the API's bucket (cloud-slots.ts): the fleet is then through in about the time the
 * bucket allows, each host refused at most once.
 */
import { backoffDelay, type BackoffPolicy, type RandomSource } from '../lib/backoff.js';
import { systemClock, type Clock } from '../lib/clock.js';
import type { FleetPlace } from '../lib/fleet-slots.js';
import { recycleSlots, type ApiRate } from './cloud-slots.js';

/** What a provider needs to wait between throttled tries; defaults: the system clock, Math.random. */
export interface ThrottleDeps {
  clock?: Clock;
  random?: RandomSource;
  /** This host's place in the fleet (host config `fleet`); absent: full jitter alone. */
  fleet?: FleetPlace;
}

/** The retry envelope of throttled calls; every provider uses THROTTLE_DEFAULTS. */
export interface ThrottlePolicy extends BackoffPolicy {
  /** Tries in all, the first included. */
  maxTries: number;
}

/**
 * One second first (a cloud API's bucket refills in about that), doubling to two minutes: sixteen
 * tries span about twenty minutes of envelope (a thousand hosts at once against a bucket of 5 a
 * second took up to eleven), which outlasts a recycle of a few thousand hosts against the
 * documented rates; a host that is used up may wait, it serves no job meanwhile.
 */
export const THROTTLE_DEFAULTS: ThrottlePolicy = { baseMs: 1_000, maxMs: 120_000, maxTries: 16 };

/**
 * A try's verdict: the answer stands (`final`), the API refused it for its rate (`throttled`, with
 * the wait it asked for), or it failed in passing (`transient`: a 5xx or no answer).
 */
export type ThrottleVerdict = { kind: 'final' } | { kind: 'throttled'; retryAfterMs?: number } | { kind: 'transient' };

/**
 * Sends until the answer is final or the tries run out (throttling answers: `policy.maxTries` in
 * all; transient failures: `transientTries` in all); returns the last answer and how many
 * throttling answers came back. Every wait is full jitter on the same envelope, runs on
 * `deps.clock`, and stops with `signal`; with `deps.fleet` and the API's `rate`, a throttled try
 * waits for the host's next slot at or after the API's Retry-After instead.
 */
export async function sendThrottled<T>(
  send: () => Promise<T>,
  verdict: (answer: T) => ThrottleVerdict,
  signal: AbortSignal,
  deps: ThrottleDeps = {},
  transientTries = 3,
  policy: ThrottlePolicy = THROTTLE_DEFAULTS,
  rate?: ApiRate,
): Promise<{ answer: T; throttled: number }> {
  const clock = deps.clock ?? systemClock;
  const slots = deps.fleet && rate ? recycleSlots(deps.fleet, rate) : undefined;
  const random = deps.random ?? Math.random;
  let throttled = 0;
  let transient = 0;
  for (let retry = 0; ; retry++) {
    const answer = await send();
    const v = verdict(answer);
    if (v.kind === 'final') return { answer, throttled };
    if (v.kind === 'throttled' ? ++throttled >= policy.maxTries : ++transient >= transientTries) return { answer, throttled };
    const imposed = v.kind === 'throttled' ? (v.retryAfterMs ?? 0) : 0;
    const now = clock.now();
    const waitMs = slots && v.kind === 'throttled' ? slots.retryAt(now, imposed) - now : imposed + backoffDelay(retry, policy, random);
    await clock.sleep(waitMs, signal);
  }
}

/** The outcome of one plain-HTTP try: a response, or the network error (no answer). */
export type HttpTry<R> = { res: R; err?: undefined } | { res?: undefined; err: unknown };

/**
 * The verdict on an HTTP answer of Google's or Azure's APIs: 429 (or 403 whose reason says rate
 * limit, as older Google APIs answer) is throttling, with its `Retry-After`; a 5xx or no answer is
 * transient; anything else stands.
 */
export function httpVerdict(
  t: HttpTry<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>,
): ThrottleVerdict {
  if (t.res === undefined) return { kind: 'transient' };
  const { status, headers, body } = t.res;
  if (status === 429 || (status === 403 && /"reason"\s*:\s*"(rateLimitExceeded|userRateLimitExceeded)"/.test(body))) {
    const after = retryAfterMs(headers['retry-after']);
    return after === undefined ? { kind: 'throttled' } : { kind: 'throttled', retryAfterMs: after };
  }
  return status >= 500 ? { kind: 'transient' } : { kind: 'final' };
}

/** sendThrottled over a plain-HTTP request with httpVerdict; a network error comes back as `err` (an abort rejects). */
export async function sendHttpThrottled<R extends { status: number; headers: Record<string, string | string[] | undefined>; body: string }>(
  send: () => Promise<R>,
  signal: AbortSignal,
  deps: ThrottleDeps = {},
  rate?: ApiRate,
): Promise<{ answer: HttpTry<R>; throttled: number }> {
  const once = async (): Promise<HttpTry<R>> => {
    try {
      return { res: await send() };
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      return { err };
    }
  };
  return sendThrottled(once, httpVerdict, signal, deps, undefined, THROTTLE_DEFAULTS, rate);
}

/** `Retry-After` in whole seconds (the form the cloud APIs send) as ms; undefined when absent or not a number. */
export function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const s = Array.isArray(value) ? value[0] : value;
  if (s === undefined || !/^\d+$/.test(s.trim())) return undefined;
  return Number(s.trim()) * 1000;
}
