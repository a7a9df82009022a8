/**
 * What the parts of the agent share: the wired ports, the persisted context, the drain, the
 * journal, and the in-memory view of the current runner and job. Built once by the Agent.
 */
import type { Logger } from '../lib/log.js';
import type { RandomSource } from '../lib/backoff.js';
import type { JobGuard } from '../lib/job-guard.js';
import type { Policy } from '../policy/types.js';
import type { StatusSnapshot } from '../health/snapshot.js';
import type { AgentDeps } from './deps.js';
import type { AgentContext } from './context.js';
import type { DrainControl } from './drain.js';
import type { BufferedJournal } from './journal-buffer.js';
import type { RunnerHostPort } from './runner-host.js';
import type { DiskPort } from './disk.js';
import type { TrackedJob } from './job-tracker.js';

/** What the status snapshot shows besides the persisted state; lost on restart by design. */
export interface LiveView {
  jobsThisRun: number;
  currentRunner?: { name: string; id?: number; labels: string[] };
  currentJob?: TrackedJob;
  lastJob?: StatusSnapshot['lastJob'];
  /** When the last listener exited: the next listener start measures time-to-ready from it. */
  lastJobEndAt?: number;
  /** The job time limit of the policy in force (for stuck detection). */
  maxJobMs: number;
  /** Values that must never appear in any output (the current JIT config). */
  secrets: Set<string>;
  /** Epoch ms the loop last showed it was alive. */
  lastBeat: number;
  /** Epoch ms the current registration episode started (for the registration limit and /readyz). */
  registeringSince?: number;
}

/** The agent's shared parts. */
export interface AgentCore {
  d: AgentDeps;
  host: RunnerHostPort;
  disk: DiskPort;
  guards: readonly JobGuard<Policy>[];
  random: RandomSource;
  ctx: AgentContext;
  drain: DrainControl;
  journal: BufferedJournal;
  log: Logger;
  live: LiveView;
  /** ISO time now, from the injected clock. */
  iso(): string;
  /** Keeps a task that may outlive its caller (a late API answer); the agent awaits it before it returns. */
  later(task: Promise<unknown>): void;
}
