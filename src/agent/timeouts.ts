/**
 * After the listener's SIGINT the worker stops the running step: SIGINT, SIGTERM 7.5 s later, a
 * kill 2.5 s after that (docs/runner-contract.md §4). A step that ignores both holds it this long.
 */
export const WORKER_STEP_STOP_MS = 10_000;

/**
 * Then the worker kills the job's orphans, uploads the job's logs and completes the job with the
 * service (no post step and no completed hook run after a shutdown): a few HTTP calls with their
 * retries; 30 s covers a slow upload without keeping a stuck worker long.
 */
export const WORKER_FINALIZE_MS = 30_000;

/**
 * Every timer of the agent, in one object, with why it has its value. The host
 * config's `timeouts` section may override any of them by name (tests shorten them).
 */
export const DEFAULT_TIMEOUTS = {
  /**
   * SIGINT has no deadline in the runner: the worker's step stop plus its log upload and job
   * completion, then SIGKILL to the group. Never SIGTERM: the listener's own cut at 30 s could end
   * it before the worker has completed the job.
   */
  listenerStopGraceMs: WORKER_STEP_STOP_MS + WORKER_FINALIZE_MS,
  /** the runner's run-helper waits about 31 s for update.finished after exit 3/4; a little more. */
  updateFinishedWaitMs: 35_000,
  /** First wait after a failed registration; doubles up to registerBackoffMaxMs. */
  registerBackoffBaseMs: 1_000,
  /** Cap of the registration backoff: five minutes keeps a broken fleet from hammering the API. */
  registerBackoffMaxMs: 300_000,
  /** After a 401/403 nothing changes until an operator acts: retry rarely. */
  authFailureBackoffMs: 300_000,
  /** Listener exit 2 (retryable) is restarted after this (run.sh waits 5 s). */
  retryableRestartDelayMs: 5_000,
  /** Exit 2 restarts of one registration before it counts as failed and is replaced. */
  retryableRestartLimit: 5,
  /** A whole cleanup pass (steps + verify) may take this long before the host counts as dirty. */
  cleanupTimeoutMs: 10 * 60_000,
  /** Draining while busy: the job may run this long before the listener gets SIGINT. */
  drainGraceMs: 5 * 60_000,
  /** How often the watchdog marks the loop alive for /healthz. */
  heartbeatMs: 10_000,
  /**
   * A generate-jitconfig answers in well under a second; a call slower than this had an attempt
   * the client gave up on (the adapter retries after its deadline) or a stalled answer, either of
   * which the service may still complete: its name is looked up again (registrations.ts).
   */
  registrationRecheckAfterMs: 2_000,
  /**
   * How long after the client gave up the service may still complete a registration request: the
   * adapter's own deadline is 30 s and GitHub's front end ends a request it has not answered within
   * its own timeout, so a request a minute old is done or dropped. Lookups last until then, and a
   * stopping agent waits for it (bounded by this) rather than leave a late runner behind.
   */
  lateRegistrationMs: 60_000,
  /** Attempts to delete a stale registration at recovery before it is left for the next boot. */
  recoveryDeleteTries: 3,
  /**
   * After an aws-asg, kubernetes or shutdown recycle the agent waits this long for the host to be
   * stopped before it exits: pod deletion and ASG termination usually take under a minute; ten
   * covers a slow lifecycle hook without keeping a stuck host forever.
   */
  recycleWaitMs: 10 * 60_000,
  /**
   * Before the first registration of a boot, how long a container engine whose socket exists may
   * take to answer (dockerd often starts after the agent; the runner's RUNNER_WAIT_FOR_DOCKER_IN_SECONDS
   * plays the same part). A host whose engine never answers cannot run container jobs: quarantined.
   */
  engineWaitMs: 60_000,
};

export type Timeouts = typeof DEFAULT_TIMEOUTS;

/** The defaults with the config's overrides applied (unknown names are rejected by the schema). */
export function resolveTimeouts(overrides: Partial<Record<string, number>> | undefined): Timeouts {
  const t = { ...DEFAULT_TIMEOUTS };
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (k in t && typeof v === 'number') (t as Record<string, number>)[k] = v;
  }
  return t;
}
