import type { EngineInventory } from './engine-inventory.js';
import type { Logger } from '../lib/log.js';
import type { Clock } from '../lib/clock.js';
import type { CleanupPolicy, Policy } from '../policy/types.js';

/**
 * Everything that belongs to one runner slot (a host may later run several slots side by side: adding one must be a change of count, not of design).
 * One host runs one slot today; several later, by count, not by design.
 */
export interface Slot {
  /** 0-based slot number. */
  index: number;
  /** The runner installation (holds bin/, run.sh, .runner ...). */
  runnerRoot: string;
  /** Absolute work directory, normally `<runnerRoot>/_work`. */
  workDir: string;
  user: { name: string; uid: number; gid: number; home: string };
  /** Root-owned state of the agent for this slot (state file, journal, baselines). */
  stateDir: string;
  /** Root-only directory on the same filesystem as workDir, where trees are renamed before deletion. */
  trashDir: string;
  /** Parent of per-job HOME/TMPDIR/DOCKER_CONFIG directories (prevention before cleanup: docs/decisions.md). */
  jobRoot: string;
  /** cgroup path (v2 dir or v1 freezer dir) the listener runs in, when the host allows it. */
  cgroup?: string;
}

/** What one step removed, by kind (never by content). */
export interface Removed {
  count: number;
  bytes: number;
}

/** The outcome of one step. `dirty` = something could not be made clean; the host must not be reused. */
export type StepOutcome = 'ok' | 'skipped' | 'failed' | 'dirty';

/** One step's entry in the job's cleanup report. */
export interface StepReport {
  name: string;
  outcome: StepOutcome;
  durationMs: number;
  /** Keyed by kind: e.g. "process", "file", "dir", "docker-config", "container", "volume". */
  removed: Record<string, Removed>;
  /** Why skipped / failed / dirty, one line. */
  reason?: string;
  /** With dryRun: what the step would remove (paths, pids, ids), capped in length. */
  plan?: string[];
}

/** Inputs every step gets. */
export interface CleanupContext {
  slot: Slot;
  policy: CleanupPolicy;
  /** The whole team policy, for the watermarks in limits. */
  fullPolicy: Policy;
  log: Logger;
  clock: Clock;
  /** Bounded cleanup signal, never the shutdown signal (docs/decisions.md, "One bounded signal for cleanup"). */
  signal: AbortSignal;
  dryRun: boolean;
  /** Pids that must never be signalled (the agent and its helpers). */
  protectedPids: ReadonlySet<number>;
  /** Epoch ms when the job's listener was started; containers created after it belong to the job. */
  jobStartedAt?: number;
  /** The engine's objects before the job (engine-inventory.ts); when given, only objects not in it are the job's. */
  engineBefore?: EngineInventory;
}

/** One named step of the pipeline (docs/decisions.md, "Cleanup is a pipeline of named steps"). */
export interface CleanupStep {
  readonly name: string;
  /** Does the work (or, with ctx.dryRun, only fills `plan`). Throws only on programming errors. */
  run(ctx: CleanupContext): Promise<Omit<StepReport, 'name' | 'durationMs'>>;
}

/** The independent verification's findings. */
export interface VerifyReport {
  clean: boolean;
  durationMs: number;
  /** One line per problem, e.g. "process 1234 of runner user still alive". */
  problems: string[];
  /** Findings that do not make the host dirty (a mount another service made under /tmp), for operators. */
  notices?: string[];
  disk?: { freePercent: number; freeInodesPercent: number };
}

/** The whole cleanup report stored in the journal record. */
export interface CleanupReport {
  steps: StepReport[];
  verify: VerifyReport;
  /** True when every step is ok/skipped and verify is clean. */
  clean: boolean;
  /** Job end → host ready (rename + steps + verify), in ms. */
  readyMs: number;
}
