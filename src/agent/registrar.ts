/**
 * Registration behind one port. `RunnerRegistrar` is one way to create a runner (JIT config, or a
 * registration token and config.sh); `registerRunner` is the loop both share: a fresh name persisted
 * before the request (a crash right after it leaves no ghost), the next number when a name is
 * taken, full-jitter backoff on failure (or, on a host that knows its place in the fleet, its next
 * slot: registrationRetryWait), and a bound on the whole episode (the policy's
 * limits.maxRegistrationMinutes) after which the host is recycled rather than left registering.
 */
import { randomBytes } from 'node:crypto';
import { GitHubApiError, describeError, isAbort } from '../lib/errors.js';
import { backoffDelay, type RandomSource } from '../lib/backoff.js';
import type { FleetSlots } from '../lib/fleet-slots.js';
import { ConfigShError } from '../runner/token-registration.js';
import type { Policy } from '../policy/types.js';
import type { AgentCore } from './core.js';
import type { Timeouts } from './timeouts.js';
import { abortable } from './drain.js';
import { addRecheck, fateUnknown, type RegistrationLedger } from './registrations.js';

/** A registered runner. `jit` is a secret: it lives only in memory and the listener's env. */
export interface Registration {
  id: number;
  name: string;
  labels: string[];
  /** Absent in token mode: config.sh already wrote the runner's files. */
  jit?: string;
}

/** A registration made ahead (JIT prefetch), with the group it was made for. */
export type Prefetched = Registration & { group: string | null };

/** One way of creating runners. */
export interface RunnerRegistrar {
  readonly mode: 'jit' | 'token';
  /** Creates one runner named `name`; rejects with the service's error. */
  request(req: {
    name: string;
    labels: string[];
    group: string | null;
    seq: number;
    signal: AbortSignal;
  }): Promise<{ id: number; jit?: string }>;
  /** A job started: a registrar that can may start the next registration now. */
  jobStarted(policy: Policy): void;
  /** The registration made ahead, if any (always awaited: used or deleted by the caller). */
  takeAhead(): Promise<Prefetched | undefined>;
  /** Deletes a registration made ahead that will not be used (the host is recycled or stops). */
  discardAhead(): Promise<void>;
}

/** How one registration episode ended. */
export type Obtained = { kind: 'registered'; reg: Registration } | { kind: 'drained' } | { kind: 'stuck'; reason: string };

/**
 * The limit when the policy has none (an older policy file): a registration that has not
 * succeeded in an hour will not succeed on this host without help; a fresh host may.
 */
export const DEFAULT_MAX_REGISTRATION_MINUTES = 60;

/** The labels and group of the next registration: the host config's and the policy's. */
export function registrationTarget(core: AgentCore, policy: Policy): { labels: string[]; group: string | null } {
  return { labels: [...new Set([...core.d.runner.labels, ...policy.runner.labels])], group: policy.runner.group ?? core.d.runner.group };
}

/** Registers the next runner (entering `registering`), with backoff, within the policy's limit. */
export async function registerRunner(
  core: AgentCore,
  registrar: RunnerRegistrar,
  ledger: RegistrationLedger,
  policy: Policy,
): Promise<Obtained> {
  const { ctx, d, log, drain, live } = core;
  await ctx.transition('registering');
  const since = d.clock.now();
  live.registeringSince = since;
  const pre = await registrar.takeAhead();
  await ledger.deleteStale(undefined, pre ? [pre.id] : []);
  const { labels, group } = registrationTarget(core, policy);
  if (pre) {
    if (pre.group === group && sameSet(pre.labels, labels)) {
      await ctx.update((s) => (s.runner = { id: pre.id, name: pre.name, registeredAt: core.iso() }));
      return registered(core, pre);
    }
    // The policy changed labels or group at this job boundary: the prefetched runner does not fit.
    await ledger.delete(pre.id);
  }
  const limitMs = (policy.limits.maxRegistrationMinutes ?? DEFAULT_MAX_REGISTRATION_MINUTES) * 60_000;
  let failures = 0;
  for (;;) {
    if (drain.draining) return { kind: 'drained' };
    const remaining = since + limitMs - d.clock.now();
    if (remaining <= 0) return stuck(core, limitMs, failures);
    const name = renderName(d.runner.name, d.hostname, ctx.s.seq);
    await ctx.update((s) => (s.pendingName = name));
    // The name must be on disk before the request: a crash after the service made the runner is
    // then found by it at the next start. A state that cannot be written cannot promise that.
    const unwritable = ctx.writeProblem;
    if (unwritable !== undefined)
      return { kind: 'stuck', reason: `state-unwritable: ${unwritable} (no registration is requested before its name is on disk)` };
    const sentAt = d.clock.now();
    const outcome = await boundedRequest(
      core,
      ledger,
      registrar.request({ name, labels, group, seq: ctx.s.seq, signal: drain.signal }),
      name,
      remaining,
    );
    if (outcome.kind === 'ok') {
      const r = outcome.value;
      // A slow answer had an attempt the client gave up on (then retried with this name) or a
      // stalled one: the service may complete it later, after this runner is gone, under the same name.
      const slow = d.clock.now() - sentAt > d.timeouts.registrationRecheckAfterMs;
      await ctx.update((s) => {
        s.seq += 1;
        s.pendingName = undefined;
        s.runner = { id: r.id, name, registeredAt: core.iso() };
        s.registrations.push({ id: r.id, name });
        if (slow) addRecheck(s, name, d.clock.now(), d.timeouts.lateRegistrationMs);
      });
      log.info({ runner: name, runnerId: r.id, mode: registrar.mode }, 'runner registered');
      return registered(core, { id: r.id, name, labels, ...(r.jit !== undefined ? { jit: r.jit } : {}) }, false);
    }
    // Given up on, or failed without the service saying no: it may still make the runner, later.
    // A name refused as taken by a retry is the same case: the client gave up on an attempt the
    // service completed, retried, and the retry found that attempt's runner (seen in the soak: a
    // ghost per stalled request that GitHub completed).
    const refusedAfterRetry = outcome.kind === 'error' && nameTaken(outcome.err) && mayBeOwnRunner(outcome.err);
    if (outcome.kind !== 'error' || fateUnknown(outcome.err) || refusedAfterRetry) await ledger.watchLate(name);
    if (outcome.kind === 'drained') return { kind: 'drained' };
    if (outcome.kind === 'deadline') return stuck(core, limitMs, failures);
    const err = outcome.err;
    if (isAbort(err) && drain.draining) return { kind: 'drained' };
    if (nameTaken(err)) {
      // The name is taken (a runner of an earlier boot, or another host): take the next number.
      log.warn({ runner: name }, 'runner name taken; trying the next');
      await ctx.update((s) => (s.seq += 1));
      continue;
    }
    failures += 1;
    const auth = err instanceof GitHubApiError && err.isAuth;
    const waitMs = registrationRetryWait({
      failures,
      auth,
      now: d.clock.now(),
      timeouts: d.timeouts,
      random: core.random,
      ...(d.fleetSlots ? { slots: d.fleetSlots } : {}),
    });
    const fields = {
      err: describeError(err),
      status: err instanceof GitHubApiError ? err.status : undefined,
      hint: err instanceof GitHubApiError ? err.hint : undefined,
      waitMs,
      failures,
    };
    if (auth) log.error(fields, 'registration refused; check the credentials');
    else log.warn(fields, 'registration failed; backing off');
    try {
      await d.clock.sleep(Math.min(waitMs, Math.max(0, since + limitMs - d.clock.now())), drain.signal);
    } catch {
      return { kind: 'drained' };
    }
  }
}

/** What the wait before the next registration attempt depends on. */
export interface RetryWaitInput {
  /** Failed attempts so far in this episode (1 after the first). */
  failures: number;
  /** The credentials were refused (401, or a 403 that is not a rate limit). */
  auth: boolean;
  /** Epoch ms now. */
  now: number;
  timeouts: Pick<Timeouts, 'registerBackoffBaseMs' | 'registerBackoffMaxMs' | 'authFailureBackoffMs'>;
  random: RandomSource;
  /** The host's GitHub slots (host config `fleet`). */
  slots?: FleetSlots;
}

/**
 * The wait (ms) before the next registration attempt. Without slots: full jitter, uniform in
 * [0, envelope] doubling from registerBackoffBaseMs to registerBackoffMaxMs, or in
 * [0, authFailureBackoffMs] after refused credentials. With slots: until the host's next slot (at
 * once after refused credentials' authFailureBackoffMs, the longer wait winning), whatever failed:
 * a host that tries only in its own slot can never meet the fleet's other hosts there, and the
 * fleet as a whole retries at the pace the limits allow. A failing host then tries once a window
 * (at least a minute; size / 180 minutes for a large fleet) rather than backing off further.
 */
export function registrationRetryWait(i: RetryWaitInput): number {
  const t = i.timeouts;
  if (i.slots) return i.slots.retryAt(i.now, i.auth ? t.authFailureBackoffMs : 0) - i.now;
  if (i.auth) return backoffDelay(0, { baseMs: t.authFailureBackoffMs, maxMs: t.authFailureBackoffMs }, i.random);
  return backoffDelay(i.failures - 1, { baseMs: t.registerBackoffBaseMs, maxMs: t.registerBackoffMaxMs }, i.random);
}

/** Renders the runner name template: {hostname}, {seq}, {random}. */
export function renderName(template: string, hostname: string, seq: number): string {
  return template
    .replaceAll('{hostname}', hostname)
    .replaceAll('{seq}', String(seq))
    .replaceAll('{random}', randomBytes(3).toString('hex'))
    .slice(0, 64);
}

/**
 * Whether the runner that holds a refused name can be this host's own: only when the refused
 * request had been sent before (the retry hook retried after an attempt whose fate it could not
 * know). A refusal of a first attempt, however slow, means the name was taken before this host
 * asked: another host's runner, which must never be adopted and deleted. config.sh looks the name
 * up before it adds the runner, so its refusal is always of a name taken before that run; an
 * earlier run of this host whose fate was unknown is already watched (fateUnknown).
 */
function mayBeOwnRunner(err: unknown): boolean {
  return err instanceof GitHubApiError && err.attempts > 1;
}

/** True when the service refused the name as taken (REST 409, or config.sh's message). */
function nameTaken(err: unknown): boolean {
  return (err instanceof GitHubApiError && err.status === 409) || (err instanceof ConfigShError && err.reason === 'name-exists');
}

async function registered(core: AgentCore, reg: Registration, prefetched = true): Promise<Obtained> {
  core.live.currentRunner = { name: reg.name, id: reg.id, labels: reg.labels };
  core.live.registeringSince = undefined;
  if (prefetched) core.log.info({ runner: reg.name, runnerId: reg.id }, 'using the prefetched registration');
  return { kind: 'registered', reg };
}

function stuck(core: AgentCore, limitMs: number, failures: number): Obtained {
  const minutes = Math.round(limitMs / 60_000);
  core.log.error({ limitMinutes: minutes, failures }, 'no runner registered within the policy limit');
  return {
    kind: 'stuck',
    reason: `registration-stuck: no runner registered within ${minutes} min (limits.maxRegistrationMinutes; ${failures} failed attempts)`,
  };
}

type RequestOutcome<T> = { kind: 'ok'; value: T } | { kind: 'error'; err: unknown } | { kind: 'drained' } | { kind: 'deadline' };

/**
 * Waits for `request` no longer than `remainingMs` or a drain. A request still running then is
 * left to finish on its own (the API client has its own deadline): should it register the runner
 * after all, that registration is recorded and deleted, so giving up never leaves a ghost.
 */
async function boundedRequest<T extends { id: number }>(
  core: AgentCore,
  ledger: RegistrationLedger,
  request: Promise<T>,
  name: string,
  remainingMs: number,
): Promise<RequestOutcome<T>> {
  const local = new AbortController();
  const settled = request.then(
    (value): RequestOutcome<T> => ({ kind: 'ok', value }),
    (err: unknown): RequestOutcome<T> => ({ kind: 'error', err }),
  );
  try {
    const first = await Promise.race([
      settled,
      core.d.clock.sleep(remainingMs, local.signal).then(
        (): RequestOutcome<T> => ({ kind: 'deadline' }),
        (): RequestOutcome<T> => ({ kind: 'deadline' }),
      ),
      abortable(core.drain.signal, local.signal).then((): RequestOutcome<T> => ({ kind: 'drained' })),
    ]);
    if (first.kind === 'deadline' || first.kind === 'drained') {
      core.later(
        settled.then(async (late) => {
          if (late.kind !== 'ok') return;
          core.log.warn({ runner: name, runnerId: late.value.id }, 'a registration given up on completed late; deleting it');
          await ledger.adopt(late.value.id, name);
          await ledger.delete(late.value.id);
        }),
      );
    }
    return first;
  } finally {
    local.abort();
  }
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
