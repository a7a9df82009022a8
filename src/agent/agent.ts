/**
 * The lifecycle loop of one slot: register a single-use runner, supervise its listener for one
 * job, clean and verify, decide, repeat (diagram in states.ts). This file is the loop and the
 * drain; the parts live beside it, one concern each:
 *
 *   context.ts      persisted state and quarantine fact (every transition and write)
 *   registrar.ts    registration loop behind one port (jit-registrar.ts, token-registrar.ts)
 *   registrations.ts  deletion of every registration made (no ghosts)
 *   supervisor.ts   the listener(s) of one registration; exit-codes.ts the exit table
 *   settle.ts       clean, verify, decide, record; endings.ts reuse/recycle/quarantine/stop
 *   recovery.ts     after an unclean stop; preflight.ts before a fresh boot's first job
 */
import type { Clock } from '../lib/clock.js';
import { ConfigError, describeError } from '../lib/errors.js';
import type { StatusSnapshot } from '../health/snapshot.js';
import type { HookEvent } from '../runner/hooks.js';
import type { Policy } from '../policy/types.js';
import { AgentContext } from './context.js';
import type { AgentCore } from './core.js';
import type { AgentDeps, AgentExit } from './deps.js';
import { DrainControl } from './drain.js';
import { Endings, type Next } from './endings.js';
import { GuardCalls } from './guards.js';
import { JitRegistrar } from './jit-registrar.js';
import { BufferedJournal } from './journal-buffer.js';
import { preflight } from './preflight.js';
import { QuarantineStore } from './quarantine-store.js';
import { recover } from './recovery.js';
import { registerRunner, type Registration, type RunnerRegistrar } from './registrar.js';
import { RegistrationLedger } from './registrations.js';
import { realRunnerHost } from './runner-host.js';
import { realDisk } from './disk.js';
import { RunnerUpdates } from './runner-updates.js';
import { Settler } from './settle.js';
import { StateStore, type PersistedState } from './state-store.js';
import { statusSnapshot } from './status.js';
import { ListenerSupervisor, type ServeOutcome } from './supervisor.js';
import { TokenModeRegistrar } from './token-registrar.js';

export type {
  AgentDeps,
  AgentExit,
  AgentObserver,
  CleanupFn,
  PolicySource,
  PrepareJobDirsFn,
  ProcessContainerFactory,
  RecyclePort,
} from './deps.js';
export { renderName } from './registrar.js';
export { DRAIN_DEADLINE_MARGIN_MS } from './supervisor.js';

/**
 * Hook reports read at start (written while the agent was down): a job writes two; more is a
 * flood, and only the first few are looked at.
 */
const MAX_LEFTOVER_REPORTS = 16;

/**
 * How long a stopping agent waits for work that outlived its caller (a registration request given
 * up on, whose late answer must still be deleted); the API client's own deadline is shorter.
 */
const LATE_TASKS_WAIT_MS = 60_000;

/** The agent of one runner slot. */
export class Agent {
  private readonly core: AgentCore;
  private readonly ledger: RegistrationLedger;
  private readonly registrar: RunnerRegistrar;
  private readonly supervisor: ListenerSupervisor;
  private readonly settler: Settler;
  private readonly endings: Endings;
  private readonly updates: RunnerUpdates;
  private readonly startedAt: number;
  private readonly lateTasks: Promise<unknown>[] = [];
  /** The loop's background tasks (heartbeat, hook watcher), awaited when run() ends. */
  private readonly tasks: Promise<void>[] = [];
  private readonly bg = new AbortController();
  /** Why the job hooks could not be installed (a full disk at start); tried again at each job boundary. */
  private hooksProblem: string | undefined = 'not installed yet';

  constructor(d: AgentDeps) {
    const log = d.log.child({ component: 'agent' });
    const clock: Clock = d.clock;
    this.startedAt = clock.now();
    this.core = {
      d,
      host:
        d.runnerHost ??
        realRunnerHost({ slot: d.slot, hooks: d.hooks, clock, log, ...(d.runner.path ? { listenerPath: d.runner.path } : {}) }),
      disk: d.disk ?? realDisk(d.slot),
      guards: d.guards ?? [],
      random: d.random ?? Math.random,
      ctx: new AgentContext(
        new StateStore(d.slot.stateDir),
        new QuarantineStore(d.slot.stateDir, d.slot.runnerRoot),
        clock,
        log,
        d.observer,
      ),
      drain: new DrainControl(),
      journal: new BufferedJournal(d.journal, log),
      log,
      // Born alive: the health server answers before run() starts the loop, and a 0 here read as "loop stalled".
      live: { jobsThisRun: 0, maxJobMs: 360 * 60_000, secrets: new Set(), lastBeat: clock.now() },
      iso: () => new Date(clock.now()).toISOString(),
      later: (task) => {
        this.lateTasks.push(task.catch((err: unknown) => log.warn({ err: describeError(err) }, 'background task failed')));
      },
    };
    const mode = d.registration;
    const token = mode?.mode === 'token' ? new TokenModeRegistrar(this.core, mode.registrar) : undefined;
    this.ledger = new RegistrationLedger(this.core, token ? (id, err) => token.localRemove(id, err) : undefined);
    this.registrar = token ?? new JitRegistrar(this.core, this.ledger, d.runner.prefetch === true);
    const guards = new GuardCalls(this.core.guards, log, clock);
    this.supervisor = new ListenerSupervisor(this.core, this.ledger, this.registrar, guards);
    this.updates = new RunnerUpdates(this.core);
    this.settler = new Settler(this.core, this.ledger, this.supervisor, guards, this.updates);
    this.endings = new Endings(this.core, this.ledger, this.registrar);
  }

  /** Starts draining (SIGTERM, `runner-warden drain`, spot notice): idle → deregister now; busy → bounded wait. */
  drain(reason: string, opts: { recycle?: boolean; deadlineAt?: number } = {}): void {
    if (this.core.drain.request(reason, opts)) this.core.log.info({ reason }, 'draining');
  }

  /** Values that must never appear in any output (the current JIT config); for the health server's scrub. */
  secretValues(): string[] {
    return [...this.core.live.secrets];
  }

  /** The status snapshot (no secrets), read by the health server. */
  snapshot(): StatusSnapshot {
    return statusSnapshot(this.core, this.startedAt);
  }

  /** Runs until stopped, drained or recycled; resolves with the exit code for the CLI. */
  async run(shutdown: AbortSignal): Promise<AgentExit> {
    const { host, d } = this.core;
    const onShutdown = (): void => this.drain('shutdown signal');
    if (shutdown.aborted) onShutdown();
    else shutdown.addEventListener('abort', onShutdown, { once: true });
    this.core.live.lastBeat = d.clock.now();
    this.tasks.push(this.heartbeat(this.bg.signal));
    try {
      // An update a crash interrupted is finished or undone before any listener starts.
      await this.updates.recover();
      // Hook reports written while the agent was down are read before the drop directory is reset.
      const leftover = (await host.takeLeftoverEvents(d.clock.now()).catch(() => [] as HookEvent[])).slice(0, MAX_LEFTOVER_REPORTS);
      // A disk a job filled must not stop the agent here: it cleans first, and tries again before registering.
      await this.installHooks();
      return await this.lifecycle(leftover);
    } finally {
      shutdown.removeEventListener('abort', onShutdown);
      this.bg.abort();
      await Promise.allSettled(this.tasks);
      await this.settleLateTasks();
      await this.core.journal.close((ms) => d.clock.sleep(ms));
      await this.core.ctx.flush();
    }
  }

  private async lifecycle(leftover: HookEvent[]): Promise<AgentExit> {
    const { ctx, d, drain, journal } = this.core;
    const { prev, fact } = await ctx.boot();
    await journal.append({
      type: 'event',
      event: 'boot',
      at: this.core.iso(),
      detail: { previousState: prev ? prev.state : null, quarantined: fact !== undefined },
    });
    let policy = d.policies.atJobBoundary();
    let next: Next;
    if (fact) next = await this.endings.resume(policy, prev?.pendingName);
    else if (prev && (prev.dirty || prev.registrations.length > 0 || prev.pendingName !== undefined))
      next = await this.recoverFrom(prev, policy, leftover);
    else next = await preflight(this.core, this.settler, this.endings, policy);
    for (;;) {
      if (next === 'released') {
        // An operator released the quarantine: clean and verify as after a crash before any job.
        next = await this.recoverFrom({ ...ctx.s, dirty: true }, policy, []);
        continue;
      }
      if (next) return next;
      if (drain.draining) return this.endings.stop(`drained: ${drain.reason}`);
      await journal.flush();
      if (this.hooksProblem !== undefined) await this.installHooks();
      const unwritable =
        ctx.writeProblem ?? journal.problem ?? (this.hooksProblem !== undefined ? `job hooks: ${this.hooksProblem}` : undefined);
      if (unwritable !== undefined) {
        next = await this.endings.recycle(policy, `state-unwritable: ${unwritable}`);
        continue;
      }
      policy = d.policies.atJobBoundary();
      await this.updates.between();
      const got = await registerRunner(this.core, this.registrar, this.ledger, policy);
      if (got.kind === 'drained') return this.endings.stop(`drained: ${drain.reason}`);
      if (got.kind === 'stuck') {
        next = await this.endings.recycle(policy, got.reason);
        continue;
      }
      const outcome = await this.serve(got.reg, policy);
      const decision = await this.settler.settle(got.reg, outcome, policy);
      next = await this.endings.act(decision, policy, this.settler.evidence);
    }
  }

  private async recoverFrom(prev: PersistedState, policy: Policy, leftover: HookEvent[]): Promise<Next> {
    await this.core.ctx.transition('recovering');
    const decision = await recover(this.core, this.ledger, this.settler, prev, policy, leftover);
    return this.endings.act(decision, policy, this.settler.evidence);
  }

  /** Serves one registration; a host that cannot set a listener up (ENOSPC...) ends it, never the agent. */
  private async serve(reg: Registration, policy: Policy): Promise<ServeOutcome> {
    try {
      return await this.supervisor.serve(reg, policy);
    } catch (err) {
      this.core.log.error({ err: describeError(err), runner: reg.name }, 'could not set up a listener');
      const why = describeError(err);
      return {
        exit: { code: null, signal: null, at: this.core.d.clock.now() },
        reason: `listener not started: ${why}`,
        failed: true,
        setupProblem: why,
      };
    }
  }

  /** Installs the job hooks and starts their report channel; a failure is kept in hooksProblem, never thrown. */
  private async installHooks(): Promise<void> {
    const { host, log } = this.core;
    try {
      await host.installHooks();
    } catch (err) {
      // A configuration the hooks refuse (the runner user's group is shared) is the operator's to fix: exit 78.
      if (err instanceof ConfigError) throw err;
      const why = describeError(err);
      if (this.hooksProblem !== why) log.error({ err: why }, 'could not install the job hooks');
      this.hooksProblem = why;
      return;
    }
    this.hooksProblem = undefined;
    this.tasks.push(
      host
        .watchEvents((e) => this.onHookEvent(e), this.bg.signal)
        .catch((err: unknown) => log.error({ err: describeError(err) }, 'job hook reports stopped')),
    );
  }

  private onHookEvent(e: HookEvent): void {
    this.core.later(this.supervisor.onHook(e));
  }

  private async heartbeat(signal: AbortSignal): Promise<void> {
    const { d, live, journal } = this.core;
    while (!signal.aborted) {
      live.lastBeat = d.clock.now();
      // Records that could not be written wait in memory: try them again on every beat, without
      // waiting for it here (a write stuck on a full disk must not make the loop look stalled).
      if (journal.backlog > 0) this.core.later(journal.flush());
      try {
        await d.clock.sleep(d.timeouts.heartbeatMs, signal);
      } catch {
        return;
      }
    }
  }

  /** Awaits work that outlived its caller, bounded (the agent must stop even if an API never answers). */
  private async settleLateTasks(): Promise<void> {
    if (this.lateTasks.length === 0) return;
    const ac = new AbortController();
    await Promise.race([Promise.allSettled(this.lateTasks), this.core.d.clock.sleep(LATE_TASKS_WAIT_MS, ac.signal).catch(() => {})]);
    ac.abort();
  }
}
