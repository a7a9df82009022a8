/**
 * One job through the worker, as the listener's JobDispatcher runs it (actions/runner
 * `Runner.Listener/JobDispatcher.cs` RunAsync):
 * - the first lock renewal fails: the job is Abandoned and no worker starts;
 * - the worker ends by itself: the console and the completion carry its result (exit 100 + result);
 * - a cancel (runner shutdown, a cancel from the server, the listener shutting its dispatcher
 *   down): the worker is told why (RunnerShutdown or CancelRequest) and the dispatcher waits for it
 *   with no deadline. The console then says Canceled, while the
 *   job records the worker's own result (Failed after a runner shutdown): in the broker flow the
 *   worker completes the job itself, the listener only prints.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { waitForChild } from '../../lib/process.js';
import type { BrokerClient, SimJob } from './broker.js';
import { formatU } from './diag.js';
import { exitCodeToResult, type TaskResult } from './results.js';
import type { RunContext } from './run.js';
import type { CancelReason, WorkerCancelMessage, WorkerJobMessage } from './worker-channel.js';
import { sleepUnlessShutdown } from './message-loop.js';

/** How a job ended, as the listener saw it. */
export interface JobOutcome {
  /** What the console printed: Canceled after any cancel, else the worker's result. */
  result: TaskResult;
  /** A runner shutdown cut the job short. */
  byShutdown: boolean;
}

/** A job being run. */
export interface Dispatch {
  done: Promise<JobOutcome>;
  /** The worker has exited: what is left is the listener's report of the completion. */
  readonly workerExited: boolean;
  /** Cancels the job (the dispatcher's own shutdown sends a plain cancel). */
  cancel(reason: CancelReason): void;
}

/** Starts one job; the returned promise settles when the worker has exited and the job is completed. */
export function dispatchJob(ctx: RunContext, broker: BrokerClient, job: SimJob): Dispatch {
  let cancelHook: (reason: CancelReason) => void = () => undefined;
  let pendingCancel: CancelReason | undefined;
  let workerExited = false;
  const done = run(
    ctx,
    broker,
    job,
    (send) => {
      cancelHook = send;
      if (pendingCancel) send(pendingCancel);
    },
    () => {
      workerExited = true;
    },
  );
  return {
    done,
    get workerExited() {
      return workerExited;
    },
    cancel(reason) {
      pendingCancel ??= reason;
      cancelHook(reason);
    },
  };
}

async function run(
  ctx: RunContext,
  broker: BrokerClient,
  job: SimJob,
  onCancelReady: (send: (reason: CancelReason) => void) => void,
  onWorkerExit: () => void,
): Promise<JobOutcome> {
  const { term, trace, clock, shutdown } = ctx;
  const ts = (): string => formatU(clock.now());
  term.writeLine(`${ts()}: Running job: ${job.displayName}`);
  trace.info('JobDispatcher', `Job request ${job.requestId} for plan ${job.planId} job ${job.jobId} received.`);

  const finish = async (shown: TaskResult, recorded: TaskResult, exitCode: number): Promise<void> => {
    term.writeLine(`${ts()}: Job ${job.displayName} completed with result: ${shown}`);
    try {
      await broker.completeJob(job.jobId, recorded, exitCode);
    } catch (err) {
      trace.warn('JobDispatcher', `Failed to complete job request: ${(err as Error).message}`);
    }
  };

  let firstRenew: boolean;
  try {
    firstRenew = await broker.renewJob(job.jobId, shutdown);
  } catch (err) {
    trace.warn('JobDispatcher', `First job lock renewal failed: ${(err as Error).message}`);
    firstRenew = false;
  }
  if (!firstRenew) {
    trace.info('JobDispatcher', `Job request ${job.requestId} could not be renewed; the job is abandoned.`);
    onWorkerExit();
    await finish('Abandoned', 'Abandoned', 105);
    return { result: 'Abandoned', byShutdown: shutdown.aborted };
  }

  const worker = spawn(path.join(ctx.root, 'bin', 'Runner.Worker'), ['spawnclient'], {
    cwd: ctx.root,
    env: ctx.env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  trace.info('JobDispatcher', `Start renew job request ${job.requestId} for job ${job.jobId}.`);
  worker.stdout.on('data', (d: Buffer) => process.stdout.write(d));
  worker.stderr.on('data', (d: Buffer) => process.stderr.write(d));
  worker.stdin.on('error', () => {
    // the worker is gone: its exit code tells the rest
  });
  const send = (m: WorkerJobMessage | WorkerCancelMessage): void => {
    if (!worker.stdin.destroyed) worker.stdin.write(`${JSON.stringify(m)}\n`);
  };
  send({ type: 'job', job, settings: ctx.settings });

  let cancelled: CancelReason | undefined;
  const cancel = (reason: CancelReason): void => {
    if (cancelled !== undefined) return;
    cancelled = reason;
    trace.info('JobDispatcher', `Send job cancellation message to worker for job ${job.jobId}: ${reason}.`);
    send({ type: 'cancel', reason });
  };
  onCancelReady(cancel);
  const onShutdown = (): void => cancel('shutdown');
  if (shutdown.aborted) onShutdown();
  else shutdown.addEventListener('abort', onShutdown, { once: true });

  const renewAc = new AbortController();
  const renewLoop = (async () => {
    while (!renewAc.signal.aborted) {
      if (!(await sleepUnlessShutdown(clock, ctx.timings.renewIntervalMs, renewAc.signal))) return;
      try {
        if (!(await broker.renewJob(job.jobId, renewAc.signal))) {
          trace.info('JobDispatcher', `Job request ${job.requestId} was cancelled on the server.`);
          cancel('server');
          return;
        }
      } catch (err) {
        if (renewAc.signal.aborted) return;
        trace.warn('JobDispatcher', `Job lock renewal failed: ${(err as Error).message}`);
      }
    }
  })();

  // no deadline: the dispatcher waits for the worker however long its steps take to stop
  const { code, signal } = await waitForChild(worker);
  onWorkerExit();
  renewAc.abort();
  await renewLoop;
  shutdown.removeEventListener('abort', onShutdown);
  worker.stdin.destroy();
  trace.info('JobDispatcher', `Worker finished for job ${job.jobId}. Code: ${code ?? signal}`);
  const recorded = exitCodeToResult(code);
  const shown: TaskResult = cancelled === undefined ? recorded : 'Canceled';
  await finish(shown, recorded, code ?? 1);
  return { result: shown, byShutdown: cancelled === 'shutdown' };
}
