import type { Policy } from '../policy/types.js';
import type { CleanupReport } from '../cleanup/types.js';

/** What happens to the host after a job (or a listener that ended without one). */
export type Decision =
  | { action: 'reuse'; reason: string }
  | { action: 'recycle'; reason: string }
  | { action: 'quarantine'; reason: string }
  | { action: 'stop'; reason: string };

/** Everything the decision looks at; nothing here is forgeable by the job. */
export interface DecisionInput {
  policy: Policy;
  /** The verified cleanup report; undefined = cleanup did not finish (dirty). */
  report: CleanupReport | undefined;
  /** Jobs served on this host since it was fresh, this one included. */
  jobsServed: number;
  /** Jobs this agent process served, against the host config's runner.maxJobs (0 = no limit). */
  jobsThisRun: number;
  agentMaxJobs: number;
  hostStartedAt: number;
  now: number;
  jobResult?: string;
  consecutiveFailures: number;
  draining: boolean;
  /** The listener waited longer than host.maxIdleMinutes for a job. */
  idleTimedOut?: boolean;
  /** The drain asks for the host to be replaced (spot notice, `runner-warden drain`), not just stopped. */
  recycleOnDrain?: boolean;
  /** The service refused the installed runner as deprecated (listener exit 7): its version. */
  runnerVersionDeprecated?: string;
  /** Why an in-place runner update (host config runner.updates) did not replace the deprecated runner. */
  runnerUpdateProblem?: string;
  /**
   * The agent cannot write its state or journal (ENOSPC, EIO, read-only): it can no longer promise
   * crash safety (no ghost, no lost record), so the host is recycled, not reused.
   */
  stateWriteProblem?: string;
}

/**
 * Reuse or recycle, from the team policy. A dirty or unverifiable host is never reused:
 * it is quarantined (and recycled when a provider is configured).
 */
export function decide(i: DecisionInput): Decision {
  if (!i.report) return { action: 'quarantine', reason: 'cleanup did not complete' };
  if (!i.report.clean) {
    const why = [
      ...i.report.steps.filter((s) => s.outcome === 'failed' || s.outcome === 'dirty').map((s) => `${s.name}: ${s.reason ?? s.outcome}`),
      ...i.report.verify.problems,
    ];
    return { action: 'quarantine', reason: `verification failed: ${why.slice(0, 5).join('; ') || 'unknown'}` };
  }
  if (i.draining) return i.recycleOnDrain ? { action: 'recycle', reason: 'drained' } : { action: 'stop', reason: 'draining' };
  // A job that had root through sudo may have changed anything the integrity check does not
  // cover: with runner.sudo recycle the policy wants every such host replaced. A job ran when
  // it has a result (also one a crash interrupted, at recovery).
  if (i.jobResult !== undefined && i.policy.runner.sudo === 'recycle') {
    return { action: 'recycle', reason: 'sudo-job: runner.sudo is recycle and a job ran with sudo' };
  }
  if (i.stateWriteProblem !== undefined) return { action: 'recycle', reason: `state-unwritable: ${i.stateWriteProblem}` };
  if (i.idleTimedOut) return { action: 'recycle', reason: 'idle-timeout: no job within host.maxIdleMinutes' };
  if (i.runnerVersionDeprecated !== undefined) {
    // Registering again cannot help: this host's runner will never be served. A replacement from
    // an image with a newer runner can; an alert on this reason says the image needs rebuilding.
    const why = i.runnerUpdateProblem !== undefined ? ` (${i.runnerUpdateProblem})` : '';
    return { action: 'recycle', reason: `runner-version-deprecated: v${i.runnerVersionDeprecated} is refused by GitHub${why}` };
  }
  const p = i.policy;
  const disk = i.report.verify.disk;
  if (disk && disk.freePercent < p.limits.minFreeDiskPercent) {
    return { action: 'recycle', reason: `disk-low: ${disk.freePercent.toFixed(1)}% free < ${p.limits.minFreeDiskPercent}%` };
  }
  if (disk && disk.freeInodesPercent < p.limits.minFreeInodesPercent) {
    return { action: 'recycle', reason: `inodes-low: ${disk.freeInodesPercent.toFixed(1)}% free < ${p.limits.minFreeInodesPercent}%` };
  }
  if (i.consecutiveFailures >= p.recycle.crashLoopThreshold) {
    return { action: 'recycle', reason: `crash-loop: ${i.consecutiveFailures} listener failures in a row` };
  }
  if (i.jobResult && p.recycle.onJobFailed && /^(Failed|Canceled|Abandoned|crashed|interrupted)$/.test(i.jobResult)) {
    return { action: 'recycle', reason: `job-failed: ${i.jobResult}` };
  }
  if (i.jobsServed >= p.host.maxJobs) return { action: 'recycle', reason: `max-jobs: ${i.jobsServed} of ${p.host.maxJobs}` };
  if (p.host.maxLifetimeMinutes !== null && i.now - i.hostStartedAt >= p.host.maxLifetimeMinutes * 60_000) {
    return { action: 'recycle', reason: `max-lifetime: ${p.host.maxLifetimeMinutes} min` };
  }
  if (i.agentMaxJobs > 0 && i.jobsThisRun >= i.agentMaxJobs) {
    return { action: 'stop', reason: `runner.maxJobs reached (${i.agentMaxJobs})` };
  }
  return { action: 'reuse', reason: `host serves ${i.jobsServed} of ${p.host.maxJobs} jobs` };
}
