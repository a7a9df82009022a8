/**
 * The agent's ports: everything it needs from the world, wired by the composition root
 * (src/cli/wire.ts) and replaced by fakes in the unit tests (test/unit/agent/).
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { RandomSource } from '../lib/backoff.js';
import type { FleetSlots } from '../lib/fleet-slots.js';
import type { JobGuard } from '../lib/job-guard.js';
import type { GitHubPort } from '../github/port.js';
import type { Policy } from '../policy/types.js';
import type { CleanupReport, Slot } from '../cleanup/types.js';
import type { EngineInventory } from '../cleanup/engine-inventory.js';
import type { StatusSnapshot } from '../health/snapshot.js';
import type { HookPaths } from '../runner/hooks.js';
import type { JobDirsLike } from '../runner/env.js';
import type { TokenRegistrar } from '../runner/token-registration.js';
import type { UpdateResult } from '../runner/update.js';
import type { AgentState } from './states.js';
import type { Timeouts } from './timeouts.js';
import type { JournalPort } from './records.js';
import type { RunnerHostPort } from './runner-host.js';
import type { DiskPort } from './disk.js';

/** Where the team policy comes from; the PolicyStore implements it. */
export interface PolicySource {
  /** The policy for the next job: adopts a pending valid reload (only called between jobs). */
  atJobBoundary(): Policy;
  status(): StatusSnapshot['policy'];
}

/** One cleanup pass; the composition root binds it to the pipeline and verify. */
export type CleanupFn = (req: {
  policy: Policy;
  jobStartedAt?: number;
  /** The container engine's objects before the job; only newer ones are the job's. */
  engineBefore?: EngineInventory;
  signal: AbortSignal;
  /** Called once the steps are done and verification starts. */
  beforeVerify: () => Promise<void>;
}) => Promise<CleanupReport>;

/** Per-job directories (prevention); made before each listener starts. */
export type PrepareJobDirsFn = (key: string) => Promise<JobDirsLike & { root: string }>;

/** A process container (cgroup) the listener is moved into right after spawn. */
export interface ProcessContainerFactory {
  create(name: string): Promise<{ add(pid: number): Promise<void> | void; path?: string; remove?(): Promise<void> }>;
}

/** Tells the infrastructure to replace the host. */
export interface RecyclePort {
  readonly provider: string;
  recycle(
    event: { reason: string; team: string; jobsServed: number; runnerName?: string; runnerId?: number },
    signal: AbortSignal,
  ): Promise<{ ok: boolean; provider: string; detail: string; exitCode?: number }>;
}

/**
 * In-place runner updates (host config `runner.updates`), bound by the composition root to the
 * slot's runner root and release source (src/runner/update.ts).
 */
export interface RunnerUpdatesPort {
  /** Finishes or undoes an update a crash interrupted; run at boot before any listener. */
  recover(): Promise<void>;
  /** Installs a newer verified release, or says why not. */
  update(): Promise<UpdateResult>;
  /** How often, between jobs, a newer release is looked for (host config checkEveryMinutes). */
  checkEveryMs: number;
}

/** Metrics hooks (AgentMetrics implements them); every method optional. */
export interface AgentObserver {
  setState?(state: AgentState): void;
  jobEnded?(result: string, seconds: number): void;
  cleanupReported?(report: CleanupReport): void;
  listenerExited?(code: number | null): void;
  timeToReady?(seconds: number): void;
  recycled?(reason: string, provider: string): void;
  recycleFailed?(provider: string): void;
  setQuarantined?(quarantined: boolean): void;
  jobsServedTotal?(n: number): void;
}

/** Everything the agent needs, wired by the composition root (src/cli/wire.ts). */
export interface AgentDeps {
  slot: Slot;
  github: GitHubPort;
  policies: PolicySource;
  cleanup: CleanupFn;
  prepareJobDirs: PrepareJobDirsFn;
  journal: JournalPort;
  hooks: HookPaths;
  runner: {
    /** Name template: {hostname}, {seq}, {random}. */
    name: string;
    labels: string[];
    group: string | null;
    /** Jobs this process serves before stopping; 0 = no limit. */
    maxJobs: number;
    path?: string;
    /** Extra listener environment from the host config (never secrets: the job sees it). */
    env?: Record<string, string>;
    /** Obtain the next JIT config while a job runs, so reuse need not wait for the API. */
    prefetch?: boolean;
  };
  team: string;
  hostname: string;
  version: string;
  clock: Clock;
  log: Logger;
  timeouts: Timeouts;
  recycler?: RecyclePort;
  processContainers?: ProcessContainerFactory;
  observer?: AgentObserver;
  /**
   * Readiness checks before the first registration of a boot, besides cleanup and verification
   * (the container engine answering); returns the problems, none when ready.
   */
  preflight?: (policy: Policy, signal: AbortSignal) => Promise<string[]>;
  /** Lists the container engine's objects before a listener starts; undefined when there is no engine. */
  engineInventory?: (policy: Policy) => Promise<EngineInventory | undefined>;
  /**
   * How runners are registered: absent or 'jit', a JIT configuration per job; 'token', a
   * registration token and config.sh (for servers without JIT). Token mode cannot prefetch.
   */
  registration?: { mode: 'jit' } | { mode: 'token'; registrar: TokenRegistrar };
  /**
   * Job guards, called in order around every job (src/lib/job-guard.ts): prepare before the
   * listener, release while cleaning, verify while verifying and at preflight. Default none.
   */
  guards?: JobGuard<Policy>[];
  /** The runner installation and its listener; default the real files and processes (runner-host.ts). */
  runnerHost?: RunnerHostPort;
  /** The work filesystem and its trash, for disk figures taken after the trash is empty; default the slot's. */
  disk?: DiskPort;
  /** In-place runner updates; absent: never updated by the agent (a deprecated runner recycles the host). */
  runnerUpdates?: RunnerUpdatesPort;
  /** Uniform [0, 1) for backoff jitter; default Math.random. */
  random?: RandomSource;
  /**
   * This host's GitHub retry slots (host config `fleet`; the same ones the GitHub adapter waits
   * for): a failed registration is tried again in the host's next slot. Absent: full jitter.
   */
  fleetSlots?: FleetSlots;
}

/** The agent's exit: the process exit code and why. */
export interface AgentExit {
  code: number;
  reason: string;
}
