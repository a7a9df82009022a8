/**
 * Recovery after an unclean stop: clean and verify first, account for the interrupted job (one
 * journal record, never two), delete every registration the dead agent made. A hook report left in
 * the drop directory is a claim, not a fact: it becomes a job only when the service agrees (the
 * runner the dead agent left had a job assigned, or was removed as an ephemeral runner is after
 * its job); otherwise it stays a note in the recovery record. A job the dead agent never saw (its
 * orphaned listener ran it) is taken from the runner's `_diag` trace before the cleanup removes
 * it (recovery-unwatched.ts) and recorded as seen after the fact, with its evidence. When nothing
 * shows its job and the service no longer has the registration, a listener that had started was
 * used up by a job: recorded as a job of unknown name and result (docs/recovery.md).
 */
import type { Policy } from '../policy/types.js';
import type { HookEvent } from '../runner/hooks.js';
import type { Decision } from '../recycle/decision.js';
import type { AgentCore } from './core.js';
import { buildJobRecord } from './records.js';
import {
  completeFromTrace,
  keepGoneRegistration,
  keepUnwatchedJob,
  keyGone,
  lookUpRunner,
  serviceEvidence,
  type GoneOutcome,
} from './recovery-unwatched.js';
import type { RegistrationLedger } from './registrations.js';
import type { Settler } from './settle.js';
import type { PersistedState } from './state-store.js';

/** Job records read back at recovery to find one already written (one job per registration: a few suffice). */
const RECENT_RECORDS = 20;

type PersistedJob = NonNullable<PersistedState['job']>;

/** Cleans after a crash and decides; the caller acts on the decision. */
export async function recover(
  core: AgentCore,
  ledger: RegistrationLedger,
  settler: Settler,
  prev: PersistedState,
  policy: Policy,
  leftover: HookEvent[],
): Promise<Decision> {
  const { ctx, d, log } = core;
  log.warn({ prevState: prev.state, dirty: prev.dirty }, 'recovering from an unclean stop');
  const started = leftover.find((e) => e.event === 'started');
  const completed = leftover.find((e) => e.event === 'completed');
  // Before the cleanup moves `_diag` to the trash: a job the orphaned listener ran unwatched, or
  // finished after the agent died (the result and metadata the agent did not live to see).
  let job: PersistedJob | undefined = !prev.runner
    ? prev.job
    : prev.job
      ? await completeFromTrace(core, prev.runner, prev.job)
      : await keepUnwatchedJob(core, prev.runner);
  const jobStart = job ? Date.parse(job.listenerStartedAt) : started ? started.at : undefined;
  const { report } = await settler.clean(policy, jobStart);
  // Nothing shows a job of the registration the dead agent used: the service's view of it decides,
  // looked up before the deletion forgets it (a job found so is kept in state.json first).
  const unseen = !job && !started && prev.runner && prev.registrations.some((r) => r.id === prev.runner?.id) ? prev.runner : undefined;
  const lookedUp = unseen ? await lookUpRunner(core, unseen) : undefined;
  let goneNote: string | undefined;
  const takeGone = async (r: NonNullable<typeof unseen>): Promise<void> => {
    const out: GoneOutcome = await keepGoneRegistration(core, prev, r, await recordedFor(core, r.id));
    if ('job' in out) job = out.job;
    else goneNote = out.note;
  };
  if (unseen && lookedUp === 'gone') await takeGone(unseen);
  const { busy, gone } = await ledger.deleteStale(prev.pendingName);
  // The lookup failed: the deletion's answer stands in for it.
  if (unseen && !job && lookedUp === undefined && gone.includes(unseen.id)) await takeGone(unseen);
  const id = job?.runner?.id ?? prev.runner?.id;
  if (job?.evidence && id !== undefined) {
    // Seen after the fact: the service's answer joins the trace; a hook report (if any) adds its metadata.
    job = {
      ...job,
      vars: { ...job.vars, ...started?.vars, ...completed?.vars },
      evidence: [
        ...job.evidence,
        ...(started ? ['hook report'] : []),
        serviceEvidence(
          id,
          busy,
          gone,
          prev.registrations.some((r) => r.id === id),
        ),
      ],
    };
  } else if (!job && prev.runner && id !== undefined) {
    const runner = { id, name: prev.runner.name };
    if (started && (busy.includes(id) || gone.includes(id))) {
      // The listener the dead agent left took a job (the service says so); its hook report adds the
      // metadata, which the job wrote itself: the record says so.
      job = {
        startedAt: new Date(started.at).toISOString(),
        listenerStartedAt: new Date(started.at).toISOString(),
        vars: { ...started.vars, ...completed?.vars },
        runner,
        evidence: [
          'hook report',
          "the job's name and repository are the hook report's word (the job wrote it): a claim",
          serviceEvidence(id, busy, gone, true),
        ],
      };
    } else if (busy.includes(id)) {
      // The service still held a job on the runner the agent left idle: a job was assigned while
      // the agent was down (its listener died with the agent before the job's hooks ran).
      job = { startedAt: new Date(d.clock.now()).toISOString(), listenerStartedAt: prev.since, runner };
    }
  }
  if (!job) {
    const decision = settler.decide(policy, report);
    await core.journal.append({
      type: 'event',
      event: 'recovery',
      at: core.iso(),
      detail: {
        decision: decision.action,
        reason: decision.reason,
        ...(started ? { unconfirmedHookReport: JSON.stringify(started.vars).slice(0, 2_000) } : {}),
        ...(goneNote ? { registrationGone: goneNote } : {}),
      },
    });
    return decision;
  }
  if (!job.counted) await ctx.update((s) => (s.jobsServed += 1));
  const result = job.result ?? 'interrupted';
  const key = job.key ?? `${job.runner?.id ?? prev.runner?.id ?? 'unknown'}@${Date.parse(job.startedAt)}`;
  const decision = settler.decide(policy, report, { jobResult: result });
  if (!(await alreadyRecorded(core, key))) {
    const rec = buildJobRecord({
      key,
      runnerName: job.runner?.name ?? prev.runner?.name,
      runnerId: job.runner?.id ?? prev.runner?.id,
      vars: job.vars ?? {},
      jobName: job.name,
      startedAt: Date.parse(job.startedAt),
      endedAt: job.endedAt ? Date.parse(job.endedAt) : d.clock.now(),
      exit:
        job.exitCode !== undefined || job.exitSignal !== undefined
          ? { code: job.exitCode ?? null, signal: (job.exitSignal ?? null) as NodeJS.Signals | null, at: 0 }
          : undefined,
      result,
      source: job.evidence ? 'after-the-fact' : job.result ? 'console' : 'exit',
      cleanup: report,
      notes: [
        job.key === keyGone(job.runner?.id ?? -1)
          ? `the registration was used up while no agent watched (agent restarted in state ${prev.state}) and nothing the job could not erase shows which job: its name, repository and result are unknown (the service's removal may also have been an operator's or the registration's expiry)`
          : job.evidence
            ? `a job ran while no agent watched (agent restarted in state ${prev.state}); seen after the fact${job.endedAt ? '' : ', killed and cleaned at recovery'}`
            : job.endedAt
              ? `agent restarted in state ${prev.state}, after the job ended; cleaned at recovery`
              : prev.job
                ? `agent restarted in state ${prev.state}; job interrupted`
                : 'a job started while the agent was down; killed and cleaned at recovery',
      ],
    });
    await core.journal.append({
      ...rec,
      ...(job.evidence ? { evidence: job.evidence } : {}),
      decision: decision.action,
      decisionReason: decision.reason,
    });
  }
  // Killed after the record was written and before the state said so: it is not written twice.
  await ctx.update((s) => {
    s.job = undefined;
    s.runner = undefined;
  });
  return decision;
}

/** True when the journal's recent job records already hold `key`. */
async function alreadyRecorded(core: AgentCore, key: string): Promise<boolean> {
  return (await recentJobs(core)).some((r) => r.key === key);
}

/** True when the journal's recent job records hold one of registration `runnerId` (under any key). */
async function recordedFor(core: AgentCore, runnerId: number): Promise<boolean> {
  return (await recentJobs(core)).some((r) => r.runnerId === runnerId);
}

async function recentJobs(core: AgentCore): Promise<{ key?: string; runnerId?: number }[]> {
  if (!core.journal.readLastJobs) return [];
  return (await core.journal.readLastJobs(RECENT_RECORDS).catch(() => ({ records: [] }))).records;
}
