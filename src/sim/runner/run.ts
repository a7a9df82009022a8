/**
 * The simulated listener's `run` (runner-contract.md §1.2, §2.4, §4.2, §5, §8; Runner.cs RunAsync,
 * BrokerMessageListener, JobDispatcher):
 *
 *   create session ──404──► "Failed to create a session..." → 1
 *        │  409 → retry every conflictRetry for conflictTotal → 5;  unreachable → retry until reconnected
 *        ▼
 *   "√ Connected to GitHub", "Current runner version", "<ts>: Listening for Jobs"
 *        ▼
 *   poll ──job──► Running job → renew (404: Abandoned) → Runner.Worker → "Job X completed with result: R"
 *     │            → complete → single-job mode: stop (ephemeral: delete config files) → 0
 *     ├─update──► self-update → 3 (4 in single-job mode)
 *     ├─crash───► unhandled exception → 2
 *     ├─404─────► "The runner no longer exists on the server..." → delete config → 0
 *     ├─403 deprecated ► "An error occured: Runner version v… is deprecated…" → 7 (env) or 1
 *     └─shutdown (SIGINT/SIGTERM) → idle: 0; busy: cancel the job (completed hook still runs) → 0
 * The session is deleted on every way out (errors ignored).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Clock } from '../../lib/clock.js';
import { waitForChild } from '../../lib/process.js';
import {
  BrokerClient,
  BrokerHttpError,
  BrokerUnreachableError,
  type SimJob,
} from './broker.js';
import { formatU, type Terminal, type Trace } from './diag.js';
import { deleteLocalConfig, readCredentials, type RunnerSettings } from './files.js';
import { ReturnCode, exitCodeToResult, resultToExitCode, type TaskResult } from './results.js';
import { selfUpdate } from './update.js';
import type { CancelReason, WorkerCancelMessage, WorkerJobMessage } from './worker-channel.js';

/** Timings of the listener; the real values are the defaults, tests shorten them through env. */
export interface RunTimings {
  /** Between session attempts after a 409 (real: 30 s). */
  conflictRetryMs: number;
  /** How long 409s are retried before exit 5 (real: 240 s). */
  conflictTotalMs: number;
  /** Between attempts while the broker is unreachable (real: a random 15-30 s backoff; a few seconds here). */
  reconnectDelayMs: number;
  /** Between job-lock renewals while a job runs (real: 60 s); a 404 means the server cancelled the job. */
  renewIntervalMs: number;
}

/** The real runner's timings (see RunTimings). */
export const DEFAULT_TIMINGS: RunTimings = {
  conflictRetryMs: 30_000,
  conflictTotalMs: 240_000,
  reconnectDelayMs: 3_000,
  renewIntervalMs: 60_000,
};

/** Everything `run` needs; the composition root (listener.ts) builds it. */
export interface RunContext {
  root: string;
  version: string;
  settings: RunnerSettings;
  /** Single-job mode: --once, ephemeral .runner, or ACTIONS_RUNNER_RETURN_JOB_RESULT_FOR_HOSTED. */
  runOnce: boolean;
  term: Terminal;
  trace: Trace;
  clock: Clock;
  timings: RunTimings;
  /** Aborts on SIGINT/SIGTERM. */
  shutdown: AbortSignal;
  /** The environment handed to the worker. */
  env: NodeJS.ProcessEnv;
  /** ACTIONS_RUNNER_RETURN_JOB_RESULT_FOR_HOSTED: exit with 100 + the job's result after the job. */
  returnJobResult?: boolean;
  /** ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE: exit 7 (not 1) when the service deprecates this version. */
  returnVersionDeprecated?: boolean;
}

/** Thrown for the broker's crash message: the composition root reports it as an unhandled exception. */
export class SimulatedCrashError extends Error {
  override name = 'SimulatedCrashError';
}

async function sleepUnlessShutdown(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await clock.sleep(ms, signal);
    return true;
  } catch {
    return false;
  }
}

function isConnectError(err: unknown): boolean {
  return err instanceof BrokerUnreachableError || (err instanceof BrokerHttpError && err.status >= 500);
}

/** Runs the listener until it exits; returns the process exit code. */
export async function runListener(ctx: RunContext): Promise<number> {
  const { term, trace, clock, shutdown, settings } = ctx;
  const creds = readCredentials(ctx.root);
  const broker = new BrokerClient(settings.serverUrl, creds.data.clientId);
  const ts = (): string => formatU(clock.now());

  // --- session ---
  let sessionId: string | undefined;
  let conflictElapsed = 0;
  let connectError = false;
  while (sessionId === undefined) {
    if (shutdown.aborted) return ReturnCode.Success;
    let res;
    try {
      res = await broker.createSession(settings.agentId, ctx.version, shutdown);
    } catch (err) {
      if (shutdown.aborted) return ReturnCode.Success;
      if (!isConnectError(err)) throw err;
      if (!connectError) {
        term.writeError(`${ts()}: Runner connect error: ${(err as Error).message}. Retrying until reconnected.`);
        connectError = true;
      }
      trace.warn('BrokerMessageListener', `Session creation failed: ${(err as Error).message}`);
      if (!(await sleepUnlessShutdown(clock, ctx.timings.reconnectDelayMs, shutdown))) return ReturnCode.Success;
      continue;
    }
    if (res.kind === 'created') {
      sessionId = res.sessionId;
      if (connectError) term.writeLine(`${ts()}: Runner reconnected.`);
      connectError = false;
    } else if (res.kind === 'notFound') {
      term.writeError(
        'Failed to create a session. The runner registration has been deleted from the server, please re-configure. Runner registrations are automatically deleted for runners that have not connected to the service recently.',
      );
      return ReturnCode.TerminatedError;
    } else if (res.kind === 'unauthorized') {
      term.writeError('Failed to create a session. invalid_client: the runner credentials were rejected by the server.');
      return ReturnCode.TerminatedError;
    } else {
      term.writeError('A session for this runner already exists.');
      if (conflictElapsed >= ctx.timings.conflictTotalMs) {
        term.writeError(
          `Stop retry on SessionConflictException after retried for ${Math.round(ctx.timings.conflictTotalMs / 1000)} seconds.`,
        );
        return ReturnCode.SessionConflict;
      }
      conflictElapsed += ctx.timings.conflictRetryMs;
      if (!(await sleepUnlessShutdown(clock, ctx.timings.conflictRetryMs, shutdown))) return ReturnCode.Success;
    }
  }
  trace.info('BrokerMessageListener', `Session created: ${sessionId}`);
  term.writeLine();
  term.writeSuccess('Connected to GitHub');
  term.writeLine();
  term.writeLine(`Current runner version: '${ctx.version}'`);
  term.writeLine(`${ts()}: Listening for Jobs`);

  // --- message loop ---
  let runOnceJobCompleted = false;
  let jobEndedByShutdown = false;
  try {
    while (!shutdown.aborted) {
      let msg;
      try {
        msg = await broker.getMessage(sessionId, shutdown);
      } catch (err) {
        if (shutdown.aborted) break;
        if (!isConnectError(err)) throw err;
        if (!connectError) {
          term.writeError(`${ts()}: Runner connect error: ${(err as Error).message}. Retrying until reconnected.`);
          connectError = true;
        }
        if (!(await sleepUnlessShutdown(clock, ctx.timings.reconnectDelayMs, shutdown))) break;
        continue;
      }
      if (connectError) {
        term.writeLine(`${ts()}: Runner reconnected.`);
        connectError = false;
      }
      switch (msg.type) {
        case 'none':
          continue;
        case 'runnerNotFound':
          term.writeLine('The runner no longer exists on the server. Cleaning up local configuration.');
          deleteLocalConfig(ctx.root, (line, ok) => (ok ? term.writeSuccess(line) : term.writeLine(line)));
          sessionId = undefined; // nothing left to delete on the server
          return ReturnCode.Success;
        case 'deprecated':
          // Program.cs: AccessDeniedException ErrorCode 1 (the real runner spells it "occured" here).
          term.writeError(`An error occured: ${msg.message}`);
          trace.error('Runner', `AccessDeniedException: ${msg.message}`);
          return ctx.returnVersionDeprecated ? ReturnCode.RunnerVersionDeprecated : ReturnCode.TerminatedError;
        case 'crash':
          throw new SimulatedCrashError('Simulated unhandled exception requested by the fake GitHub service.');
        case 'update': {
          trace.info('Runner', `Refresh message received, target version ${msg.version}.`);
          await selfUpdate({
            root: ctx.root,
            workDir: path.resolve(ctx.root, settings.workFolder || '_work'),
            currentVersion: ctx.version,
            targetVersion: msg.version,
            term,
            trace,
            listenerPid: process.pid,
            now: () => clock.now(),
          });
          return ctx.runOnce ? ReturnCode.RunOnceRunnerUpdating : ReturnCode.RunnerUpdating;
        }
        case 'job': {
          const outcome = await dispatchJob(ctx, broker, msg.job);
          if (ctx.runOnce) {
            runOnceJobCompleted = !outcome.byShutdown;
            jobEndedByShutdown = outcome.byShutdown;
            trace.info('Runner', 'Job has finished at backend, the runner will exit since it is running under onetime use mode.');
            return ctx.returnJobResult ? resultToExitCode(outcome.result) : ReturnCode.Success;
          }
          if (outcome.byShutdown) jobEndedByShutdown = true;
          break;
        }
        default:
          trace.info('Runner', `Ignoring message: ${JSON.stringify(msg.raw)}`);
      }
    }
    return ReturnCode.Success;
  } finally {
    if (sessionId !== undefined) await broker.deleteSession(sessionId);
    if (settings.ephemeral && runOnceJobCompleted && !jobEndedByShutdown) {
      deleteLocalConfig(ctx.root, (line, ok) => (ok ? term.writeSuccess(line) : term.writeLine(line)));
    }
  }
}

/** Runs one job through the worker; returns whether a shutdown cut it short. */
async function dispatchJob(
  ctx: RunContext,
  broker: BrokerClient,
  job: SimJob,
): Promise<{ result: TaskResult; byShutdown: boolean }> {
  const { term, trace, clock, shutdown } = ctx;
  const ts = (): string => formatU(clock.now());
  term.writeLine(`${ts()}: Running job: ${job.displayName}`);
  trace.info('JobDispatcher', `Job request ${job.requestId} for plan ${job.planId} job ${job.jobId} received.`);

  const finish = async (result: TaskResult, exitCode: number): Promise<void> => {
    term.writeLine(`${ts()}: Job ${job.displayName} completed with result: ${result}`);
    try {
      await broker.completeJob(job.jobId, result, exitCode);
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
    await finish('Abandoned', 105);
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
    trace.info('JobDispatcher', `Cancelling job ${job.jobId}: ${reason}.`);
    send({ type: 'cancel', reason });
  };
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

  const { code, signal } = await waitForChild(worker);
  renewAc.abort();
  await renewLoop;
  shutdown.removeEventListener('abort', onShutdown);
  worker.stdin.destroy();
  trace.info('JobDispatcher', `Worker finished for job ${job.jobId}. Code: ${code ?? signal}`);
  const result = exitCodeToResult(code);
  await finish(result, code ?? 1);
  return { result, byShutdown: cancelled === 'shutdown' };
}
