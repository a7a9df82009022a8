/**
 * Main of the simulated `bin/Runner.Worker spawnclient`. The listener writes JSON lines to its
 * stdin: first `{"type":"job", job, settings}`, later `{"type":"cancel","reason":"shutdown"|"server"}`.
 * The worker runs the job (job.ts) and exits with 100 + TaskResult (docs/runner-contract.md §2).
 * It ignores SIGINT (the real worker's Terminal service swallows Ctrl-C) and treats SIGTERM as a
 * runner shutdown. Only this file touches process.env, argv, signals and exit for the worker.
 *
 * Simulator-only environment (read, then removed so that no step sees it):
 * - RUNNER_SIM_STEP_SIGINT_TIMEOUT_SECONDS (7.5) / RUNNER_SIM_STEP_SIGTERM_TIMEOUT_SECONDS (2.5): the
 *   waits of a cancelled step's SIGINT → SIGTERM → SIGKILL (ProcessInvoker's real values by default).
 * - RUNNER_SIM_PROC1_CGROUP (/proc/1/cgroup): the file of the "runner runs in a container" check.
 */
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Trace, traceJobMessage } from './diag.js';
import { runJob } from './job.js';
import { envTrue, WRAPPER_ENV, type CancelReason, type WorkerCancelMessage, type WorkerJobMessage } from './worker-channel.js';
import { resultToExitCode } from './results.js';
import { PROC1_CGROUP } from './container-steps.js';
import { REAL_STEP_CANCEL, type StepCancelTimings } from './step-process.js';

function seconds(name: string, fallbackMs: number): number {
  const v = Number.parseFloat(process.env[name] ?? '');
  return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : fallbackMs;
}

async function main(): Promise<number> {
  const root = process.env.RUNNER_SIM_ROOT ?? process.cwd();
  for (const k of WRAPPER_ENV) delete process.env[k];
  const stepCancel: StepCancelTimings = {
    sigintMs: seconds('RUNNER_SIM_STEP_SIGINT_TIMEOUT_SECONDS', REAL_STEP_CANCEL.sigintMs),
    sigtermMs: seconds('RUNNER_SIM_STEP_SIGTERM_TIMEOUT_SECONDS', REAL_STEP_CANCEL.sigtermMs),
  };
  const proc1Cgroup = process.env.RUNNER_SIM_PROC1_CGROUP || PROC1_CGROUP;
  for (const k of Object.keys(process.env)) if (k.startsWith('RUNNER_SIM_')) delete process.env[k];
  if (process.argv[2]?.toLowerCase() !== 'spawnclient') {
    process.stderr.write('Runner.Worker: expected `spawnclient`\n');
    return 1;
  }
  process.on('SIGINT', () => {
    // ignored on purpose: the listener decides about cancellation
  });
  const trace = new Trace(path.join(root, '_diag'), 'Worker', {
    mirrorToStdout: envTrue(process.env.ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT),
  });
  trace.info('Worker', `Version: ${process.version} (simulated worker)`);

  const cancelAc = new AbortController();
  let reason: CancelReason | undefined;
  const cancel = (r: CancelReason): void => {
    if (reason !== undefined) return;
    reason = r;
    trace.info('Worker', `Cancellation requested: ${r}`);
    cancelAc.abort();
  };
  process.on('SIGTERM', () => cancel('shutdown'));

  const rl = createInterface({ input: process.stdin });
  const first = await new Promise<WorkerJobMessage | undefined>((resolve) => {
    let got = false;
    rl.on('line', (line) => {
      let msg: WorkerJobMessage | WorkerCancelMessage;
      try {
        msg = JSON.parse(line) as WorkerJobMessage | WorkerCancelMessage;
      } catch {
        trace.warn('Worker', 'Ignoring a malformed message from the listener.');
        return;
      }
      if (!got && msg.type === 'job') {
        got = true;
        resolve(msg);
      } else if (msg.type === 'cancel') {
        cancel(msg.reason);
      }
    });
    rl.on('close', () => {
      if (!got) resolve(undefined);
    });
  });
  if (!first) {
    trace.error('Worker', 'The listener closed the channel before sending a job.');
    return 1;
  }
  traceJobMessage(trace, first.job);
  const uid = process.getuid?.() ?? 0;
  const result = await runJob({
    root,
    settings: first.settings,
    job: first.job,
    baseEnv: process.env,
    trace,
    cancel: cancelAc.signal,
    cancelReason: () => reason,
    uid,
    stepCancel,
    proc1Cgroup,
  });
  return resultToExitCode(result);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`Unhandled exception in the simulated worker: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
