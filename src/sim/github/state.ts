/**
 * What the fake GitHub remembers, one store per concern: labels.ts, groups.ts, runners.ts
 * (registrations), sessions.ts (listener sessions), jobs.ts (the queue, and which job goes to
 * which runner), tokens.ts (short-lived tokens it issued). HTTP lives in rest.ts and broker.ts;
 * this file builds the stores, wires the one rule that crosses them (a removed registration loses
 * its job) and wakes the long polls when anything changes.
 */
import { EventEmitter } from 'node:events';
import type { Clock } from '../../lib/clock.js';
import { RunnerGroups } from './groups.js';
import { JobQueue } from './jobs.js';
import { LabelRegistry } from './labels.js';
import { RunnerRegistry } from './runners.js';
import { SessionStore } from './sessions.js';
import { TokenStore } from './tokens.js';
import type { FakeGitHubEvents, FakeRunnerGroup } from './types.js';

/** The model. One instance per fake server. */
export class FakeState {
  readonly events = new EventEmitter<FakeGitHubEvents>();
  readonly labels = new LabelRegistry();
  readonly groups: RunnerGroups;
  readonly tokens: TokenStore;
  readonly runners: RunnerRegistry;
  readonly sessions: SessionStore;
  readonly jobs: JobQueue;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly clock: Clock,
    groups: FakeRunnerGroup[],
    sessionStaleMs: number,
    jobLockMs: number,
  ) {
    const changed = (): void => this.changed();
    this.groups = new RunnerGroups(groups);
    this.tokens = new TokenStore(clock);
    this.runners = new RunnerRegistry({
      clock,
      events: this.events,
      labels: this.labels,
      sessionStaleMs,
      changed,
      onRemoved: (r) => this.jobs.lose(r.jobId),
    });
    this.sessions = new SessionStore(clock, this.events, this.runners, changed);
    this.jobs = new JobQueue(clock, this.events, this.runners, changed, jobLockMs);
  }

  /** Registers a callback for the next change; returns a function that unregisters it. */
  onChange(fn: () => void): () => void {
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }

  /** Wakes every waiting poll so it re-checks its runner's mailbox. */
  changed(): void {
    const fns = [...this.waiters];
    this.waiters.clear();
    for (const fn of fns) fn();
  }
}
