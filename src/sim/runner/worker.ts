/**
 * Main of the simulated `bin/Runner.Worker spawnclient`. The listener writes JSON lines to its
 * stdin: first `{"type":"job", job, settings}`, later `{"type":"cancel","reason":"shutdown"|"server"}`.
 * The worker runs the job (job.ts) and exits with 100 + TaskResult (runner-contract.md §2.1).
 * It ignores SIGINT (the real worker's Terminal service swallows Ctrl-C) and treats SIGTERM as a
 * runner shutdown. Only this file touches process.env, argv, signals and exit for the worker.
 */
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Trace } from './diag.js';
import { runJob } from './job.js';
import { envTrue, WRAPPER_ENV, type CancelReason, type WorkerCancelMessage, type WorkerJobMessage } from './worker-channel.js';
import { resultToExitCode } from './results.js';

async function main(): Promise<number> {
  const root = process.env.RUNNER_SIM_ROOT ?? process.cwd();
  for (const k of WRAPPER_ENV) delete process.env[k];
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
