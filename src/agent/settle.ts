/**
 * The settle path after a listener (or at recovery and preflight): clean, verify, decide, record.
 * Cleanup runs on its own bounded signal, never the shutdown signal; the guards are released while
 * cleaning (a step `guard:<name>` each) and verified while verifying; the disk figure the decision
 * sees is taken after the trash is empty.
 */
import type { Policy } from '../policy/types.js';
import type { CleanupReport } from '../cleanup/types.js';
import type { ListenerExit } from '../runner/listener.js';
import { describeError } from '../lib/errors.js';
import { decide, type Decision } from '../recycle/decision.js';
import type { AgentCore } from './core.js';
import { findingLine, type GuardCalls } from './guards.js';
import type { GuardFindingRecord } from './journal.js';
import { buildJobRecord, jobMetaFromVars } from './records.js';
import type { TrackedJob } from './job-tracker.js';
import type { Registration } from './registrar.js';
import type { RegistrationLedger } from './registrations.js';
import type { ListenerSupervisor, ServeOutcome } from './supervisor.js';
import type { RunnerUpdates } from './runner-updates.js';
import { backoffDelay } from '../lib/backoff.js';

/** A cleanup pass: the report (undefined when it did not complete) and the guards' findings. */
export interface Cleaned {
  report: CleanupReport | undefined;
  findings: GuardFindingRecord[];
}

/** Extra facts for a decision besides the report. */
export interface DecideExtras {
  jobResult?: string | undefined;
  idleTimedOut?: boolean;
  runnerVersionDeprecated?: string | undefined;
  /** Why an in-place update could not replace the deprecated runner. */
  runnerUpdateProblem?: string | undefined;
  /** The host could not set up a listener (ENOSPC on the job directories...). */
  setupProblem?: string | undefined;
}

/**
 * How long the decision waits for the background deletion when the disk looks low: deleting a
 * large `_work` (millions of files) takes a minute or two on a slow disk; past that the figure is
 * taken as it is (a slow deletion on a host short of disk is reason enough to recycle).
 */
export const DISK_SETTLE_WAIT_MS = 120_000;

/** How often the trash is looked at while waiting for it. */
const DISK_SETTLE_POLL_MS = 500;

/** Clean, verify, decide, record. */
export class Settler {
  /** What the last cleanup pass found wrong (failed steps, verify problems): a quarantine's evidence. */
  evidence: string[] = [];

  constructor(
    private readonly core: AgentCore,
    private readonly ledger: RegistrationLedger,
    private readonly supervisor: ListenerSupervisor,
    private readonly guards: GuardCalls,
    private readonly updates?: RunnerUpdates,
  ) {}

  /** One cleanup pass (states cleaning → verifying → deciding). */
  async clean(policy: Policy, jobStartedAt: number | undefined): Promise<Cleaned> {
    const { ctx, d, log } = this.core;
    await ctx.transition('cleaning');
    const started = d.clock.now();
    const signal = AbortSignal.timeout(d.timeouts.cleanupTimeoutMs);
    const guardJob = ctx.s.guardJob;
    const guardSteps = guardJob ? await this.guards.release(guardJob, policy, signal) : [];
    if (guardJob && guardSteps.every((s) => s.outcome === 'ok' || s.outcome === 'skipped')) await ctx.update((s) => delete s.guardJob);
    let report: CleanupReport | undefined;
    let findings: GuardFindingRecord[] = [];
    // The guards' checks start with the pipeline's verification, once its steps are done (every
    // process of the job is gone): both only read, and side by side they no longer add up on
    // the ready path. A host is still ready only when both passed.
    let guardChecks: Promise<GuardFindingRecord[]> | undefined;
    try {
      report = await d.cleanup({
        policy,
        ...(jobStartedAt !== undefined ? { jobStartedAt } : {}),
        ...(ctx.s.engineBefore ? { engineBefore: ctx.s.engineBefore } : {}),
        signal,
        beforeVerify: async () => {
          await ctx.transition('verifying');
          guardChecks = this.guards.verify(guardJob, policy, signal);
        },
      });
    } catch (err) {
      log.error({ err: describeError(err) }, 'cleanup failed');
    }
    // Never left running behind this pass (GuardCalls.verify turns every throw into a finding).
    const guardFindings = guardChecks ?? Promise.resolve([]);
    // Verification never started: the host cannot be proven clean.
    this.evidence = ['cleanup did not complete'];
    if (ctx.s.state === 'cleaning') return { report: undefined, findings: await guardFindings };
    if (report) {
      // The next job's set-up (its engine) overlaps the guards' checks; never on a dirty host.
      if (report.verify.clean) this.guards.prewarm(policy, signal);
      findings = guardChecks ? await guardChecks : await this.guards.verify(guardJob, policy, signal);
    } else await guardFindings;
    if (report) {
      // Ready means proven clean: the guards' release and verification count, not only the pipeline's.
      report = { ...merge(report, guardSteps, findings), readyMs: d.clock.now() - started };
      report = await this.settledDisk(report, policy);
      d.observer?.cleanupReported?.(report);
      this.evidence = [
        ...report.steps
          .filter((st) => st.outcome === 'failed' || st.outcome === 'dirty')
          .map((st) => `${st.name}: ${st.reason ?? st.outcome}`),
        ...report.verify.problems,
      ];
    }
    await ctx.transition('deciding');
    return { report, findings };
  }

  /** The decision from the policy and what is known now. */
  decide(policy: Policy, report: CleanupReport | undefined, x: DecideExtras = {}): Decision {
    const { ctx, d, drain, live, journal } = this.core;
    const problem = ctx.writeProblem ?? journal.problem ?? x.setupProblem;
    return decide({
      idleTimedOut: x.idleTimedOut ?? false,
      recycleOnDrain: drain.recycle,
      policy,
      report,
      jobsServed: ctx.s.jobsServed,
      jobsThisRun: live.jobsThisRun,
      agentMaxJobs: d.runner.maxJobs,
      hostStartedAt: Date.parse(ctx.s.hostStartedAt),
      now: d.clock.now(),
      ...(x.jobResult !== undefined ? { jobResult: x.jobResult } : {}),
      consecutiveFailures: ctx.s.consecutiveFailures,
      draining: drain.draining,
      ...(x.runnerVersionDeprecated !== undefined ? { runnerVersionDeprecated: x.runnerVersionDeprecated } : {}),
      ...(x.runnerUpdateProblem !== undefined ? { runnerUpdateProblem: x.runnerUpdateProblem } : {}),
      ...(problem !== undefined ? { stateWriteProblem: problem } : {}),
    });
  }

  /** Accounts for an ended registration: job record, cleanup, decision. */
  async settle(reg: Registration, outcome: ServeOutcome, policy: Policy): Promise<Decision> {
    const { ctx, d, live, log } = this.core;
    const { job, exit } = outcome;
    live.lastJobEndAt = exit.at;
    const stillOurs = ctx.s.registrations.some((r) => r.id === reg.id);
    // The service removes an ephemeral runner after its job; anything else we delete ourselves.
    if (stillOurs && (!job || !job.completedSeen || exit.code !== 0)) await this.ledger.delete(reg.id);
    else await this.ledger.forget(reg.id);
    live.currentRunner = undefined;
    const result = job ? jobResult(job, exit) : undefined;
    for (const n of outcome.notes ?? []) if (job) (job.notes ??= []).push(n);
    await ctx.update((s) => {
      s.runner = undefined;
      if (job) {
        s.jobsServed += 1;
        s.consecutiveFailures = 0;
        // Everything the record needs, persisted before cleaning: a crash from here on still
        // produces this job's record (with its real result) at the next boot.
        s.job = {
          key: s.job?.key ?? `${reg.id}@${job.startedAt}`,
          startedAt: new Date(job.startedAt).toISOString(),
          listenerStartedAt: s.job?.listenerStartedAt ?? new Date(job.startedAt).toISOString(),
          vars: job.vars,
          ...(job.name ? { name: job.name } : {}),
          runner: { id: reg.id, name: reg.name },
          endedAt: new Date(exit.at).toISOString(),
          result: result ?? 'unknown',
          exitCode: exit.code,
          exitSignal: exit.signal,
          counted: true,
        };
      } else if (outcome.failed) s.consecutiveFailures += 1;
    });
    if (job) live.jobsThisRun += 1;
    await this.core.host
      .removeLocalConfig()
      .catch((err: unknown) => log.warn({ err: describeError(err) }, 'could not remove the runner registration files'));
    const { report, findings } = await this.clean(policy, job ? job.startedAt : undefined);
    await this.supervisor.removeContainers();
    // A deprecated runner is updated in place when runner.updates allows: the host registers
    // again instead of being recycled.
    let deprecated = outcome.versionDeprecated;
    let updateProblem: string | undefined;
    if (deprecated !== undefined && this.core.d.runnerUpdates && this.updates && report?.clean === true) {
      const u = await this.updates.onDeprecated(deprecated);
      if ('updated' in u) deprecated = undefined;
      else updateProblem = u.recycle;
    }
    let decision = this.decide(policy, report, {
      jobResult: result,
      idleTimedOut: !job && outcome.idleTimedOut === true,
      runnerVersionDeprecated: deprecated,
      runnerUpdateProblem: updateProblem,
      setupProblem: outcome.setupProblem,
    });
    if (outcome.refused && decision.action !== 'quarantine') {
      const r = outcome.refused;
      decision = { action: 'quarantine', reason: `guard ${r.guard} unfit: ${r.message}${r.fix ? ` (fix: ${r.fix})` : ''}` };
    }
    if (job) await this.recordJob(reg, job, exit, result ?? 'unknown', report, findings, decision);
    else await this.recordNoJob(reg, outcome, findings, decision);
    live.currentJob = undefined;
    await ctx.update((s) => (s.job = undefined));
    if (!job && outcome.failed && decision.action === 'reuse') {
      // Back off before registering again so a refused registration cannot become a hot loop.
      const waitMs = backoffDelay(
        Math.max(0, ctx.s.consecutiveFailures - 1),
        { baseMs: d.timeouts.registerBackoffBaseMs, maxMs: d.timeouts.registerBackoffMaxMs },
        this.core.random,
      );
      await d.clock.sleep(waitMs, this.core.drain.signal).catch(() => {});
    }
    return decision;
  }

  private async recordJob(
    reg: Registration,
    job: TrackedJob,
    exit: ListenerExit,
    result: string,
    report: CleanupReport | undefined,
    findings: GuardFindingRecord[],
    decision: Decision,
  ): Promise<void> {
    const { d, live, log } = this.core;
    const rec = buildJobRecord({
      key: this.core.ctx.s.job?.key,
      runnerName: reg.name,
      runnerId: reg.id,
      vars: job.vars,
      jobName: job.name,
      startedAt: job.startedAt,
      endedAt: exit.at,
      exit,
      result,
      source: job.completedSeen ? 'console' : job.source,
      cleanup: report,
      notes: job.notes,
    });
    await this.core.journal.append({
      ...rec,
      decision: decision.action,
      decisionReason: decision.reason,
      ...(findings.length > 0 ? { guardFindings: findings } : {}),
    });
    d.observer?.jobEnded?.(result, (exit.at - job.startedAt) / 1000);
    live.lastJob = {
      ...jobMetaFromVars(job.vars),
      ...(job.name ? { job: job.name } : {}),
      startedAt: new Date(job.startedAt).toISOString(),
      endedAt: new Date(exit.at).toISOString(),
      result,
      ...(report
        ? { cleanup: { clean: report.clean, readyMs: report.readyMs, removed: removedTotals(report), problems: report.verify.problems } }
        : {}),
      decision: `${decision.action}: ${decision.reason}`,
    };
    log.info({ runner: reg.name, result, decision: decision.action, reason: decision.reason, readyMs: report?.readyMs }, 'job finished');
  }

  private async recordNoJob(reg: Registration, outcome: ServeOutcome, findings: GuardFindingRecord[], decision: Decision): Promise<void> {
    const { exit } = outcome;
    const claimed = outcome.unconfirmedHookVars;
    await this.core.journal.append({
      type: 'event',
      event: 'listener-ended-without-job',
      at: this.core.iso(),
      detail: {
        runner: reg.name,
        reason: outcome.reason,
        exitCode: exit.code,
        exitSignal: exit.signal,
        decision: decision.action,
        decisionReason: decision.reason,
        // A hook report the listener never confirmed: kept as evidence, never counted as a job.
        ...(claimed ? { unconfirmedHookReport: JSON.stringify(claimed).slice(0, UNCONFIRMED_CHARS) } : {}),
        ...(outcome.ignoredHookReports ? { ignoredHookReports: outcome.ignoredHookReports } : {}),
      },
      ...(findings.length > 0 ? { guardFindings: findings } : {}),
    });
    this.core.log.info({ runner: reg.name, reason: outcome.reason, code: exit.code }, 'listener ended without a job');
  }

  /** The report with the disk figure taken again after the trash emptied, when it looked low. */
  private async settledDisk(report: CleanupReport, policy: Policy): Promise<CleanupReport> {
    const { d, disk, log } = this.core;
    const low = (f: { freePercent: number; freeInodesPercent: number } | undefined): boolean =>
      f !== undefined && (f.freePercent < policy.limits.minFreeDiskPercent || f.freeInodesPercent < policy.limits.minFreeInodesPercent);
    if (!low(report.verify.disk)) return report;
    const deadline = d.clock.now() + DISK_SETTLE_WAIT_MS;
    try {
      while (!(await disk.trashEmpty()) && d.clock.now() < deadline) await d.clock.sleep(DISK_SETTLE_POLL_MS);
      const again = await disk.measure();
      log.info({ before: report.verify.disk, after: again }, 'disk measured again after the trash was emptied');
      return { ...report, verify: { ...report.verify, disk: again } };
    } catch (err) {
      log.warn({ err: describeError(err) }, 'could not measure the disk again; keeping the first figure');
      return report;
    }
  }
}

/** Characters of an unconfirmed hook report kept in the journal. */
const UNCONFIRMED_CHARS = 2_000;

/** The report with the guards' release steps first and their findings as verify problems (dirty). */
function merge(report: CleanupReport, guardSteps: CleanupReport['steps'], findings: GuardFindingRecord[]): CleanupReport {
  if (guardSteps.length === 0 && findings.length === 0) return report;
  const stepsClean = guardSteps.every((s) => s.outcome === 'ok' || s.outcome === 'skipped');
  const verifyClean = report.verify.clean && findings.length === 0;
  return {
    ...report,
    steps: [...guardSteps, ...report.steps],
    verify: { ...report.verify, clean: verifyClean, problems: [...report.verify.problems, ...findings.map(findingLine)] },
    clean: report.clean && stepsClean && verifyClean,
  };
}

/** The job's result: the listener's word when it printed one, else what its exit says. */
function jobResult(job: TrackedJob, exit: ListenerExit): string {
  if (job.result) return job.result;
  if (exit.signal === 'SIGKILL' || exit.code === null) return 'crashed';
  return exit.code === 0 ? 'unknown' : 'crashed';
}

function removedTotals(report: CleanupReport): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of report.steps) {
    for (const [kind, r] of Object.entries(s.removed)) out[kind] = (out[kind] ?? 0) + r.count;
  }
  return out;
}
