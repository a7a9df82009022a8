/**
 * A job no agent watched. The agent was killed while its listener idled; the orphaned listener
 * (still connected) took a job and ran it, all of it or until recovery's cleanup stopped it. No
 * hook report reached a live agent and the console lines went nowhere: what is left is the
 * runner's own `_diag` trace (read here, before the cleanup moves `_diag` to the trash) and the
 * service's answer when the registration is deleted (busy: a job is assigned; gone: an ephemeral
 * runner is removed after its job).
 *
 * When the trace kept nothing (a full disk refused its lines, or the job deleted `_diag`: it is the
 * runner user's) and no hook report was left, the service's answer is all there is: a single-use
 * registration stays on the service until it is used or removed, so one that is gone after its
 * listener started was used up by a job, or removed by an operator or its expiry. The agent cannot
 * tell these apart from anything a job cannot write, so it records a job of unknown name and result
 * (keyGone) rather than let a job hide by wiping its trace. A registration whose listener never
 * started cannot have run a job: its absence is only noted.
 */
import { describeError } from '../lib/errors.js';
import type { DiagJob } from '../runner/diag-evidence.js';
import type { AgentCore } from './core.js';
import type { PersistedState } from './state-store.js';

type PersistedJob = NonNullable<PersistedState['job']>;
type PersistedRunner = NonNullable<PersistedState['runner']>;

/**
 * The trace has whole seconds and the registration time is the agent's clock: a job that started
 * this much before the registration is still this registration's (an earlier one's trace went to
 * the trash at its cleanup; one that survived a failed cleanup is older than this by far).
 */
const TRACE_SKEW_MS = 2_000;

/** The last job the runner's trace shows for `runner`, and how many it shows; undefined when none. */
async function traceJobOf(core: AgentCore, runner: PersistedRunner): Promise<{ seen: DiagJob; count: number } | undefined> {
  const { host, log } = core;
  if (!host.readDiagJobs) return undefined;
  let jobs: DiagJob[];
  try {
    jobs = await host.readDiagJobs();
  } catch (err) {
    log.warn({ err: describeError(err) }, "could not read the runner's _diag trace");
    return undefined;
  }
  const registeredAt = Date.parse(runner.registeredAt);
  const ours = jobs.filter(
    (j) => j.startedAt === undefined || !Number.isFinite(registeredAt) || j.startedAt >= registeredAt - TRACE_SKEW_MS,
  );
  const seen = ours.at(-1);
  return seen ? { seen, count: ours.length } : undefined;
}

/**
 * The job the runner's trace shows for `runner` (the last one, if a trace names several), made the
 * persisted job and counted before anything is cleaned: a recovery killed during its cleanup finds
 * it again in state.json, under the same key. Undefined when the trace shows none.
 */
export async function keepUnwatchedJob(core: AgentCore, runner: PersistedRunner): Promise<PersistedJob | undefined> {
  const { ctx, log } = core;
  const found = await traceJobOf(core, runner);
  if (!found) return undefined;
  const { seen, count } = found;
  const registeredAt = Date.parse(runner.registeredAt);
  const fallback = Number.isFinite(registeredAt) ? registeredAt : core.d.clock.now();
  const start = seen.startedAt ?? fallback;
  const job: PersistedJob = {
    // From the trace alone: reading the same files again gives the same key (never two records).
    key: `${runner.id}@diag:${seen.jobId ?? start}`,
    startedAt: new Date(start).toISOString(),
    listenerStartedAt: new Date(fallback).toISOString(),
    vars: seen.vars,
    ...(seen.displayName !== undefined ? { name: seen.displayName } : {}),
    runner: { id: runner.id, name: runner.name },
    ...(seen.endedAt !== undefined ? { endedAt: new Date(seen.endedAt).toISOString() } : {}),
    ...(seen.result !== undefined ? { result: seen.result } : {}),
    evidence: [...seen.files.map((f) => `_diag/${f}`), ...(count > 1 ? [`the trace names ${count} jobs; the last kept`] : [])],
    counted: true,
  };
  log.warn(
    { runner: runner.name, runnerId: runner.id, job: seen.displayName, result: seen.result, files: seen.files },
    "a job ran while no agent watched; the runner's trace shows it",
  );
  await ctx.update((s) => {
    s.job = job;
    s.jobsServed += 1;
  });
  return job;
}

/**
 * A job the dead agent saw start, completed from the trace where the agent's own view stops: the
 * metadata a hook report had not yet given, and the result when the orphaned listener finished it.
 * Only what the agent lacks is taken; the record stays the agent's own (same key, same source).
 */
export async function completeFromTrace(core: AgentCore, runner: PersistedRunner, job: PersistedJob): Promise<PersistedJob> {
  if (job.result !== undefined && job.vars && Object.keys(job.vars).length > 0) return job;
  const found = await traceJobOf(core, runner);
  if (!found || (found.seen.startedAt !== undefined && found.seen.startedAt < Date.parse(job.startedAt) - TRACE_SKEW_MS)) return job;
  const { seen } = found;
  return {
    ...job,
    vars: { ...seen.vars, ...job.vars },
    ...(job.result === undefined && seen.result !== undefined ? { result: seen.result } : {}),
    ...(job.result === undefined && job.endedAt === undefined && seen.endedAt !== undefined
      ? { endedAt: new Date(seen.endedAt).toISOString() }
      : {}),
  };
}

/** What the service's answer at recovery says about the registration, for the record's evidence. */
export function serviceEvidence(id: number, busy: number[], gone: number[], asked: boolean): string {
  // A recovery killed after deleting the registration: the next one has nothing to ask about it.
  if (!asked) return 'service: not asked again (the registration was deleted before this restart)';
  if (busy.includes(id)) return 'service: a job is assigned to the registration (busy)';
  if (gone.includes(id)) return 'service: the registration is gone (an ephemeral runner is removed after its job)';
  return 'service: the registration was still there and idle';
}

/** The key of the record of a registration that is gone with no trace of its job: one per registration. */
export function keyGone(runnerId: number): string {
  return `${runnerId}@gone`;
}

/** The service's view of `runner` (looked up, not deleted): undefined when the lookup failed. */
export async function lookUpRunner(core: AgentCore, runner: PersistedRunner): Promise<'gone' | 'busy' | 'there' | undefined> {
  try {
    const found = (await core.d.github.findRunnersByName(runner.name)).find((r) => r.id === runner.id);
    return !found ? 'gone' : found.busy ? 'busy' : 'there';
  } catch (err) {
    core.log.warn({ err: describeError(err), runner: runner.name }, 'could not look up the registration before deleting it');
    return undefined;
  }
}

/**
 * True when state.json shows that no listener ever started for `runner`: the agent died in
 * `registering` and the registration was made in that state (the agent persists `idle` before it
 * starts a listener, and a registration is persisted after `registering` was entered).
 */
export function listenerNeverStarted(prev: PersistedState, runner: PersistedRunner): boolean {
  return prev.state === 'registering' && Date.parse(runner.registeredAt) >= Date.parse(prev.since);
}

/** What recovery makes of a registration the service no longer has while nothing else showed a job. */
export type GoneOutcome = { job: PersistedJob } | { note: string };

/**
 * A registration gone from the service with no trace of a job and no hook report. Its listener
 * never started: no job, only a note. A job record of this registration is already in the journal
 * (`recorded`): nothing more. Otherwise a job of unknown name and result, made the persisted job and
 * counted before the registration is deleted (a recovery killed after the deletion, which forgets
 * the registration, still finds it). Nothing in it comes from the runner user's files.
 */
export async function keepGoneRegistration(
  core: AgentCore,
  prev: PersistedState,
  runner: PersistedRunner,
  recorded: boolean,
): Promise<GoneOutcome> {
  const { ctx, log } = core;
  const gone = `the service has no runner ${runner.id} (${runner.name}) any more`;
  if (listenerNeverStarted(prev, runner)) {
    log.warn({ runner: runner.name, runnerId: runner.id }, 'the registration is gone and no listener ever ran for it: not a job');
    return { note: `${gone}; no listener had started for it (the agent died registering): removed by an operator or its expiry, no job` };
  }
  if (recorded) return { note: `${gone}; the journal already holds a job record of it` };
  const registeredAt = Date.parse(runner.registeredAt);
  const start = new Date(Number.isFinite(registeredAt) ? registeredAt : core.d.clock.now()).toISOString();
  const job: PersistedJob = {
    key: keyGone(runner.id),
    // Unknown: the registration is the earliest the job can have started (recovery is the latest it ended).
    startedAt: start,
    listenerStartedAt: start,
    vars: {},
    runner: { id: runner.id, name: runner.name },
    result: 'unknown',
    evidence: [
      "_diag: no job of this registration (no trace left, or the trace lost or was stripped of the job's lines)",
      'hook report: none',
      `service (looked up at recovery, the listener stopped): ${gone}; a single-use registration is removed after its job, or by an operator or its expiry`,
    ],
    counted: true,
  };
  log.warn(
    { runner: runner.name, runnerId: runner.id },
    'the registration is gone and nothing shows its job: recorded as a job of unknown name and result',
  );
  await ctx.update((s) => {
    s.job = job;
    s.jobsServed += 1;
  });
  return { job };
}
