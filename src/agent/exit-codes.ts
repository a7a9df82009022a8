/**
 * What the agent does when a listener exits (the runner's exit codes as ARCHITECTURE.md lists
 * them). A pure function of the exit and what was seen before it, so the whole table is tested
 * without a process (test/unit/agent/exit-codes.test.ts).
 *
 *   3, 4, or "Generate and execute update script" on the console (any row)
 *                     → wait for update.finished first: update.sh is still rewriting bin/ after
 *                       the listener exits, even after a job (docs/runner-contract.md §6); a
 *                       listener that exits otherwise (0 after "no longer exists") still started it
 *   job seen          → the job ended (failed when the code is not 0, 3 or 4); never a restart:
 *                       an ephemeral registration is spent once its job ran
 *   draining / idle   → the registration ends (not a failure)
 *   7, or "deprecated" on the console → end, recycle at once (no restart can help)
 *   3, 4              → self-update: restart on the same registration
 *   2                 → retryable: restart after a delay
 *   (3/4/2 more than `restartLimit` times → end, failed)
 *   0                 → end, not failed (registration removed on the server, or no job)
 *   1 after "no longer exists" / "registration has been deleted" → end, deregistered (not failed)
 *   1, 5, other, a signal → end, failed (replaced with backoff; repeated → crash loop)
 */

/** What was known when the listener exited. */
export interface ListenerExitFacts {
  code: number | null;
  /** A signal name: one of NodeJS.Signals, or one Node does not know. */
  signal: string | null;
  /** The listener confirmed a job. */
  job: boolean;
  draining: boolean;
  drainReason?: string;
  idleTimedOut: boolean;
  /** The console said the runner version is deprecated: that version. */
  versionDeprecated?: string;
  /** The console said the registration was removed on the server. */
  runnerGone: boolean;
  /** The console said the listener started update.sh. */
  updateScript?: boolean;
  /** Restarts of this registration's listener so far. */
  restarts: number;
  /** Restarts (exit 2, 3, 4) allowed before the registration counts as failed. */
  restartLimit: number;
}

/** The verdict. `restart`: start a listener again on the same registration. */
export type ListenerVerdict =
  | { action: 'job-ended'; failed: boolean; waitForUpdate: boolean }
  | { action: 'restart'; restarts: number; waitForUpdate: boolean; delay: boolean }
  | { action: 'end'; reason: string; failed: boolean; versionDeprecated?: string; waitForUpdate?: boolean };

/** The reason of a registration that waited longer than host.maxIdleMinutes. */
export const IDLE_TIMEOUT = 'idle timeout';

/** Classifies one listener exit. */
export function classifyListenerExit(f: ListenerExitFacts): ListenerVerdict {
  const v = classify(f);
  // update.sh outlives the listener whatever ended it: no row may let the cleanup start before it finished.
  if (v.action === 'end' && f.updateScript === true) return { ...v, waitForUpdate: true };
  return v;
}

function classify(f: ListenerExitFacts): ListenerVerdict {
  const code = f.code;
  const updating = code === 3 || code === 4 || f.updateScript === true;
  if (f.job) return { action: 'job-ended', failed: code !== 0 && code !== 3 && code !== 4 && !f.runnerGone, waitForUpdate: updating };
  if (f.draining) return { action: 'end', reason: `drained while idle (${f.drainReason ?? ''})`, failed: false, waitForUpdate: updating };
  if (f.idleTimedOut) return { action: 'end', reason: IDLE_TIMEOUT, failed: false, waitForUpdate: updating };
  if (code === 7 || f.versionDeprecated !== undefined) {
    // Older runners say it only on the console and exit 1 (or 2); either way no restart helps.
    const version = f.versionDeprecated ?? 'unknown';
    return {
      action: 'end',
      reason: `runner version ${version} deprecated (exit ${code ?? f.signal})`,
      failed: true,
      versionDeprecated: version,
    };
  }
  if (code === 3 || code === 4) {
    const restarts = f.restarts + 1;
    if (restarts > f.restartLimit)
      return { action: 'end', reason: `self-update loop (${restarts} restarts)`, failed: true, waitForUpdate: true };
    return { action: 'restart', restarts, waitForUpdate: true, delay: false };
  }
  if (code === 2) {
    const restarts = f.restarts + 1;
    if (restarts > f.restartLimit) return { action: 'end', reason: `retryable error ${restarts} times`, failed: true };
    return { action: 'restart', restarts, waitForUpdate: false, delay: true };
  }
  // The registration is gone on the server: exit 0 while polling, exit 1 when a session cannot be
  // created (docs/runner-contract.md §2). A deregistration, not a crash of this host.
  if (f.runnerGone && (code === 0 || code === 1))
    return { action: 'end', reason: `registration removed on the server (exit ${code})`, failed: false };
  if (code === 0) return { action: 'end', reason: 'listener exited 0 without a job', failed: false };
  const why =
    code === 5
      ? 'session conflict (exit 5)'
      : code === 1
        ? 'listener refused the registration (exit 1)'
        : `listener exited ${code ?? f.signal}`;
  return { action: 'end', reason: why, failed: true };
}
