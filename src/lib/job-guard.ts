import type { Logger } from './log.js';

/**
 * A job guard is something the agent sets up around every job and proves gone afterwards: a
 * per-job container engine, a temporary sudoers grant, the whole-host integrity check. The agent
 * calls each configured guard in order:
 *
 * ```
 *  preflight ─► verify(undefined)                         (before a boot's first registration)
 *  serve     ─► prepare(job)  → env for the listener      (after registration, before the listener)
 *  cleaning  ─► release(job)                              (after the listener exited; also at recovery)
 *  verifying ─► prewarm() (optional, returns at once) → verify(job)   (any line = dirty)
 * ```
 *
 * Guards live in feature folders and are built by the composition root; the agent knows only
 * this interface. `P` is the team policy type; guards read their own section of it.
 */
export interface JobGuard<P = unknown> {
  /** Short fixed name, used as the cleanup report's step name (`guard:<name>`) and in logs. */
  readonly name: string;
  /**
   * Called before the listener starts. Returns variables added to the listener's environment
   * (e.g. `DOCKER_HOST`). Throw {@link GuardUnfitError} when the host cannot give what the policy
   * asks (the agent then quarantines the host; it never silently runs the job without the guard).
   */
  prepare(job: GuardJob, policy: P, ctx: GuardContext): Promise<GuardPrepared>;
  /**
   * Called after the listener exited, before verification, and at recovery for a job the agent
   * was killed during (so it must be idempotent and work from `job` alone). Slow teardown that is
   * not needed for verification belongs in the background: return quickly.
   */
  release(job: GuardJob, policy: P, ctx: GuardContext): Promise<GuardReleased>;
  /**
   * Independent check after cleanup (`job` undefined at preflight). One line per problem; any line
   * makes the host dirty. Never trusts what `release` reported.
   */
  verify(job: GuardJob | undefined, policy: P, ctx: GuardContext): Promise<GuardFinding[]>;
  /**
   * Optional. Called when the agent starts the guards' verification of a host whose cleanup
   * pipeline passed (the previous job's processes are dead and proven gone), so that slow set-up
   * for the next job (a container engine's start) overlaps verification instead of the ready
   * path. Returns at once and never throws. What it starts belongs to the guard until the next
   * `prepare` takes it; the guard stops it itself when no prepare comes (the host was not reused).
   */
  prewarm?(policy: P, ctx: GuardContext): void;
}

/** The job a guard acts on; persisted with the agent's state so a restarted agent can release it. */
export interface GuardJob {
  /** Unique per listener start; also names the per-job directory. */
  key: string;
  /** Root-owned per-job directory (parent of the job's HOME/TMPDIR); a guard may create children. */
  dir: string;
  user: { name: string; uid: number; gid: number; home: string };
  runnerRoot: string;
  /** The agent's state directory (root-only files of the agent). */
  stateDir: string;
}

/** What every guard call gets besides the job. */
export interface GuardContext {
  log: Logger;
  /** Bounded by the agent's cleanup or start-up deadline, never the shutdown signal. */
  signal: AbortSignal;
}

export interface GuardPrepared {
  /** Added to the listener's environment; later guards win on a clash. */
  env?: Record<string, string>;
  /** One line each for the job's journal record. */
  notes?: string[];
}

export interface GuardReleased {
  /** What was removed, by kind (same shape as a cleanup step's `removed`). */
  removed?: Record<string, { count: number; bytes: number }>;
  /** `dirty` when something could not be undone; the host must then not be reused. */
  outcome: 'ok' | 'skipped' | 'failed' | 'dirty';
  reason?: string;
}

/** One verification problem; `detail` carries structured evidence (e.g. a drift entry). */
export interface GuardFinding {
  /** One line a person can read, e.g. "file /etc/cron.d/x added (root)". */
  problem: string;
  detail?: Record<string, unknown>;
}

/** Thrown by {@link JobGuard.prepare} when the host cannot provide what the policy requires. */
export class GuardUnfitError extends Error {
  override readonly name = 'GuardUnfitError';
  constructor(
    readonly guard: string,
    message: string,
    /** How an operator fixes it, one line. */
    readonly fix?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
