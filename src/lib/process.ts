import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

/** How long a child's stdio may stay open after it exited (a grandchild holding the pipe). */
export const STDIO_CLOSE_GRACE_MS = 2_000;

/** Result of a finished command. */
export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Options of runCommand; defaults: 60 s timeout, 1 MiB of output kept per stream. */
export interface RunCommandOptions extends Omit<SpawnOptions, 'stdio' | 'detached'> {
  timeoutMs?: number;
  input?: string;
  signal?: AbortSignal;
  maxOutputBytes?: number;
}

/**
 * Runs a command in its own process group and collects its output. On timeout or abort the whole
 * group gets SIGKILL. Resolves once the child exited and its stdio closed (bounded wait).
 */
export function runCommand(cmd: string, args: string[], opts: RunCommandOptions = {}): Promise<CommandResult> {
  const { timeoutMs = 60_000, input, signal, maxOutputBytes = 1 << 20, ...spawnOpts } = opts;
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { ...spawnOpts, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    } catch (err) {
      reject(err);
      return;
    }
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.on('data', (d: Buffer) => {
      if (stdout.length < maxOutputBytes) stdout += d.toString('utf8');
    });
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < maxOutputBytes) stderr += d.toString('utf8');
    });
    const killGroup = (): void => {
      if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    const onAbort = (): void => killGroup();
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
    waitForChild(child).then(({ code, signal: sig }) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve({ code, signal: sig, stdout, stderr, timedOut });
    }, reject);
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

/**
 * Resolves when the child has exited and its stdio has closed, or STDIO_CLOSE_GRACE_MS after the
 * exit if a leaked grandchild keeps a pipe open (actions/toolkit toolrunner does the same).
 */
export function waitForChild(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let closed = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (graceTimer) clearTimeout(graceTimer);
      resolve(exited ?? { code: child.exitCode, signal: child.signalCode });
    };
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      if (closed) finish();
      else {
        graceTimer = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          finish();
        }, STDIO_CLOSE_GRACE_MS);
        graceTimer.unref();
      }
    });
    child.once('close', () => {
      closed = true;
      if (exited) finish();
    });
    if (child.exitCode !== null || child.signalCode !== null) {
      exited = { code: child.exitCode, signal: child.signalCode };
    }
  });
}

/** Sends a signal to a whole process group; false when the group no longer exists. */
export function signalGroup(pgid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, sig);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

/** True while a process with this pid exists (zombies included). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
