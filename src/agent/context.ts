/**
 * The agent's persisted context: the lifecycle state (state.json) and the quarantine fact
 * (quarantine.json). Every transition and every change of the persisted fields goes through
 * `transition` or `update`, which write before they resolve, so no caller can change the state and
 * forget to persist it. Writes are serialised: an older snapshot never lands after a newer one.
 *
 * A write that fails (ENOSPC, EIO, a read-only remount) does not kill the agent: the state is kept
 * in memory, the next write tries again, and `writeProblem` tells the loop that crash safety is
 * lost, so it stops taking jobs (recycle, else quarantine) instead of dying.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { describeError } from '../lib/errors.js';
import { assertTransition, type AgentState } from './states.js';
import { type StateStore, initialState, type PersistedState } from './state-store.js';
import type { QuarantineStore, QuarantineFact } from './quarantine-store.js';
import type { AgentObserver } from './deps.js';

/** The persisted context of one agent process. */
export class AgentContext {
  private ps: PersistedState;
  private fact: QuarantineFact | undefined;
  private queue: Promise<void> = Promise.resolve();
  private problem: string | undefined;
  /** Epoch ms of the last transition (the watchdog's heartbeat). */
  lastTransitionAt = 0;

  constructor(
    private readonly store: StateStore,
    private readonly quarantines: QuarantineStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly observer: AgentObserver | undefined,
  ) {
    this.ps = initialState(new Date(clock.now()));
  }

  /** The current state (read-only: change it with transition or update). */
  get s(): Readonly<PersistedState> {
    return this.ps;
  }

  /** The persisted quarantine, if the host is quarantined. */
  get quarantine(): QuarantineFact | undefined {
    return this.fact;
  }

  /** The last failed write (state or quarantine), undefined once a write succeeded again. */
  get writeProblem(): string | undefined {
    return this.problem;
  }

  /**
   * Loads what the previous agent left and enters `boot`. A state.json that says `quarantined`
   * without a quarantine file (written by an older version, or the fact's write failed) counts as
   * the fact: the quarantine is never lost on the way through a restart.
   */
  async boot(): Promise<{ prev: PersistedState | undefined; fact: QuarantineFact | undefined }> {
    const prev = await this.store.load();
    let fact = await this.quarantines.load();
    if (!fact && prev?.state === 'quarantined') {
      fact = { v: 1, reason: prev.quarantineReason ?? 'quarantined before restart', at: prev.since, evidence: [] };
    }
    if (prev) this.ps = { ...prev };
    this.fact = fact;
    this.ps.state = 'boot';
    this.ps.since = isoNow(this.clock);
    if (fact) this.ps.quarantineReason = fact.reason;
    else delete this.ps.quarantineReason;
    if (fact) await this.saveFact();
    await this.persist();
    return { prev, fact };
  }

  /** Moves to `to` (refusing edges the table does not have), persisted before it resolves. */
  async transition(to: AgentState, change?: (s: PersistedState) => void): Promise<void> {
    const from = this.ps.state;
    if (from !== to) assertTransition(from, to);
    change?.(this.ps);
    if (from !== to || to === 'idle' || to === 'registering') {
      this.ps.state = to;
      this.ps.since = isoNow(this.clock);
      this.log.info({ from, to }, 'state');
      this.observer?.setState?.(to);
      this.observer?.setQuarantined?.(this.fact !== undefined);
      this.observer?.jobsServedTotal?.(this.ps.jobsServed);
    }
    this.lastTransitionAt = this.clock.now();
    await this.persist();
  }

  /** Changes persisted fields (not the state) and writes them before it resolves. */
  async update(change: (s: PersistedState) => void): Promise<void> {
    change(this.ps);
    await this.persist();
  }

  /** Records the quarantine fact (kept from the first quarantine: its time and evidence stay). */
  async setQuarantine(fact: QuarantineFact): Promise<void> {
    this.fact ??= fact;
    this.ps.quarantineReason = this.fact.reason;
    await this.saveFact();
  }

  /** Ends the quarantine (an operator's release): removes the fact. */
  async clearQuarantine(): Promise<void> {
    await this.quarantines.clear();
    this.fact = undefined;
    delete this.ps.quarantineReason;
    this.observer?.setQuarantined?.(false);
    await this.persist();
  }

  /** An operator's release request, if one is waiting (consumed). */
  takeReleaseRequest(): ReturnType<QuarantineStore['takeRequest']> {
    return this.quarantines.takeRequest().catch(() => undefined);
  }

  /**
   * Writes the quarantine fact and the state again after a failed write (the disk had no room):
   * a held quarantine must reach the disk as soon as there is room, or a restart would lose it.
   */
  async rewrite(): Promise<void> {
    if (this.problem === undefined) return;
    await this.saveFact();
    await this.persist();
  }

  /** Resolves once every queued write has landed (or failed and been recorded). */
  flush(): Promise<void> {
    return this.queue;
  }

  private async saveFact(): Promise<void> {
    const fact = this.fact;
    if (!fact) return;
    const next = this.queue
      .then(() => this.quarantines.save(fact))
      .then(
        () => this.wrote(),
        (err: unknown) => this.failed('quarantine', err),
      );
    this.queue = next;
    await next;
  }

  private persist(): Promise<void> {
    const snapshot = JSON.parse(JSON.stringify(this.ps)) as PersistedState;
    const next = this.queue
      .then(() => this.store.save(snapshot))
      .then(
        () => this.wrote(),
        (err: unknown) => this.failed('state', err),
      );
    this.queue = next;
    return next;
  }

  private wrote(): void {
    if (this.problem !== undefined) this.log.info({}, 'state writes work again');
    this.problem = undefined;
  }

  private failed(what: string, err: unknown): void {
    const why = `${what} write failed: ${describeError(err)}`;
    if (this.problem === undefined) this.log.error({ err: describeError(err), what }, 'could not persist the agent state; kept in memory');
    this.problem = why;
  }
}

/** The clock's now as an ISO 8601 string (the state's `since`). */
function isoNow(clock: Clock): string {
  return new Date(clock.now()).toISOString();
}
