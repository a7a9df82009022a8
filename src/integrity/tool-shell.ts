/**
 * A long-lived `sh` that runs a script per request and answers with its output: a check then starts
 * no child of the agent. Forking the agent (a large process) costs more CPU on its main thread than
 * the tool itself on a stock image; the shell's own children are small. One request at a time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { signalGroup } from '../lib/process.js';

/** The end of one request's output (a byte no tool prints in a path or a rule). */
const END = '\u001fend\n';
const END_PRINTF = '\\037end\\n';

/** What one request may take. */
export interface ToolShellLimits {
  timeoutMs: number;
  maxBytes: number;
}

/** The output of one request, or why there is none. */
export type ToolShellResult = { ok: true; stdout: string } | { ok: false; why: string };

/** One shell, started on first use and again after it died. */
export class ToolShell {
  private child: ChildProcess | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private pending = 0;

  /**
   * Runs `script` (stderr discarded) and resolves with its stdout. An idle shell is given the
   * script at once, not on a later tick: the check starts the tools before its synchronous work.
   */
  run(script: string, limits: ToolShellLimits, signal?: AbortSignal): Promise<ToolShellResult> {
    const start = (): Promise<ToolShellResult> => this.request(script, limits, signal);
    const next = this.pending === 0 ? start() : this.queue.then(start);
    this.pending++;
    this.queue = next.finally(() => this.pending--).catch(() => undefined);
    return next;
  }

  /** Ends the shell (tests; the agent's exit ends it anyway). */
  close(): void {
    const c = this.child;
    this.child = undefined;
    if (c?.pid !== undefined) signalGroup(c.pid, 'SIGKILL');
  }

  private shell(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    const c = spawn('sh', ['-s'], { stdio: ['pipe', 'pipe', 'ignore'], detached: true });
    c.on('error', () => undefined);
    c.stdin?.on('error', () => undefined);
    c.once('exit', () => {
      if (this.child === c) this.child = undefined;
    });
    // Neither the shell nor its pipes keep the agent's event loop alive.
    c.unref();
    (c.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    (c.stdout as unknown as { unref?: () => void } | null)?.unref?.();
    this.child = c;
    return c;
  }

  private request(script: string, limits: ToolShellLimits, signal?: AbortSignal): Promise<ToolShellResult> {
    const c = this.shell();
    return new Promise((resolve) => {
      let out = '';
      const done = (fail?: string): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        c.stdout?.off('data', onData);
        c.off('exit', onExit);
        if (fail) {
          this.close();
          resolve({ ok: false, why: fail });
        } else resolve({ ok: true, stdout: out.slice(0, out.length - END.length) });
      };
      const onData = (d: Buffer): void => {
        out += d.toString('utf8');
        if (out.endsWith(END)) done();
        else if (out.length > limits.maxBytes) done(`printed more than ${limits.maxBytes} bytes`);
      };
      const onExit = (): void => done('the shell running it exited');
      const onAbort = (): void => done('aborted');
      const timer = setTimeout(() => done(`no answer in ${limits.timeoutMs} ms`), limits.timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      c.stdout?.on('data', onData);
      c.once('exit', onExit);
      // A subshell: the script's `exit` or `cd` cannot end or move the long-lived shell.
      c.stdin?.write(`(\n${script}\n) 2>/dev/null </dev/null\nprintf '${END_PRINTF}'\n`);
    });
  }
}

/** `s` as one single-quoted shell word. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
