/**
 * Supervision of the listener(s) of one registration: the per-job directories and environment,
 * the guards' preparation, the listener start (in its own process container), the idle and busy
 * phases (job start, idle limit, job limit, drain with its grace), and the restarts the exit-code
 * table asks for. Ends with how the registration ended (ServeOutcome); the settle path takes over.
 */
import { randomBytes } from 'node:crypto';
import { describeError } from '../lib/errors.js';
import type { GuardJob } from '../lib/job-guard.js';
import type { Policy } from '../policy/types.js';
import type { ListenerExit } from '../runner/listener.js';
import { buildListenerEnv } from '../runner/env.js';
import type { HookEvent } from '../runner/hooks.js';
import type { AgentCore } from './core.js';
import { abortable } from './drain.js';
import { classifyListenerExit } from './exit-codes.js';
import type { GuardCalls, GuardRefusal } from './guards.js';
import { JobTracker, type TrackedJob } from './job-tracker.js';
import type { Registration, RunnerRegistrar } from './registrar.js';
import type { RegistrationLedger } from './registrations.js';
import type { ListenerHandle } from './runner-host.js';

/** How one registration's listener(s) ended. */
export interface ServeOutcome {
  /** Set when the listener confirmed a job on this registration. */
  job?: TrackedJob;
  exit: ListenerExit;
  /** Why the registration ended without a job, for the journal. */
  reason: string;
  /** The listener failed (counts towards the crash loop). */
  failed: boolean;
  /** The service refused the runner's version (exit 7, or its console line): the version. */
  versionDeprecated?: string;
  idleTimedOut?: boolean;
  /** A guard found the host unfit for the policy: no listener was started. */
  refused?: GuardRefusal;
  /** Notes from the guards' preparation, for the job's record. */
  notes?: string[];
  /** Hook reports claimed a job the listener never confirmed: their (bounded) metadata. */
  unconfirmedHookVars?: Record<string, string>;
  /** Hook reports beyond the per-listener cap, ignored. */
  ignoredHookReports?: number;
  /** The host could not set a listener up (no space for the job directories...): recycled, not retried. */
  setupProblem?: string;
}

/**
 * A busy drain with a deadline (spot notice) stops the listener this long plus the stop grace
 * (the worker's shutdown) before it: time for the cleanup, which does what the skipped post steps
 * would have (job containers, the workspace's credentials).
 */
export const DRAIN_DEADLINE_MARGIN_MS = 20_000;

/** How often to look for update.finished after a self-update exit. */
const UPDATE_POLL_MS = 250;

/** Supervises the listeners of one registration at a time. */
export class ListenerSupervisor {
  private tracker: JobTracker | undefined;
  /** Process containers of the current registration's listeners, removed after its cleanup. */
  private containers: { remove?(): Promise<void> }[] = [];

  constructor(
    private readonly core: AgentCore,
    private readonly ledger: RegistrationLedger,
    private readonly registrar: RunnerRegistrar,
    private readonly guards: GuardCalls,
  ) {}

  /** A hook report: metadata for the job the listener confirmed (never a job by itself). */
  async onHook(e: HookEvent): Promise<void> {
    const t = this.tracker;
    if (!t) return;
    t.hook(e);
    if (this.core.ctx.s.job && t.job) {
      const vars = t.job.vars;
      // The metadata often arrives just after the job started: keep the persisted copy complete.
      await this.core.ctx.update((s) => {
        if (s.job) s.job.vars = vars;
      });
    }
  }

  /** Removes the process containers of the last registration (after its cleanup). */
  async removeContainers(): Promise<void> {
    for (const c of this.containers.splice(0)) {
      await c.remove?.().catch((err: unknown) => this.core.log.warn({ err: describeError(err) }, 'could not remove a process container'));
    }
  }

  /** Runs the listener(s) of `reg` until a job ended or the registration is spent. */
  async serve(reg: Registration, policy: Policy): Promise<ServeOutcome> {
    const { d, host, live } = this.core;
    const key = `${reg.name}-${randomBytes(3).toString('hex')}`;
    const dirs = await d.prepareJobDirs(key);
    // Rewritten at every registration (and its manifest entry with it): whatever a job wrote there is gone.
    await host.writeRunnerEnv();
    const prepared = await this.prepareGuards(key, dirs.root, policy);
    if ('outcome' in prepared) return prepared.outcome;
    const env = buildListenerEnv({
      user: d.slot.user,
      dirs,
      hooks: d.hooks,
      ...(reg.jit !== undefined ? { jitConfig: reg.jit } : {}),
      ...(d.runner.path ? { path: d.runner.path } : {}),
      extra: { ...d.runner.env, ...prepared.env },
    });
    if (reg.jit) live.secrets.add(reg.jit);
    // Taken on the verified-clean host, before any job code runs; persisted for a crash.
    await takeEngineInventory(this.core, policy);
    let restarts = 0;
    try {
      for (;;) {
        const tracker = new JobTracker(d.clock);
        this.tracker = tracker;
        const listener = await this.start(reg, restarts, env, tracker);
        const exit = await this.supervise(listener, reg, policy, tracker);
        d.observer?.listenerExited?.(exit.code);
        if (tracker.stoppedBusy) tracker.note(shutdownNote(tracker));
        const verdict = classifyListenerExit({
          code: exit.code,
          signal: exit.signal,
          job: tracker.job !== undefined,
          draining: this.core.drain.draining,
          drainReason: this.core.drain.reason,
          idleTimedOut: tracker.idleTimedOut,
          ...(tracker.versionDeprecated !== undefined ? { versionDeprecated: tracker.versionDeprecated } : {}),
          runnerGone: tracker.runnerGone,
          updateScript: tracker.updateScript,
          restarts,
          restartLimit: d.timeouts.retryableRestartLimit,
        });
        const extra = {
          ...(prepared.notes.length > 0 ? { notes: prepared.notes } : {}),
          ...(tracker.ignoredReports > 0 ? { ignoredHookReports: tracker.ignoredReports } : {}),
          ...(!tracker.job && tracker.hookClaimedStart ? { unconfirmedHookVars: { ...tracker.reportedVars } } : {}),
        };
        if (verdict.waitForUpdate) {
          // Exit 3/4: update.sh is still replacing bin/ and externals/ (docs/runner-contract.md §6),
          // also after a job. Nothing may clean or restart the installation before it has finished.
          const done = await this.waitForUpdateFinished();
          this.core.log.info({ code: exit.code, updateFinished: done, afterJob: tracker.job !== undefined }, 'listener updated itself');
          // Without a job the new bin/ and externals/ are what update.sh installed (every process of
          // the runner user was stopped before this listener): recorded, or the next check would call
          // them tampered. After a job nothing is recorded: the runner copies the new version into
          // bin.<v>, externals.<v> and the root's scripts before it waits for the job
          // (SelfUpdaterV2.cs), so the job could rewrite all of it. The installation check then finds
          // the update and the host is not reused (docs/hostile-jobs.md, "the runner's self-update").
          const left = done && !tracker.job ? await host.recordInstall() : [];
          if (left.length > 0)
            this.core.log.warn({ differences: left.slice(0, 10) }, 'installation changed beyond the self-update; not recorded');
          if (tracker.job) {
            this.core.log.warn({ code: exit.code }, 'runner self-update staged while a job ran: not recorded, the host is not reused');
            tracker.note(
              `runner self-update after the job (exit ${exit.code}): ${!done ? 'update.finished never came' : "staged while the job ran (its files were the job's to change): not recorded, the host is not reused"}`,
            );
          }
        }
        // An ephemeral registration is spent once a job ran: never a restart on it.
        if (verdict.action === 'job-ended' && tracker.job)
          return { job: tracker.job, exit, reason: 'job ended', failed: verdict.failed, ...extra };
        if (verdict.action === 'job-ended') throw new Error('unreachable: a job verdict without a job');
        if (verdict.action === 'end') {
          return {
            exit,
            reason: verdict.reason,
            failed: verdict.failed,
            ...(verdict.versionDeprecated !== undefined ? { versionDeprecated: verdict.versionDeprecated } : {}),
            ...(tracker.idleTimedOut ? { idleTimedOut: true } : {}),
            ...extra,
          };
        }
        restarts = verdict.restarts;
        if (verdict.delay) {
          this.core.log.warn({ restarts }, 'listener exited with a retryable error; restarting');
          try {
            await d.clock.sleep(d.timeouts.retryableRestartDelayMs, this.core.drain.signal);
          } catch {
            return { exit, reason: 'drained during restart delay', failed: false, ...extra };
          }
        }
      }
    } finally {
      if (reg.jit) live.secrets.delete(reg.jit);
      this.tracker = undefined;
    }
  }

  /**
   * Persists the guard job (a restarted agent releases it) and prepares every guard. A refusal or
   * a failure ends the registration before any listener starts.
   */
  private async prepareGuards(
    key: string,
    dir: string,
    policy: Policy,
  ): Promise<{ env: Record<string, string>; notes: string[] } | { outcome: ServeOutcome }> {
    if (this.guards.count === 0) return { env: {}, notes: [] };
    const { d, ctx, log } = this.core;
    const job: GuardJob = { key, dir, user: d.slot.user, runnerRoot: d.slot.runnerRoot, stateDir: d.slot.stateDir };
    await ctx.update((s) => {
      s.guardJob = job;
      s.dirty = true;
    });
    const noListener = (): ListenerExit => ({ code: null, signal: null, at: d.clock.now() });
    try {
      const r = await this.guards.prepare(job, policy, AbortSignal.timeout(d.timeouts.cleanupTimeoutMs));
      if ('guard' in r) {
        log.error({ guard: r.guard, err: r.message, fix: r.fix }, 'a job guard found the host unfit for the policy');
        return { outcome: { exit: noListener(), reason: `guard ${r.guard} unfit: ${r.message}`, failed: false, refused: r } };
      }
      return r;
    } catch (err) {
      log.warn({ err: describeError(err) }, 'a job guard could not prepare; this registration is given up');
      return { outcome: { exit: noListener(), reason: describeError(err), failed: true } };
    }
  }

  private async start(reg: Registration, restarts: number, env: Record<string, string>, tracker: JobTracker): Promise<ListenerHandle> {
    const { d, ctx, host, live, log } = this.core;
    const container = await d.processContainers?.create(`${reg.name}-${restarts}`).catch((err: unknown) => {
      log.warn({ err: describeError(err) }, 'no process container for the listener; relying on the uid sweep');
      return undefined;
    });
    if (container) this.containers.push(container);
    await ctx.transition('idle', (s) => {
      s.dirty = true;
      s.job = undefined;
    });
    const listener = await host.startListener({
      name: reg.name,
      env,
      onConsole: (e) => tracker.console(e),
      onSpawn: (pid) => {
        void container?.add(pid);
      },
    });
    if (live.lastJobEndAt !== undefined) {
      const ms = d.clock.now() - live.lastJobEndAt;
      d.observer?.timeToReady?.(ms / 1000);
      await this.core.journal.append({
        type: 'event',
        event: 'listener-started',
        at: this.core.iso(),
        detail: { runner: reg.name, sinceLastJobEndMs: ms },
      });
      live.lastJobEndAt = undefined;
    }
    log.info({ runner: reg.name, pid: listener.pid }, 'listener started');
    return listener;
  }

  /** Waits for the listener's exit while reacting to job start, drain, idle and job timeouts. */
  private async supervise(listener: ListenerHandle, reg: Registration, policy: Policy, tracker: JobTracker): Promise<ListenerExit> {
    const { d, ctx, drain, live, log } = this.core;
    const t = d.timeouts;
    const local = new AbortController();
    const exited = listener.exited.then((e) => {
      local.abort();
      return e;
    });
    const idleMs = policy.host.maxIdleMinutes !== null ? policy.host.maxIdleMinutes * 60_000 : undefined;
    try {
      // Phase 1: idle, until the listener confirms a job, exits, a drain or the idle limit.
      const phase1 = await Promise.race([
        exited.then(() => 'exit' as const),
        tracker.started.then(() => 'job' as const),
        abortable(drain.signal, local.signal).then(() => 'drain' as const),
        idleMs !== undefined
          ? d.clock.sleep(idleMs, local.signal).then(
              () => 'idle' as const,
              () => 'exit' as const,
            )
          : never(),
      ]);
      if (phase1 === 'drain' || phase1 === 'idle') {
        if (phase1 === 'idle') tracker.idleTimedOut = true;
        // Deregister first so no job is assigned while we stop: 422 (busy) means a job just arrived.
        const outcome = await this.ledger.delete(reg.id);
        if (outcome !== 'busy') return await listener.stop(t.listenerStopGraceMs);
        log.info({ runner: reg.name }, 'a job was assigned while draining; letting it start');
        tracker.idleTimedOut = false;
        await Promise.race([tracker.started, exited]);
      }
      if (!tracker.job) await Promise.race([tracker.started, exited]);
      if (!tracker.job) return await exited;

      // Phase 2: a job runs. Persist it, then wait for the exit, the job limit or a drain.
      const job = tracker.job;
      live.currentJob = job;
      await ctx.transition('job-running', (s) => {
        s.job = {
          key: `${reg.id}@${job.startedAt}`,
          startedAt: new Date(job.startedAt).toISOString(),
          listenerStartedAt: new Date(listener.startedAt).toISOString(),
          vars: job.vars,
          ...(job.name ? { name: job.name } : {}),
          runner: { id: reg.id, name: reg.name },
        };
      });
      this.registrar.jobStarted(policy);
      const jobLimitMs = policy.limits.maxJobMinutes * 60_000;
      live.maxJobMs = jobLimitMs;
      const phase2 = await Promise.race([
        exited.then(() => 'exit' as const),
        d.clock.sleep(jobLimitMs, local.signal).then(
          () => 'timeout' as const,
          () => 'exit' as const,
        ),
        abortable(drain.signal, local.signal).then(() => 'drain' as const),
      ]);
      if (phase2 === 'timeout') {
        log.warn({ runner: reg.name, maxJobMinutes: policy.limits.maxJobMinutes }, 'job exceeded its time limit; stopping the listener');
        tracker.note('job exceeded limits.maxJobMinutes; listener stopped');
        return await stopBusy(listener, tracker, t.listenerStopGraceMs);
      }
      if (phase2 === 'drain') {
        await ctx.transition('draining');
        const graceMs =
          drain.deadlineAt !== undefined
            ? Math.max(0, Math.min(t.drainGraceMs, drain.deadlineAt - DRAIN_DEADLINE_MARGIN_MS - t.listenerStopGraceMs - d.clock.now()))
            : t.drainGraceMs;
        const finished = await Promise.race([
          exited.then(() => true),
          d.clock.sleep(graceMs, local.signal).then(
            () => false,
            () => true,
          ),
        ]);
        if (!finished) {
          log.warn({ runner: reg.name }, 'drain grace over; cancelling the job');
          tracker.note('drain grace period over; job cancelled');
          return await stopBusy(listener, tracker, t.listenerStopGraceMs);
        }
      }
      return await exited;
    } finally {
      local.abort();
    }
  }

  private async waitForUpdateFinished(): Promise<boolean> {
    const { d, host } = this.core;
    const deadline = d.clock.now() + d.timeouts.updateFinishedWaitMs;
    while (d.clock.now() < deadline) {
      if (await host.takeUpdateFinished().catch(() => false)) return true;
      await d.clock.sleep(UPDATE_POLL_MS).catch(() => {});
    }
    return false;
  }
}

/**
 * Stops a listener that runs a job. Its job's record then keeps the result the listener's console
 * gave (Canceled), and a note gives GitHub's (Failed: a runner shutdown fails the job and skips
 * every post step and the completed hook; docs/runner-contract.md §3, §4).
 */
async function stopBusy(listener: ListenerHandle, tracker: JobTracker, graceMs: number): Promise<ListenerExit> {
  tracker.stoppedBusy = true;
  return await listener.stop(graceMs);
}

/** The note of a job whose listener the agent stopped (after the last hook reports were read). */
function shutdownNote(tracker: JobTracker): string {
  return (
    `runner shut down during the job: result ${tracker.job?.result ?? 'unknown'} as the listener reported it; GitHub records the job as Failed. ` +
    `Post steps are skipped after a shutdown (${tracker.hookCompleted ? 'yet a job-completed hook reported' : 'no job-completed hook report'}): the cleanup removes what they would have`
  );
}

function never(): Promise<never> {
  return new Promise(() => {});
}

/** Records what the container engine holds now as not the job's (persisted for a crash). */
export async function takeEngineInventory(core: AgentCore, policy: Policy): Promise<void> {
  const { d, ctx, log } = core;
  if (!policy.cleanup.containers.enabled || !d.engineInventory) return;
  const inv = await d.engineInventory(policy).catch((err: unknown) => {
    log.warn({ err: describeError(err) }, 'could not list the container engine; falling back to creation times');
    return undefined;
  });
  await ctx.update((s) => {
    if (inv) s.engineBefore = inv;
    else delete s.engineBefore;
  });
}
