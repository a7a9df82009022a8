import { access, rm, readdir } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { GitHubApiError, describeError, isAbort } from '../lib/errors.js';
import type { GitHubPort } from '../github/port.js';
import type { Policy } from '../policy/types.js';
import type { CleanupReport, Slot } from '../cleanup/types.js';
import type { EngineInventory } from '../cleanup/engine-inventory.js';
import type { StatusSnapshot } from '../health/snapshot.js';
import { ListenerProcess, type ListenerExit } from '../runner/listener.js';
import { installHooks, readEventDir, watchHookEvents, type HookEvent, type HookPaths } from '../runner/hooks.js';
import { DEFAULT_PATH, buildListenerEnv, type JobDirsLike } from '../runner/env.js';
import { takeInstallManifest, writeRunnerEnv } from '../cleanup/install-manifest.js';
import { removeLocalConfig } from '../runner/installation.js';
import { ConfigShError, type TokenRegistrar } from '../runner/token-registration.js';
import type { ConsoleEvent } from '../runner/console.js';
import { decide, type Decision } from '../recycle/decision.js';
import { assertTransition, type AgentState } from './states.js';
import { StateStore, initialState, type PersistedState } from './state-store.js';
import type { Timeouts } from './timeouts.js';
import { buildJobRecord, jobMetaFromVars, type JobRecordInput, type JournalPort } from './records.js';

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
export interface RecyclerPort {
  readonly provider: string;
  recycle(
    event: { reason: string; team: string; jobsServed: number; runnerName?: string; runnerId?: number },
    signal: AbortSignal,
  ): Promise<{ ok: boolean; provider: string; detail: string; exitCode?: number }>;
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

/** Everything the agent needs, wired by the composition root (src/cli/run.ts). */
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
    /** Obtain the next JIT config while a job runs, so reuse need not wait for the API (issue 5). */
    prefetch?: boolean;
  };
  team: string;
  hostname: string;
  version: string;
  clock: Clock;
  log: Logger;
  timeouts: Timeouts;
  recycler?: RecyclerPort;
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
   * registration token and config.sh (issue 7, for servers without JIT). Token mode cannot prefetch.
   */
  registration?: { mode: 'jit' } | { mode: 'token'; registrar: TokenRegistrar };
}

/** How one registration's listener(s) ended. */
interface ServeOutcome {
  /** Set when a job started on this registration. */
  job?: TrackedJob;
  exit: ListenerExit;
  /** Why the registration ended without a job, for the journal. */
  reason: string;
  /** The listener failed (counts towards the crash loop). */
  failed: boolean;
  /** The service refused the runner's version (exit 7, or its console line): the version. */
  versionDeprecated?: string;
}

interface TrackedJob {
  startedAt: number;
  name?: string;
  result?: string;
  vars: Record<string, string>;
  source: 'hook' | 'console';
  completedSeen: boolean;
  notes?: string[];
}

/** A freshly registered runner. `jit` is a secret: it lives only in memory and the listener's env. */
interface Registration {
  id: number;
  name: string;
  labels: string[];
  /** Absent in token mode: config.sh already wrote the runner's files. */
  jit?: string;
}

/** The agent's exit: the process exit code and why. */
export interface AgentExit {
  code: number;
  reason: string;
}

/**
 * The lifecycle loop of one slot: register a single-use runner, supervise its listener for one job,
 * clean and verify, decide, repeat (design.md "Lifecycle"; diagram in states.ts). Every transition
 * is persisted before the work of the new state starts, so a restarted agent knows what to undo.
 */
export class Agent {
  private ps: PersistedState = initialState(new Date());
  private readonly store: StateStore;
  private readonly log: Logger;
  private draining = false;
  private drainReason = '';
  /** The drain asks for recycling (spot notice, `runner-warden drain`) rather than a plain stop (SIGTERM). */
  private recycleOnDrain = false;
  /** Epoch ms by which the host goes away (spot notice); the busy-drain grace ends before it. */
  private drainDeadlineAt?: number;
  private readonly drainAc = new AbortController();
  private jobsThisRun = 0;
  private lastBeat = 0;
  private readonly startedAt: number;
  private currentRunner?: { name: string; id?: number; labels: string[] };
  private currentJob?: TrackedJob;
  private lastJob?: StatusSnapshot['lastJob'];
  private tracker?: JobTrackerSink;
  private lastJobEndAt?: number;
  private readonly secrets = new Set<string>();
  /** Hook reports found at start (a job that ran while the agent was down). */
  private leftoverEvents: HookEvent[] = [];
  /** Serialises state writes so an older snapshot can never land after a newer one. */
  private persistQueue: Promise<void> = Promise.resolve();
  /** The job time limit of the policy in force (for stuck detection). */
  private maxJobMs = 360 * 60_000;
  /** Process containers of the current registration's listeners, removed after its cleanup. */
  private containers: { remove?(): Promise<void> }[] = [];
  /** The next registration, obtained while a job runs (prefetch); always awaited, used or deleted. */
  private prefetchTask?: Promise<(Registration & { group: string | null }) | undefined>;

  constructor(private readonly d: AgentDeps) {
    this.store = new StateStore(d.slot.stateDir);
    this.log = d.log.child({ component: 'agent' });
    this.startedAt = d.clock.now();
  }

  /** Starts draining (SIGTERM, `runner-warden drain`, spot notice): idle → deregister now; busy → bounded wait. */
  drain(reason: string, opts: { recycle?: boolean; deadlineAt?: number } = {}): void {
    if (opts.recycle) this.recycleOnDrain = true;
    if (opts.deadlineAt !== undefined) this.drainDeadlineAt = Math.min(this.drainDeadlineAt ?? Infinity, opts.deadlineAt);
    if (this.draining) return;
    this.draining = true;
    this.drainReason = reason;
    this.log.info({ reason }, 'draining');
    this.drainAc.abort(new DrainSignal(reason));
  }

  /** Values that must never appear in any output (the current JIT config); for the health server's scrub. */
  secretValues(): string[] {
    return [...this.secrets];
  }

  /** The status snapshot (no secrets), read by the health server. */
  snapshot(): StatusSnapshot {
    const now = this.d.clock.now();
    return {
      state: this.ps.state,
      stateSince: this.ps.since,
      loopAlive: now - this.lastBeat < this.d.timeouts.heartbeatMs * 3 && !this.stuck(now),
      quarantined: this.ps.state === 'quarantined',
      ...(this.ps.quarantineReason ? { quarantineReason: this.ps.quarantineReason } : {}),
      ...(this.currentRunner ? { runner: this.currentRunner } : {}),
      ...(this.currentJob
        ? {
            currentJob: {
              ...jobMetaFromVars(this.currentJob.vars),
              ...(this.currentJob.name ? { job: this.currentJob.name } : {}),
              startedAt: new Date(this.currentJob.startedAt).toISOString(),
            },
          }
        : {}),
      jobsServed: this.ps.jobsServed,
      ...(this.lastJob ? { lastJob: this.lastJob } : {}),
      policy: this.d.policies.status(),
      agent: {
        version: this.d.version,
        pid: process.pid,
        startedAt: new Date(this.startedAt).toISOString(),
        uptimeSeconds: Math.round((now - this.startedAt) / 1000),
      },
    };
  }

  /**
   * True when the loop has stayed in a bounded state far longer than its bound: the cleanup or a
   * recycle hung, or a job outlived its limit and the listener would not stop. /healthz then
   * answers 503 so a cloud health check replaces the host.
   */
  private stuck(now: number): boolean {
    const inState = now - Date.parse(this.ps.since);
    const t = this.d.timeouts;
    switch (this.ps.state) {
      case 'cleaning':
      case 'verifying':
      case 'deciding':
      case 'recycling':
        return inState > t.cleanupTimeoutMs + STUCK_MARGIN_MS;
      case 'job-running':
      case 'draining':
        return inState > this.maxJobMs + t.drainGraceMs + t.listenerStopGraceMs + STUCK_MARGIN_MS;
      default:
        return false;
    }
  }

  /** Runs until stopped, drained or recycled; resolves with the exit code for the CLI. */
  async run(shutdown: AbortSignal): Promise<AgentExit> {
    const onShutdown = (): void => this.drain('shutdown signal');
    if (shutdown.aborted) onShutdown();
    else shutdown.addEventListener('abort', onShutdown, { once: true });
    const bg = new AbortController();
    this.lastBeat = this.d.clock.now();
    const tasks = [this.heartbeat(bg.signal)];
    try {
      // Hook reports written while the agent was down are read before the drop directory is reset.
      this.leftoverEvents = await readEventDir(this.d.hooks.eventsDir, this.d.clock.now());
      await installHooks(this.d.hooks);
      tasks.push(
        watchHookEvents(this.d.hooks.eventsDir, (e) => this.onHookEvent(e), {
          log: this.log,
          now: () => this.d.clock.now(),
          signal: bg.signal,
        }),
      );
      return await this.lifecycle();
    } finally {
      shutdown.removeEventListener('abort', onShutdown);
      bg.abort();
      await Promise.allSettled(tasks);
      await this.persistQueue;
    }
  }

  // ---------------------------------------------------------------------------------------------

  private async lifecycle(): Promise<AgentExit> {
    const prev = await this.store.load();
    if (prev) this.ps = { ...prev };
    this.ps.state = 'boot';
    this.ps.since = new Date(this.d.clock.now()).toISOString();
    await this.persist();
    await this.d.journal.append({ type: 'event', event: 'boot', at: this.iso(), detail: { previousState: prev ? prev.state : null } });

    let policy = this.d.policies.atJobBoundary();
    if (prev && prev.state === 'quarantined') {
      await this.transition('recovering');
      return this.quarantine(policy, prev.quarantineReason ?? 'quarantined before restart');
    }
    if (prev && (prev.dirty || prev.registrations.length > 0 || prev.pendingName !== undefined)) {
      await this.transition('recovering');
      const decision = await this.recover(prev, policy, this.leftoverEvents);
      const exit = await this.act(decision, policy);
      if (exit) return exit;
    } else {
      await this.transition('preflight');
      const exit = await this.preflight(policy);
      if (exit) return exit;
    }

    for (;;) {
      if (this.draining) return this.stop(`drained: ${this.drainReason}`);
      policy = this.d.policies.atJobBoundary();
      const reg = await this.register(policy);
      if (!reg) return this.stop(`drained: ${this.drainReason}`);
      const outcome = await this.serve(reg, policy);
      const decision = await this.afterListener(reg, outcome, policy);
      const exit = await this.act(decision, policy);
      if (exit) return exit;
    }
  }

  /** Acts on a decision; returns an exit when the agent should stop, undefined to go on (reuse). */
  private async act(decision: Decision, policy: Policy): Promise<AgentExit | undefined> {
    switch (decision.action) {
      case 'reuse':
        this.ps.dirty = false;
        return undefined;
      case 'stop':
        this.ps.dirty = false;
        return this.stop(decision.reason);
      case 'recycle':
        return this.recycle(policy, decision.reason);
      case 'quarantine':
        return this.quarantine(policy, decision.reason);
    }
  }

  /** After a crash: kill and clean first, account for the interrupted job, delete every registration we made. */
  private async recover(prev: PersistedState, policy: Policy, leftover: HookEvent[]): Promise<Decision> {
    this.log.warn({ prevState: prev.state, dirty: prev.dirty }, 'recovering from an unclean stop');
    let job = prev.job;
    const started = leftover.find((e) => e.event === 'started');
    if (!job && started) {
      // A job reached the listener while the agent was down: its hook report is the only trace.
      job = {
        startedAt: new Date(started.at).toISOString(),
        listenerStartedAt: new Date(started.at).toISOString(),
        vars: { ...started.vars, ...leftover.find((e) => e.event === 'completed')?.vars },
        ...(prev.runner ? { runner: { id: prev.runner.id, name: prev.runner.name } } : {}),
      };
    }
    const report = await this.clean(policy, job ? Date.parse(job.listenerStartedAt) : undefined);
    const busy = await this.deleteStaleRegistrations(prev.pendingName);
    if (!job && prev.runner && busy.includes(prev.runner.id)) {
      // The service still held a job on the runner the agent left idle: a job was assigned while
      // the agent was down (its listener died with the agent before the job's hooks ran).
      job = {
        startedAt: new Date(this.d.clock.now()).toISOString(),
        listenerStartedAt: prev.since,
        runner: { id: prev.runner.id, name: prev.runner.name },
      };
    }
    if (job) {
      if (!job.counted) this.ps.jobsServed += 1;
      const result = job.result ?? 'interrupted';
      const key = job.key ?? `${job.runner?.id ?? prev.runner?.id ?? 'unknown'}@${Date.parse(job.startedAt)}`;
      if (await this.alreadyRecorded(key)) {
        // Killed after the record was written and before the state said so: do not write it twice.
        this.ps.job = undefined;
        this.ps.runner = undefined;
        return this.decideAfter(policy, report, result);
      }
      const rec = buildJobRecord({
        key,
        runnerName: job.runner?.name ?? prev.runner?.name,
        runnerId: job.runner?.id ?? prev.runner?.id,
        vars: job.vars ?? {},
        jobName: job.name,
        startedAt: Date.parse(job.startedAt),
        endedAt: job.endedAt ? Date.parse(job.endedAt) : this.d.clock.now(),
        exit:
          job.exitCode !== undefined || job.exitSignal !== undefined
            ? { code: job.exitCode ?? null, signal: (job.exitSignal ?? null) as NodeJS.Signals | null, at: 0 }
            : undefined,
        result,
        source: job.result ? 'console' : 'exit',
        cleanup: report,
        notes: [
          job.endedAt
            ? `agent restarted in state ${prev.state}, after the job ended; cleaned at recovery`
            : prev.job
              ? `agent restarted in state ${prev.state}; job interrupted`
              : 'a job started while the agent was down; killed and cleaned at recovery',
        ],
      });
      const decision = this.decideAfter(policy, report, result);
      await this.d.journal.append({ ...rec, decision: decision.action, decisionReason: decision.reason });
      this.ps.job = undefined;
      this.ps.runner = undefined;
      return decision;
    }
    const decision = this.decideAfter(policy, report, undefined);
    await this.d.journal.append({ type: 'event', event: 'recovery', at: this.iso(), detail: { decision: decision.action, reason: decision.reason } });
    return decision;
  }

  /** True when the journal's recent job records already hold `key`. */
  private async alreadyRecorded(key: string): Promise<boolean> {
    if (!this.d.journal.readLastJobs) return false;
    const recent = await this.d.journal.readLastJobs(RECENT_RECORDS).catch(() => ({ records: [] as { key?: string }[] }));
    return recent.records.some((r) => r.key === key);
  }

  private decideAfter(
    policy: Policy,
    report: CleanupReport | undefined,
    jobResult: string | undefined,
    idleTimedOut = false,
    runnerVersionDeprecated?: string,
  ): Decision {
    return decide({
      idleTimedOut,
      recycleOnDrain: this.recycleOnDrain,
      policy,
      report,
      jobsServed: this.ps.jobsServed,
      jobsThisRun: this.jobsThisRun,
      agentMaxJobs: this.d.runner.maxJobs,
      hostStartedAt: Date.parse(this.ps.hostStartedAt),
      now: this.d.clock.now(),
      ...(jobResult !== undefined ? { jobResult } : {}),
      consecutiveFailures: this.ps.consecutiveFailures,
      draining: this.draining,
      ...(runnerVersionDeprecated !== undefined ? { runnerVersionDeprecated } : {}),
    });
  }

  /** Records what the container engine holds now as not the job's (ps.engineBefore, persisted with the next transition). */
  private async takeEngineInventory(policy: Policy): Promise<void> {
    if (!policy.cleanup.containers.enabled || !this.d.engineInventory) return;
    const inv = await this.d.engineInventory(policy).catch((err: unknown) => {
      this.log.warn({ err: describeError(err) }, 'could not list the container engine; falling back to creation times');
      return undefined;
    });
    if (inv) this.ps.engineBefore = inv;
    else delete this.ps.engineBefore;
  }

  /**
   * The readiness gate before the first registration of a boot that needed no recovery (peers.md
   * §4 item 9). The container engine, when the host has one, must answer; then the host goes
   * through the same cleanup and verification as after a job, so the first job starts as clean as
   * every later one and a broken image or an engine that never came up is caught before it takes
   * a job. Dirty or no engine → quarantine; disk below the watermarks or the job limit already
   * reached → recycle; otherwise register.
   */
  private async preflight(policy: Policy): Promise<AgentExit | undefined> {
    const problems = this.d.preflight ? await this.d.preflight(policy, this.drainAc.signal) : [];
    if (this.draining) return this.stop(`drained: ${this.drainReason}`);
    if (problems.length > 0) {
      await this.d.journal.append({ type: 'event', event: 'preflight', at: this.iso(), detail: { ok: false, problems: problems.join('; ') } });
      return this.quarantine(policy, `preflight: ${problems.join('; ')}`);
    }
    // What the engine holds at boot is the image's or the admin's (a baked cache volume, images
    // pulled by user data): the inventory keeps it, and should listing fail, "created from now on"
    // keeps it as well. Only a job's objects are ever removed.
    await this.takeEngineInventory(policy);
    const report = await this.clean(policy, this.d.clock.now());
    const decision = this.decideAfter(policy, report, undefined);
    await this.d.journal.append({
      type: 'event',
      event: 'preflight',
      at: this.iso(),
      detail: {
        ok: decision.action === 'reuse',
        clean: report?.clean ?? false,
        readyMs: report?.readyMs ?? null,
        problems: report ? report.verify.problems.join('; ') : 'cleanup did not complete',
        decision: decision.action,
        decisionReason: decision.reason,
      },
    });
    return this.act(decision, policy);
  }

  /** Registers a fresh JIT runner, retrying with backoff; undefined when draining stopped it. */
  private async register(policy: Policy): Promise<Registration | undefined> {
    await this.transition('registering');
    const pre = await this.takePrefetched();
    await this.deleteStaleRegistrations(undefined, pre ? [pre.id] : []);
    const labels = unique([...this.d.runner.labels, ...policy.runner.labels]);
    const group = policy.runner.group ?? this.d.runner.group;
    if (pre) {
      if (pre.group === group && sameSet(pre.labels, labels)) {
        this.ps.runner = { id: pre.id, name: pre.name, registeredAt: this.iso() };
        await this.persist();
        this.currentRunner = { name: pre.name, id: pre.id, labels };
        this.log.info({ runner: pre.name, runnerId: pre.id }, 'using the prefetched registration');
        return pre;
      }
      // The policy changed labels or group at this job boundary: the prefetched runner does not fit.
      await this.deleteRegistration(pre.id);
    }
    let failures = 0;
    for (;;) {
      if (this.draining) return undefined;
      const name = renderName(this.d.runner.name, this.d.hostname, this.ps.seq);
      this.ps.pendingName = name;
      await this.persist();
      try {
        let r: { id: number; jit?: string };
        const mode = this.d.registration;
        if (mode?.mode === 'token') {
          // config.sh gets a HOME and TMPDIR of its own under the job root; the next cleanup removes them.
          const dirs = await this.d.prepareJobDirs(`config-${this.ps.seq}`);
          r = await mode.registrar.register({ name, labels, group, home: dirs.home, tmp: dirs.tmp, signal: this.drainAc.signal });
        } else {
          const groupId = await this.d.github.resolveRunnerGroup(group);
          const j = await this.d.github.generateJitConfig({ name, labels, runnerGroupId: groupId, workFolder: '_work' });
          r = { id: j.runner.id, jit: j.encodedJitConfig };
        }
        this.ps.seq += 1;
        this.ps.pendingName = undefined;
        this.ps.runner = { id: r.id, name, registeredAt: this.iso() };
        this.ps.registrations.push({ id: r.id, name });
        await this.persist();
        this.currentRunner = { name, id: r.id, labels };
        this.log.info({ runner: name, runnerId: r.id, mode: mode?.mode ?? 'jit' }, 'runner registered');
        return { id: r.id, name, labels, ...(r.jit !== undefined ? { jit: r.jit } : {}) };
      } catch (err) {
        if (isAbort(err) && this.draining) return undefined;
        if ((err instanceof GitHubApiError && err.status === 409) || (err instanceof ConfigShError && err.reason === 'name-exists')) {
          // The name is taken (a runner of an earlier boot, or another host): take the next number.
          this.log.warn({ runner: name }, 'runner name taken; trying the next');
          this.ps.seq += 1;
          continue;
        }
        failures += 1;
        const auth = err instanceof GitHubApiError && err.isAuth;
        const waitMs = auth
          ? this.d.timeouts.authFailureBackoffMs
          : Math.min(this.d.timeouts.registerBackoffBaseMs * 2 ** (failures - 1), this.d.timeouts.registerBackoffMaxMs);
        const fields = {
          err: describeError(err),
          status: err instanceof GitHubApiError ? err.status : undefined,
          hint: err instanceof GitHubApiError ? err.hint : undefined,
          waitMs,
          failures,
        };
        if (auth) this.log.error(fields, 'registration refused; check the credentials');
        else this.log.warn(fields, 'registration failed; backing off');
        try {
          await this.d.clock.sleep(waitMs, this.drainAc.signal);
        } catch {
          return undefined;
        }
      }
    }
  }

  /** Supervises the listener(s) of one registration until a job ended or the registration is spent. */
  private async serve(reg: Registration, policy: Policy): Promise<ServeOutcome> {
    const t = this.d.timeouts;
    const dirs = await this.d.prepareJobDirs(`${reg.name}-${randomBytes(3).toString('hex')}`);
    // Rewritten at every registration (and its manifest entry with it): whatever a job wrote there is gone.
    await writeRunnerEnv(
      this.d.slot,
      {
        ACTIONS_RUNNER_HOOK_JOB_STARTED: this.d.hooks.startedScript,
        ACTIONS_RUNNER_HOOK_JOB_COMPLETED: this.d.hooks.completedScript,
        PATH: this.d.runner.path ?? DEFAULT_PATH,
      },
      this.d.clock,
    );
    const env = buildListenerEnv({
      user: this.d.slot.user,
      dirs,
      hooks: this.d.hooks,
      ...(reg.jit !== undefined ? { jitConfig: reg.jit } : {}),
      ...(this.d.runner.path ? { path: this.d.runner.path } : {}),
      ...(this.d.runner.env ? { extra: this.d.runner.env } : {}),
    });
    if (reg.jit) this.secrets.add(reg.jit);
    // Taken on the verified-clean host, before any job code runs; persisted for a crash.
    await this.takeEngineInventory(policy);
    let restarts = 0;
    try {
      for (;;) {
        const sink = new JobTrackerSink(this.d.clock);
        this.tracker = sink;
        await this.clearEvents();
        const container = await this.d.processContainers?.create(`${reg.name}-${restarts}`).catch((err: unknown) => {
          this.log.warn({ err: describeError(err) }, 'no process container for the listener; relying on the uid sweep');
          return undefined;
        });
        if (container) this.containers.push(container);
        this.ps.dirty = true;
        this.ps.job = undefined;
        await this.transition('idle');
        const listener = await ListenerProcess.start({
          root: this.d.slot.runnerRoot,
          uid: this.d.slot.user.uid,
          gid: this.d.slot.user.gid,
          env,
          log: this.log.child({ component: 'listener', runner: reg.name }),
          clock: this.d.clock,
          onConsole: (e) => sink.console(e),
          onSpawn: (pid) => {
            void container?.add(pid);
          },
        });
        if (this.lastJobEndAt !== undefined) {
          const ms = this.d.clock.now() - this.lastJobEndAt;
          this.d.observer?.timeToReady?.(ms / 1000);
          await this.d.journal.append({ type: 'event', event: 'listener-started', at: this.iso(), detail: { runner: reg.name, sinceLastJobEndMs: ms } });
          this.lastJobEndAt = undefined;
        }
        this.log.info({ runner: reg.name, pid: listener.pid }, 'listener started');

        const exit = await this.superviseListener(listener, reg, policy, sink);
        this.d.observer?.listenerExited?.(exit.code);
        await this.collectRemainingEvents();
        const job = sink.job;
        if (job) return { job, exit, reason: 'job ended', failed: exit.code !== 0 };

        const code = exit.code;
        if (this.draining) return { exit, reason: `drained while idle (${this.drainReason})`, failed: false };
        if (sink.idleTimedOut) return { exit, reason: IDLE_TIMEOUT, failed: false };
        if (code === 7 || sink.versionDeprecated !== undefined) {
          // Older runners say it only on the console and exit 1 (or 2); either way no restart helps.
          const version = sink.versionDeprecated ?? 'unknown';
          return { exit, reason: `runner version ${version} deprecated (exit ${code ?? exit.signal})`, failed: true, versionDeprecated: version };
        }
        if (code === 3 || code === 4) {
          // Self-update before any job (contract §8): wait for update.finished, start again on the same JIT config.
          restarts += 1;
          const done = await this.waitForUpdateFinished();
          this.log.info({ code, updateFinished: done, restarts }, 'listener updated itself; starting it again');
          if (done) {
            // No job has run on this host since the last verified cleanup, so the new bin/ and
            // externals/ are the runner's own: record them, or the next check would call them tampered.
            await takeInstallManifest(this.d.slot, this.d.clock);
          }
          if (restarts > t.retryableRestartLimit) return { exit, reason: `self-update loop (${restarts} restarts)`, failed: true };
          continue;
        }
        if (code === 2) {
          restarts += 1;
          if (restarts > t.retryableRestartLimit) return { exit, reason: `retryable error ${restarts} times`, failed: true };
          this.log.warn({ restarts }, 'listener exited with a retryable error; restarting');
          try {
            await this.d.clock.sleep(t.retryableRestartDelayMs, this.drainAc.signal);
          } catch {
            return { exit, reason: 'drained during restart delay', failed: false };
          }
          continue;
        }
        if (code === 0) {
          return { exit, reason: sink.runnerGone ? 'registration removed on the server' : 'listener exited 0 without a job', failed: false };
        }
        const why =
          code === 5
            ? 'session conflict (exit 5)'
            : code === 1
              ? 'listener refused the registration (exit 1)'
              : `listener exited ${code ?? exit.signal}`;
        return { exit, reason: why, failed: true };
      }
    } finally {
      if (reg.jit) this.secrets.delete(reg.jit);
      this.tracker = undefined;
    }
  }

  /** Waits for the listener's exit while reacting to job start, drain, idle and job timeouts. */
  private async superviseListener(
    listener: ListenerProcess,
    reg: Registration,
    policy: Policy,
    sink: JobTrackerSink,
  ): Promise<ListenerExit> {
    const t = this.d.timeouts;
    const local = new AbortController();
    const exited = listener.exited.then((e) => {
      local.abort();
      return e;
    });
    const idleMs = policy.host.maxIdleMinutes !== null ? policy.host.maxIdleMinutes * 60_000 : undefined;
    try {
      // Phase 1: idle, until a job starts, the listener exits, a drain or the idle limit.
      const phase1 = await Promise.race([
        exited.then(() => 'exit' as const),
        sink.started.then(() => 'job' as const),
        abortable(this.drainAc.signal, local.signal).then(() => 'drain' as const),
        idleMs !== undefined ? this.d.clock.sleep(idleMs, local.signal).then(() => 'idle' as const, () => 'exit' as const) : never(),
      ]);
      if (phase1 === 'drain' || phase1 === 'idle') {
        if (phase1 === 'idle') sink.idleTimedOut = true;
        // Deregister first so no job is assigned while we stop (peers.md §4 item 4): 422 means a job just arrived.
        const outcome = await this.deleteRegistration(reg.id);
        if (outcome === 'busy') {
          this.log.info({ runner: reg.name }, 'a job was assigned while draining; letting it start');
          sink.idleTimedOut = false;
          await Promise.race([sink.started, exited]);
        } else {
          return listener.stop(t.listenerStopGraceMs);
        }
      }
      if (phase1 === 'exit' && !sink.job) return exited;
      if (!sink.job) await Promise.race([sink.started, exited]);
      if (!sink.job) return exited;

      // Phase 2: a job runs. Persist it, then wait for the exit, the job limit or a drain.
      this.currentJob = sink.job;
      this.ps.job = {
        key: `${reg.id}@${sink.job.startedAt}`,
        startedAt: new Date(sink.job.startedAt).toISOString(),
        listenerStartedAt: new Date(listener.startedAt).toISOString(),
        vars: sink.job.vars,
        ...(sink.job.name ? { name: sink.job.name } : {}),
        runner: { id: reg.id, name: reg.name },
      };
      await this.transition('job-running');
      if (this.d.runner.prefetch && !this.prefetchTask) this.prefetchTask = this.prefetch(policy);
      const jobLimitMs = policy.limits.maxJobMinutes * 60_000;
      this.maxJobMs = jobLimitMs;
      const phase2 = await Promise.race([
        exited.then(() => 'exit' as const),
        this.d.clock.sleep(jobLimitMs, local.signal).then(() => 'timeout' as const, () => 'exit' as const),
        abortable(this.drainAc.signal, local.signal).then(() => 'drain' as const),
      ]);
      if (phase2 === 'timeout') {
        this.log.warn({ runner: reg.name, maxJobMinutes: policy.limits.maxJobMinutes }, 'job exceeded its time limit; stopping the listener');
        sink.note('job exceeded limits.maxJobMinutes; listener stopped');
        return listener.stop(t.listenerStopGraceMs);
      }
      if (phase2 === 'drain') {
        await this.transition('draining');
        const graceMs =
          this.drainDeadlineAt !== undefined
            ? Math.max(0, Math.min(t.drainGraceMs, this.drainDeadlineAt - DRAIN_DEADLINE_MARGIN_MS - this.d.clock.now()))
            : t.drainGraceMs;
        const finished = await Promise.race([
          exited.then(() => true),
          this.d.clock.sleep(graceMs, local.signal).then(() => false, () => true),
        ]);
        if (!finished) {
          this.log.warn({ runner: reg.name }, 'drain grace over; cancelling the job');
          sink.note('drain grace period over; job cancelled');
          return listener.stop(t.listenerStopGraceMs);
        }
      }
      return exited;
    } finally {
      local.abort();
    }
  }

  /** Accounts for the ended listener: job record, cleanup, decision. */
  private async afterListener(reg: Registration, outcome: ServeOutcome, policy: Policy): Promise<Decision> {
    const { job, exit } = outcome;
    this.lastJobEndAt = exit.at;
    const stillOurs = this.ps.registrations.some((r) => r.id === reg.id);
    if (stillOurs && (!job || !job.completedSeen || exit.code !== 0)) {
      // The service removes an ephemeral runner after its job; anything else we delete ourselves.
      await this.deleteRegistration(reg.id);
    } else {
      this.forgetRegistration(reg.id);
    }
    this.ps.runner = undefined;
    this.currentRunner = undefined;
    const result = job ? jobResult(job, exit) : undefined;
    if (job) {
      this.ps.jobsServed += 1;
      this.jobsThisRun += 1;
      this.ps.consecutiveFailures = 0;
      // Everything the record needs, persisted before cleaning: a crash from here on still
      // produces this job's record (with its real result) at the next boot.
      this.ps.job = {
        key: this.ps.job?.key ?? `${reg.id}@${job.startedAt}`,
        startedAt: new Date(job.startedAt).toISOString(),
        listenerStartedAt: this.ps.job?.listenerStartedAt ?? new Date(job.startedAt).toISOString(),
        vars: job.vars,
        ...(job.name ? { name: job.name } : {}),
        runner: { id: reg.id, name: reg.name },
        endedAt: new Date(exit.at).toISOString(),
        result: result ?? 'unknown',
        exitCode: exit.code,
        exitSignal: exit.signal,
        counted: true,
      };
    } else if (outcome.failed) {
      this.ps.consecutiveFailures += 1;
    }
    await removeLocalConfig(this.d.slot.runnerRoot);
    const report = await this.clean(policy, job ? job.startedAt : undefined);
    await this.removeContainers();
    const decision = this.decideAfter(policy, report, result, !job && outcome.reason === IDLE_TIMEOUT, outcome.versionDeprecated);
    if (job) {
      const rec = buildJobRecord({
        key: this.ps.job?.key,
        runnerName: reg.name,
        runnerId: reg.id,
        vars: job.vars,
        jobName: job.name,
        startedAt: job.startedAt,
        endedAt: exit.at,
        exit,
        result: result ?? 'unknown',
        source: job.completedSeen ? 'console' : job.source,
        cleanup: report,
        notes: job.notes,
      });
      await this.d.journal.append({ ...rec, decision: decision.action, decisionReason: decision.reason });
      this.d.observer?.jobEnded?.(result ?? 'unknown', (exit.at - job.startedAt) / 1000);
      this.lastJob = {
        ...jobMetaFromVars(job.vars),
        ...(job.name ? { job: job.name } : {}),
        startedAt: new Date(job.startedAt).toISOString(),
        endedAt: new Date(exit.at).toISOString(),
        result: result ?? 'unknown',
        ...(report
          ? {
              cleanup: {
                clean: report.clean,
                readyMs: report.readyMs,
                removed: removedTotals(report),
                problems: report.verify.problems,
              },
            }
          : {}),
        decision: `${decision.action}: ${decision.reason}`,
      };
      this.log.info({ runner: reg.name, result, decision: decision.action, reason: decision.reason, readyMs: report?.readyMs }, 'job finished');
    } else {
      await this.d.journal.append({
        type: 'event',
        event: 'listener-ended-without-job',
        at: this.iso(),
        detail: {
          runner: reg.name,
          reason: outcome.reason,
          exitCode: exit.code,
          exitSignal: exit.signal,
          decision: decision.action,
          decisionReason: decision.reason,
        },
      });
      this.log.info({ runner: reg.name, reason: outcome.reason, code: exit.code }, 'listener ended without a job');
    }
    this.currentJob = undefined;
    this.ps.job = undefined;
    if (!job && outcome.failed && decision.action === 'reuse') {
      // Back off before registering again so a refused registration cannot become a hot loop.
      const waitMs = Math.min(
        this.d.timeouts.registerBackoffBaseMs * 2 ** Math.max(0, this.ps.consecutiveFailures - 1),
        this.d.timeouts.registerBackoffMaxMs,
      );
      await this.d.clock.sleep(waitMs, this.drainAc.signal).catch(() => {});
    }
    return decision;
  }

  /** One cleanup pass on its own bounded signal (never the shutdown signal: style.md rule 7). */
  private async clean(policy: Policy, jobStartedAt: number | undefined): Promise<CleanupReport | undefined> {
    await this.transition('cleaning');
    let report: CleanupReport | undefined;
    try {
      report = await this.d.cleanup({
        policy,
        ...(jobStartedAt !== undefined ? { jobStartedAt } : {}),
        ...(this.ps.engineBefore ? { engineBefore: this.ps.engineBefore } : {}),
        signal: AbortSignal.timeout(this.d.timeouts.cleanupTimeoutMs),
        beforeVerify: () => this.transition('verifying'),
      });
      this.d.observer?.cleanupReported?.(report);
    } catch (err) {
      this.log.error({ err: describeError(err) }, 'cleanup failed');
    }
    if (this.ps.state === 'cleaning') {
      // Verification never started: the host cannot be proven clean.
      return undefined;
    }
    await this.transition('deciding');
    return report;
  }

  private async recycle(policy: Policy, reason: string): Promise<AgentExit> {
    await this.transition('recycling');
    await this.discardPrefetched();
    await this.deleteStaleRegistrations(undefined);
    const recycler = this.d.recycler;
    if (!recycler || recycler.provider === 'none') {
      this.log.warn({ reason }, 'recycle requested but no recycle provider is configured; stopping');
      await this.d.journal.append({ type: 'event', event: 'recycle', at: this.iso(), detail: { reason, provider: 'none', ok: false } });
      return this.stop(`recycle (${reason}); no provider`);
    }
    const res = await recycler
      .recycle(
        { reason, team: policy.team, jobsServed: this.ps.jobsServed },
        AbortSignal.timeout(this.d.timeouts.cleanupTimeoutMs),
      )
      .catch((err: unknown) => ({ ok: false, provider: recycler.provider, detail: describeError(err), exitCode: undefined }));
    if (res.ok) this.d.observer?.recycled?.(reason, res.provider);
    else this.d.observer?.recycleFailed?.(res.provider);
    await this.d.journal.append({ type: 'event', event: 'recycle', at: this.iso(), detail: { reason, provider: res.provider, ok: res.ok, result: res.detail } });
    if (!res.ok) return this.quarantine(policy, `recycle failed: ${res.detail}`, true);
    // The host is being replaced: never serve another job on it.
    this.ps.dirty = true;
    if (TERMINATING_PROVIDERS.test(res.provider) && res.exitCode === undefined) {
      // The infrastructure ends this host from outside (pod deletion, ASG termination, poweroff).
      // Exiting now would let a supervisor (kubelet, systemd) start a fresh agent on a host that is
      // going away, which would register a runner there: wait for the end instead, bounded.
      await this.persist();
      this.log.info({ provider: res.provider, waitMs: this.d.timeouts.recycleWaitMs }, 'recycle signalled; waiting for the host to be stopped');
      await this.d.clock.sleep(this.d.timeouts.recycleWaitMs, this.drainAc.signal).catch(() => {});
    }
    return this.stop(`recycled (${reason})`, res.exitCode ?? 0);
  }

  /** A dirty host is never reused: recycle it if a provider can, otherwise stay quarantined (health 503) until stopped. */
  private async quarantine(policy: Policy, reason: string, recycleFailed = false): Promise<AgentExit> {
    this.ps.quarantineReason = reason;
    await this.transition('quarantined');
    await this.discardPrefetched();
    this.log.error({ reason }, 'host quarantined');
    await this.d.journal.append({ type: 'event', event: 'quarantine', at: this.iso(), detail: { reason } });
    if (!recycleFailed && this.d.recycler && this.d.recycler.provider !== 'none') {
      return this.recycle(policy, `quarantined: ${reason}`);
    }
    await abortable(this.drainAc.signal);
    return this.stop(`quarantined: ${reason}`, 0, true);
  }

  private async stop(reason: string, code = 0, keepState = false): Promise<AgentExit> {
    await this.discardPrefetched();
    // A registration requested before a crash that GitHub completed since: one more look before
    // going (what is still not found stays in the state for the next boot, within its window).
    if (this.ps.recheckNames?.length) await this.deleteStaleRegistrations(undefined);
    if (!keepState || this.ps.state !== 'quarantined') await this.transition('stopped');
    else await this.persist();
    this.log.info({ reason, code }, 'agent stopped');
    await this.d.journal.append({ type: 'event', event: 'stop', at: this.iso(), detail: { reason, code } });
    return { code, reason };
  }

  // ---------------------------------------------------------------------------------------------

  /** Registers the next runner in the background while a job runs; failures just mean no prefetch. */
  private async prefetch(policy: Policy): Promise<(Registration & { group: string | null }) | undefined> {
    const labels = unique([...this.d.runner.labels, ...policy.runner.labels]);
    const group = policy.runner.group ?? this.d.runner.group;
    const name = renderName(this.d.runner.name, this.d.hostname, this.ps.seq);
    this.ps.seq += 1;
    this.ps.pendingName = name;
    await this.persist();
    try {
      const groupId = await this.d.github.resolveRunnerGroup(group);
      const r = await this.d.github.generateJitConfig({ name, labels, runnerGroupId: groupId, workFolder: '_work' });
      this.ps.pendingName = undefined;
      this.ps.registrations.push({ id: r.runner.id, name });
      await this.persist();
      this.log.info({ runner: name, runnerId: r.runner.id }, 'next runner prefetched');
      return { id: r.runner.id, name, labels, jit: r.encodedJitConfig, group };
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'prefetch failed; will register after cleanup');
      return undefined;
    }
  }

  private async takePrefetched(): Promise<(Registration & { group: string | null }) | undefined> {
    const task = this.prefetchTask;
    this.prefetchTask = undefined;
    return task ? await task : undefined;
  }

  /** Deletes a prefetched registration that will not be used (the host is recycled or stops). */
  private async discardPrefetched(): Promise<void> {
    const pre = await this.takePrefetched();
    if (pre) await this.deleteRegistration(pre.id);
  }

  private async removeContainers(): Promise<void> {
    for (const c of this.containers.splice(0)) {
      await c.remove?.().catch((err: unknown) => this.log.warn({ err: describeError(err) }, 'could not remove a process container'));
    }
  }

  private async deleteRegistration(id: number): Promise<'deleted' | 'not-found' | 'busy' | 'failed'> {
    try {
      const outcome = await this.d.github.deleteRunner(id);
      if (outcome !== 'busy') this.forgetRegistration(id);
      await this.persist();
      if (outcome === 'busy') this.log.info({ runnerId: id }, 'registration busy (a job is assigned); not deleted yet');
      else this.log.info({ runnerId: id, outcome }, 'registration deleted');
      return outcome;
    } catch (err) {
      const mode = this.d.registration;
      // Token mode has a second way: `config.sh remove` with a remove token, while the runner root
      // still holds this registration. Never right after a job: what it left running (killed only by
      // the cleanup) could swap `.runner` and have config.sh delete another runner of the scope.
      if (mode?.mode === 'token' && !this.ps.job) {
        try {
          const dirs = await this.d.prepareJobDirs('config-remove');
          const removed = await mode.registrar.remove(id, { home: dirs.home, tmp: dirs.tmp });
          if (removed !== 'not-local') {
            this.forgetRegistration(id);
            await this.persist();
            this.log.info({ runnerId: id, outcome: removed, via: 'config.sh remove', deleteErr: describeError(err) }, 'registration deleted');
            return removed === 'removed' ? 'deleted' : 'not-found';
          }
        } catch (removeErr) {
          this.log.warn({ runnerId: id, err: describeError(removeErr) }, 'config.sh remove failed as well');
        }
      }
      this.log.warn({ runnerId: id, err: describeError(err) }, 'could not delete registration; will retry before the next registration');
      return 'failed';
    }
  }

  private forgetRegistration(id: number): void {
    this.ps.registrations = this.ps.registrations.filter((r) => r.id !== id);
  }

  /** Deletes registrations left by a crash (and a name registered just before one). No ghosts. */
  /** Deletes leftover registrations; returns the ids the service called busy (a job was assigned). */
  private async deleteStaleRegistrations(pendingName: string | undefined, keep: number[] = []): Promise<number[]> {
    const busy: number[] = [];
    const now = this.d.clock.now();
    // A registration request in flight when the agent died may be completed by GitHub after the
    // restart first looked for it: names not found are looked up again until RECHECK_WINDOW_MS.
    const lookups = [
      ...(pendingName ? [{ name: pendingName, until: new Date(now + RECHECK_WINDOW_MS).toISOString() }] : []),
      ...(this.ps.recheckNames ?? []).filter((r) => Date.parse(r.until) > now && r.name !== pendingName),
    ];
    const again: { name: string; until: string }[] = [];
    for (const entry of lookups) {
      try {
        const found = (await this.d.github.findRunnersByName(entry.name)).filter((r) => r.name === entry.name);
        for (const r of found) {
          if (!this.ps.registrations.some((x) => x.id === r.id)) this.ps.registrations.push({ id: r.id, name: r.name });
        }
        if (found.length > 0 && entry.name !== pendingName) this.log.warn({ runner: entry.name }, 'a registration requested before a crash appeared late; deleting it');
        if (found.length === 0) again.push(entry);
      } catch (err) {
        this.log.warn({ err: describeError(err), runner: entry.name }, 'could not look up a registration made before a crash');
        again.push(entry);
      }
    }
    if (pendingName) this.ps.pendingName = undefined;
    if (again.length > 0) this.ps.recheckNames = again;
    else delete this.ps.recheckNames;
    for (const r of this.ps.registrations.filter((x) => !keep.includes(x.id))) {
      for (let i = 0; i < this.d.timeouts.recoveryDeleteTries; i++) {
        const outcome = await this.deleteRegistration(r.id);
        if (outcome === 'busy' && !busy.includes(r.id)) busy.push(r.id);
        if (outcome === 'deleted' || outcome === 'not-found') break;
        await this.d.clock.sleep(this.d.timeouts.registerBackoffBaseMs * 2 ** i).catch(() => {});
      }
    }
    await this.persist();
    return busy;
  }

  private async waitForUpdateFinished(): Promise<boolean> {
    const file = path.join(this.d.slot.runnerRoot, 'update.finished');
    const deadline = this.d.clock.now() + this.d.timeouts.updateFinishedWaitMs;
    while (this.d.clock.now() < deadline) {
      try {
        await access(file);
        await rm(file, { force: true });
        return true;
      } catch {
        await this.d.clock.sleep(UPDATE_POLL_MS).catch(() => {});
      }
    }
    return false;
  }

  private onHookEvent(e: HookEvent): void {
    this.tracker?.hook(e);
    if (this.ps.job && this.tracker?.job) {
      // The metadata often arrives just after the job started: keep the persisted copy complete.
      this.ps.job.vars = this.tracker.job.vars;
      void this.persist().catch((err: unknown) => this.log.warn({ err: describeError(err) }, 'could not persist state'));
    }
  }

  private async clearEvents(): Promise<void> {
    for (const name of await readdir(this.d.hooks.eventsDir).catch(() => [] as string[])) {
      await rm(path.join(this.d.hooks.eventsDir, name), { force: true, recursive: true });
    }
  }

  /** Picks up hook reports the watcher has not delivered yet (the completed hook runs just before exit). */
  private async collectRemainingEvents(): Promise<void> {
    for (const e of await readEventDir(this.d.hooks.eventsDir, this.d.clock.now())) this.onHookEvent(e);
  }

  private async heartbeat(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.lastBeat = this.d.clock.now();
      try {
        await this.d.clock.sleep(this.d.timeouts.heartbeatMs, signal);
      } catch {
        return;
      }
    }
  }

  private async transition(to: AgentState): Promise<void> {
    const from = this.ps.state;
    if (from !== to || to === 'idle' || to === 'registering') {
      if (from !== to) assertTransition(from, to);
      this.ps.state = to;
      this.ps.since = this.iso();
      if (to !== 'quarantined') this.ps.quarantineReason = to === 'recycling' ? this.ps.quarantineReason : undefined;
      this.log.info({ from, to }, 'state');
      this.d.observer?.setState?.(to);
      this.d.observer?.setQuarantined?.(to === 'quarantined');
      this.d.observer?.jobsServedTotal?.(this.ps.jobsServed);
    }
    this.lastBeat = this.d.clock.now();
    await this.persist();
  }

  private persist(): Promise<void> {
    const snapshot = JSON.parse(JSON.stringify(this.ps)) as PersistedState;
    const next = this.persistQueue.then(() => this.store.save(snapshot));
    this.persistQueue = next.catch(() => undefined);
    return next;
  }

  private iso(): string {
    return new Date(this.d.clock.now()).toISOString();
  }
}

/** Providers after which the infrastructure stops this host itself (the agent waits for it). */
const TERMINATING_PROVIDERS = /^(aws-asg|gcp-mig|azure-vmss|kubernetes|shutdown)$/;

/**
 * How long a registration name requested before a crash is looked for again (at each job
 * boundary). GitHub answers or drops a request within its own timeout, well under a minute; ten
 * covers a slow restart and a long queue without keeping the extra lookup for long.
 */
const RECHECK_WINDOW_MS = 10 * 60_000;

/** Job records read back at recovery to find one already written (one job per registration: a few suffice). */
const RECENT_RECORDS = 20;

/** Slack beyond a state's own bound before the loop counts as stuck (slow disks, a loaded host). */
const STUCK_MARGIN_MS = 5 * 60_000;

/** The reason of a registration that waited longer than host.maxIdleMinutes. */
const IDLE_TIMEOUT = 'idle timeout';

/** A busy drain with a deadline (spot notice) ends this long before it, for the post steps and cleanup. */
export const DRAIN_DEADLINE_MARGIN_MS = 20_000;

/** How often to look for update.finished after a self-update exit. */
const UPDATE_POLL_MS = 250;

/** The reason a drain aborts waits with. */
class DrainSignal extends Error {
  override name = 'AbortError';
  constructor(readonly reason: string) {
    super(`draining: ${reason}`);
  }
}

/** Collects what one listener's console and hooks say about its job. */
class JobTrackerSink {
  job?: TrackedJob;
  runnerGone = false;
  idleTimedOut = false;
  versionDeprecated?: string;
  readonly started: Promise<void>;
  private resolveStarted!: () => void;
  constructor(private readonly clock: Clock) {
    this.started = new Promise((r) => (this.resolveStarted = r));
  }

  private begin(source: 'hook' | 'console'): TrackedJob {
    if (!this.job) {
      this.job = { startedAt: this.clock.now(), vars: {}, source, completedSeen: false };
      this.resolveStarted();
    }
    return this.job;
  }

  console(e: ConsoleEvent): void {
    if (e.kind === 'job-started') this.begin('console').name = e.jobName;
    else if (e.kind === 'job-completed') {
      const j = this.begin('console');
      j.name ??= e.jobName;
      j.result = e.result;
      j.completedSeen = true;
    } else if (e.kind === 'runner-gone') this.runnerGone = true;
    else if (e.kind === 'version-deprecated') this.versionDeprecated = e.version;
  }

  hook(e: HookEvent): void {
    const j = this.begin('hook');
    j.vars = { ...j.vars, ...e.vars };
  }

  note(text: string): void {
    if (this.job) (this.job.notes ??= []).push(text);
  }
}

/** The job's result: the listener's word when it printed one, else what its exit says. */
function jobResult(job: TrackedJob, exit: ListenerExit): string {
  if (job.result) return job.result;
  if (exit.signal === 'SIGKILL' || exit.code === null) return 'crashed';
  return exit.code === 0 ? 'unknown' : 'crashed';
}

function removedTotals(report: CleanupReport): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of report.steps) {
    for (const [kind, r] of Object.entries(s.removed)) out[kind] = (out[kind] ?? 0) + r.count;
  }
  return out;
}

/** Renders the runner name template: {hostname}, {seq}, {random}. */
export function renderName(template: string, hostname: string, seq: number): string {
  return template
    .replaceAll('{hostname}', hostname)
    .replaceAll('{seq}', String(seq))
    .replaceAll('{random}', randomBytes(3).toString('hex'))
    .slice(0, 64);
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function unique(xs: string[]): string[] {
  return [...new Set(xs)];
}

/**
 * Resolves when `signal` aborts. With `until`, the listener is removed once `until` aborts, so a
 * long-lived signal (the drain) does not collect one listener per job.
 */
function abortable(signal: AbortSignal, until?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const onAbort = (): void => resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    until?.addEventListener('abort', () => signal.removeEventListener('abort', onAbort), { once: true });
  });
}

function never(): Promise<never> {
  return new Promise(() => {});
}

export type { JobRecordInput };
