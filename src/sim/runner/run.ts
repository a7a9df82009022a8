/**
 * The simulated listener's `run` (actions/runner `Runner.Listener/Runner.cs` RunAsync,
 * `BrokerMessageListener.cs`, `JobDispatcher.cs`):
 *
 *   create session ─404─► "The runner no longer exists on the server. Please reconfigure the runner."
 *        │                 "Failed to create session. ..." → 1
 *        │  401 → "Failed to create a session. The runner registration has been deleted ..." → 1
 *        │  409 → retry every conflictRetry for conflictTotal → 5;  unreachable → retry until reconnected
 *        ▼
 *   "√ Connected to GitHub", "Current runner version", "<ts>: Listening for Jobs"
 *        ▼
 *   poll (also while a job runs) ──job──► "Running job" → renew (404 first: Abandoned) → Runner.Worker
 *     │        → "Job X completed with result: R" → single-job mode: 0 (ephemeral: delete config files)
 *     ├─update──► self-update: waits for the running job, then 3 (4 in single-job mode), config kept
 *     ├─crash───► unhandled exception → 2
 *     ├─404─────► "The runner no longer exists on the server. Cleaning up local configuration."
 *     │           → delete config, no session delete → 0
 *     ├─403 deprecated ► "An error occurred: Runner version v… is deprecated…" → 7 (env) or 1
 *     └─shutdown (SIGINT/SIGTERM) → idle: 0; busy: the worker is told to shut down and the listener
 *                  waits for it with no deadline of its own; the console says Canceled, the worker's
 *                  own result (Failed) is what the job records → 0
 * The session is deleted on every other way out (errors ignored).
 */
import type { Clock } from '../../lib/clock.js';
import { BrokerClient, isConnectError } from './broker.js';
import { formatU, type Terminal, type Trace } from './diag.js';
import { deleteLocalConfig, readCredentials, type RunnerSettings } from './files.js';
import { MessageLoop, sleepUnlessShutdown, type LoopOutcome } from './message-loop.js';
import { ReturnCode } from './results.js';

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
  /** update.sh's poll for the listener's exit (real: 2 s, `safe_sleep.sh 2`). */
  updatePollMs: number;
  /** update.sh's extra sleep once the listener is gone (real: 1 s). */
  updateSettleMs: number;
}

/** The real runner's timings (see RunTimings). */
export const DEFAULT_TIMINGS: RunTimings = {
  conflictRetryMs: 30_000,
  conflictTotalMs: 240_000,
  reconnectDelayMs: 3_000,
  renewIntervalMs: 60_000,
  updatePollMs: 2_000,
  updateSettleMs: 1_000,
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
      // TaskAgentNotFoundException: IsSessionCreationExceptionRetriable, then CreateSessionResult.Failure
      trace.info('BrokerMessageListener', 'The runner no longer exists on the server. Stopping the runner.');
      term.writeError('The runner no longer exists on the server. Please reconfigure the runner.');
      term.writeError(`Failed to create session. ${res.message}`);
      return ReturnCode.TerminatedError;
    } else if (res.kind === 'unauthorized') {
      // the OAuth exchange answers invalid_client once the registration is deleted
      term.writeError(
        'Failed to create a session. The runner registration has been deleted from the server, please re-configure. Runner registrations are automatically deleted for runners that have not connected to the service recently.',
      );
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
  const loop = new MessageLoop(ctx, broker, sessionId);
  let outcome: LoopOutcome | undefined;
  try {
    outcome = await loop.run();
  } finally {
    // every way out deletes the session (a crash too), except after "no longer exists"
    if (outcome?.deleteSession !== false) await broker.deleteSession(sessionId);
  }
  if (outcome.deleteConfig) {
    deleteLocalConfig(ctx.root, (line, ok) => (ok ? term.writeSuccess(line) : term.writeLine(line)));
  }
  return outcome.code;
}
