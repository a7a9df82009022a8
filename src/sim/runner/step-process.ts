/**
 * How the simulated worker runs a step's process, as `ProcessInvoker` does in the real worker
 * (actions/runner `src/Runner.Sdk/ProcessInvoker.cs`):
 * - the process stays in the worker's process group (the real invoker makes no new group or
 *   session), so a signal sent to the listener's whole group reaches every step directly;
 * - a cancel sends SIGINT to the step's own process (not its group), waits up to 7.5 s, sends
 *   SIGTERM, waits up to 2.5 s, then kills that one process. Children the step left behind are
 *   not signalled here: the orphan sweep at "Complete job" kills them by RUNNER_TRACKING_ID.
 * The two waits are the real defaults; tests may shorten them (worker.ts reads them from env).
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { waitForChild } from '../../lib/process.js';

/** The waits between SIGINT, SIGTERM and SIGKILL of a cancelled step process. */
export interface StepCancelTimings {
  /** After SIGINT (real: 7.5 s, ProcessInvoker._sigintTimeout). */
  sigintMs: number;
  /** After SIGTERM (real: 2.5 s, ProcessInvoker._sigtermTimeout). */
  sigtermMs: number;
}

/** The real runner's waits: a step that ignores SIGINT and SIGTERM dies 10 s after the cancel. */
export const REAL_STEP_CANCEL: StepCancelTimings = { sigintMs: 7_500, sigtermMs: 2_500 };

/** Options of one step process. */
export interface StepProcessOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Aborting starts the SIGINT → SIGTERM → SIGKILL sequence. */
  cancel: AbortSignal;
  /** Each output line, stdout and stderr alike (the job log). */
  onLine: (line: string) => void;
  timings: StepCancelTimings;
  /** Written to the process's stdin, which is then closed (container hooks read their input there). */
  stdin?: string;
}

/** Finds an executable on PATH; undefined when absent. */
export function which(cmd: string, envPath: string | undefined): string | undefined {
  for (const dir of (envPath ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const full = path.join(dir, cmd);
    try {
      const st = statSync(full);
      if (st.isFile() && (st.mode & 0o111) !== 0) return full;
    } catch {
      // not here
    }
  }
  return undefined;
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Runs one step process; resolves with its exit code (null when a signal ended it, 127 when it could not start). */
export function runStepProcess(cmd: string, args: string[], opts: StepProcessOptions): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (opts.stdin !== undefined && child.stdin) {
      child.stdin.on('error', () => {
        // a hook that exits without reading its input: its exit code tells the rest
      });
      child.stdin.end(opts.stdin);
    }
    const pending: Record<'out' | 'err', string> = { out: '', err: '' };
    const feed = (which: 'out' | 'err', d: Buffer): void => {
      pending[which] += d.toString('utf8');
      const lines = pending[which].split('\n');
      pending[which] = lines.pop() ?? '';
      for (const l of lines) opts.onLine(l.replace(/\r$/, ''));
    };
    child.stdout?.on('data', (d: Buffer) => feed('out', d));
    child.stderr?.on('data', (d: Buffer) => feed('err', d));
    const timers: NodeJS.Timeout[] = [];
    const onCancel = (): void => {
      const pid = child.pid;
      if (pid === undefined) return;
      kill(pid, 'SIGINT');
      timers.push(
        setTimeout(() => {
          kill(pid, 'SIGTERM');
          timers.push(setTimeout(() => kill(pid, 'SIGKILL'), opts.timings.sigtermMs));
        }, opts.timings.sigintMs),
      );
    };
    if (opts.cancel.aborted) queueMicrotask(onCancel);
    else opts.cancel.addEventListener('abort', onCancel, { once: true });
    let failed = false;
    child.once('error', (err) => {
      failed = true;
      opts.onLine(`##[error]${err.message}`);
      opts.cancel.removeEventListener('abort', onCancel);
      resolve(127);
    });
    void waitForChild(child).then(({ code }) => {
      for (const t of timers) clearTimeout(t);
      opts.cancel.removeEventListener('abort', onCancel);
      for (const w of ['out', 'err'] as const) if (pending[w]) opts.onLine(pending[w]);
      if (!failed) resolve(code);
    });
  });
}
