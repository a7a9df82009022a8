/**
 * The listener's message loop once its session exists (actions/runner `Runner.Listener/Runner.cs`
 * RunAsync). It keeps polling while a job runs, as the real one does, so that a refresh (self-update)
 * message can arrive during the job:
 * - update in progress: wait for the poll or the update; the update waits for the job to end, then
 *   the listener exits 3 (4 in single-job mode) with its local config kept, whether or not a job ran;
 * - single-job mode with its job received: wait for the poll or the job; the job's end exits 0 (or
 *   100 + result with ACTIONS_RUNNER_RETURN_JOB_RESULT_FOR_HOSTED), an ephemeral runner deleting
 *   its config files;
 * - a job or update message while an update runs or the single job was received is ignored;
 * - "runner not found" while an update waits for a job whose worker has exited: the update goes
 *   first (exit 3/4, update.sh started). That 404 is the service removing the spent ephemeral
 *   registration on the completion this listener reported; in the runner the worker reports it and
 *   the updater starts update.sh as soon as the dispatch ends, with no network step in between.
 * On every way out the running job is cancelled and awaited without deadline (JobDispatcher.ShutdownAsync).
 */
import type { Clock } from '../../lib/clock.js';
import { isConnectError, type BrokerClient, type BrokerMessage } from './broker.js';
import { formatU } from './diag.js';
import { dispatchJob, type Dispatch, type JobOutcome } from './dispatcher.js';
import { ReturnCode, resultToExitCode } from './results.js';
import { SimulatedCrashError, type RunContext } from './run.js';
import { selfUpdate } from './update.js';
import path from 'node:path';

/** How the loop ended: the exit code and what the caller still has to do. */
export interface LoopOutcome {
  code: number;
  /** Delete the session (skipped after "no longer exists"). */
  deleteSession: boolean;
  /** Delete `.runner`/`.credentials` (ephemeral job done, or the registration is gone). */
  deleteConfig: boolean;
}

/** Sleeps `ms`; false when `signal` aborted first. */
export async function sleepUnlessShutdown(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await clock.sleep(ms, signal);
    return true;
  } catch {
    return false;
  }
}

type Settled = { ok: true; msg: BrokerMessage } | { ok: false; err: unknown };
type LoopEvent = { kind: 'poll'; r: Settled } | { kind: 'update'; ok: boolean } | { kind: 'job'; outcome: JobOutcome };

/** One session's message loop. */
export class MessageLoop {
  private job: Dispatch | undefined;
  private update: Promise<boolean> | undefined;
  private connectError = false;

  constructor(
    private readonly ctx: RunContext,
    private readonly broker: BrokerClient,
    private readonly sessionId: string,
  ) {}

  /** Runs until the listener must exit. */
  async run(): Promise<LoopOutcome> {
    const { ctx } = this;
    const pollAc = new AbortController();
    const onShutdown = (): void => pollAc.abort();
    ctx.shutdown.addEventListener('abort', onShutdown, { once: true });
    if (ctx.shutdown.aborted) pollAc.abort();
    let poll: Promise<Settled> | undefined;
    let runOnceJobReceived = false;
    const stopPolling = async (): Promise<void> => {
      pollAc.abort();
      await poll;
    };
    try {
      while (!ctx.shutdown.aborted) {
        poll ??= this.broker.getMessage(this.sessionId, pollAc.signal).then(
          (msg): Settled => ({ ok: true, msg }),
          (err: unknown): Settled => ({ ok: false, err }),
        );
        const racers: Array<Promise<LoopEvent>> = [poll.then((r) => ({ kind: 'poll', r }))];
        if (this.update) racers.push(this.update.then((ok) => ({ kind: 'update', ok })));
        else if (runOnceJobReceived && this.job) racers.push(this.job.done.then((outcome) => ({ kind: 'job', outcome })));
        const ev = await Promise.race(racers);

        if (ev.kind === 'update') {
          this.update = undefined;
          if (!ev.ok) continue;
          await stopPolling();
          return this.updateExit('stop message queue looping');
        }
        if (ev.kind === 'job') {
          ctx.trace.info('Runner', 'Job has finished at backend, the runner will exit since it is running under onetime use mode.');
          await stopPolling();
          const code = ctx.returnJobResult ? resultToExitCode(ev.outcome.result) : ReturnCode.Success;
          return { code, deleteSession: true, deleteConfig: ctx.settings.ephemeral === true };
        }
        poll = undefined;
        if (!ev.r.ok) {
          if (ctx.shutdown.aborted) break;
          if (!isConnectError(ev.r.err)) throw ev.r.err;
          if (!this.connectError) {
            ctx.term.writeError(
              `${formatU(ctx.clock.now())}: Runner connect error: ${(ev.r.err as Error).message}. Retrying until reconnected.`,
            );
            this.connectError = true;
          }
          if (!(await sleepUnlessShutdown(ctx.clock, ctx.timings.reconnectDelayMs, ctx.shutdown))) break;
          continue;
        }
        if (this.connectError) {
          ctx.term.writeLine(`${formatU(ctx.clock.now())}: Runner reconnected.`);
          this.connectError = false;
        }
        if (ev.r.msg.type === 'runnerNotFound' && this.update && this.job?.workerExited) {
          // The spent registration's 404 answers the completion this listener reported itself
          // (the real worker reports it before exiting). In the runner the updater's continuation
          // starts update.sh the moment the dispatch ends, before the loop runs again: it goes first.
          await this.job.done;
          const updating = await this.update;
          this.update = undefined;
          if (updating) return this.updateExit('the job is done and update.sh started before the removal was seen');
        }
        const exit = await this.handle(ev.r.msg, runOnceJobReceived);
        if (exit) return exit;
        if (ev.r.msg.type === 'job' && ctx.runOnce && this.job) runOnceJobReceived = true;
      }
      return { code: ReturnCode.Success, deleteSession: true, deleteConfig: false };
    } finally {
      ctx.shutdown.removeEventListener('abort', onShutdown);
      pollAc.abort();
      if (this.job) {
        // JobDispatcher.ShutdownAsync: cancel the running job and wait for the worker, no deadline
        this.job.cancel(ctx.shutdown.aborted ? 'shutdown' : 'server');
        await this.job.done;
      }
    }
  }

  /** Exit 3 (4 in single-job mode) for an update ready to apply: the local config is kept. */
  private updateExit(why: string): LoopOutcome {
    const { ctx } = this;
    ctx.trace.info(
      'Runner',
      `Auto update task finished at backend, an runner update is ready to apply exit the current runner instance (${why}).`,
    );
    return { code: ctx.runOnce ? ReturnCode.RunOnceRunnerUpdating : ReturnCode.RunnerUpdating, deleteSession: true, deleteConfig: false };
  }

  /** Acts on one message; returns how to exit, or undefined to keep looping. */
  private async handle(msg: BrokerMessage, runOnceJobReceived: boolean): Promise<LoopOutcome | undefined> {
    const { ctx } = this;
    switch (msg.type) {
      case 'none':
        return undefined;
      case 'runnerNotFound':
        ctx.trace.info('Runner', 'Runner registration no longer exists while retrieving messages.');
        ctx.term.writeError('The runner no longer exists on the server. Cleaning up local configuration.');
        return { code: ReturnCode.Success, deleteSession: false, deleteConfig: true };
      case 'deprecated':
        // Program.cs: AccessDeniedException with ErrorCode 1
        ctx.term.writeError(`An error occurred: ${msg.message}`);
        ctx.trace.error('Runner', `AccessDeniedException: ${msg.message}`);
        return {
          code: ctx.returnVersionDeprecated ? ReturnCode.RunnerVersionDeprecated : ReturnCode.TerminatedError,
          deleteSession: true,
          deleteConfig: false,
        };
      case 'crash':
        throw new SimulatedCrashError('Simulated unhandled exception requested by the fake GitHub service.');
      case 'update':
        if (this.update) {
          ctx.trace.info('Runner', 'Refresh message received, skip autoupdate since a previous autoupdate is already running.');
          return undefined;
        }
        ctx.trace.info('Runner', `Refresh message received, target version ${msg.version}, kick-off selfupdate background process.`);
        this.update = selfUpdate({
          root: ctx.root,
          workDir: path.resolve(ctx.root, ctx.settings.workFolder || '_work'),
          currentVersion: ctx.version,
          targetVersion: msg.version,
          term: ctx.term,
          trace: ctx.trace,
          listenerPid: process.pid,
          waitForJob: async () => {
            await this.job?.done;
          },
          pollSeconds: ctx.timings.updatePollMs / 1000,
          settleSeconds: ctx.timings.updateSettleMs / 1000,
          now: () => ctx.clock.now(),
        });
        return undefined;
      case 'job':
        if (this.update || runOnceJobReceived) {
          ctx.trace.info('Runner', `Skip message deletion for job request message '${msg.job.jobId}'.`);
          return undefined;
        }
        // the service sends one job at a time; a second one waits for the first
        if (this.job) await this.job.done;
        this.job = dispatchJob(ctx, this.broker, msg.job);
        return undefined;
      default:
        ctx.trace.info('Runner', `Ignoring message: ${JSON.stringify(msg.raw)}`);
        return undefined;
    }
  }
}
