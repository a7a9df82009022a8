import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { signalGroup, waitForChild } from '../lib/process.js';
import { listenerPath } from './installation.js';
import { parseConsoleLine, type ConsoleEvent } from './console.js';
import { readConsoleLines } from './console-lines.js';

/** How the listener ended. */
export interface ListenerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Epoch ms. */
  at: number;
}

/** What is needed to start one listener. The JIT config goes in the environment, never argv. */
export interface ListenerSpec {
  root: string;
  uid: number;
  gid: number;
  /** The complete environment of the listener (already scrubbed by the caller). */
  env: Record<string, string>;
  /** Extra args after `run` (e.g. `--startuptype service`); never the JIT config. */
  args?: string[];
  log: Logger;
  clock: Clock;
  onConsole?: (e: ConsoleEvent) => void;
  /** Called right after spawn with the pid, e.g. to move it into a cgroup before it forks. */
  onSpawn?: (pid: number) => void;
}

/**
 * A running `bin/Runner.Listener run`, started directly (not through run.sh, whose restart loop
 * would hide exit codes the agent must act on), as the runner user, in its own process group.
 */
export class ListenerProcess {
  readonly pid: number;
  readonly startedAt: number;
  /** Resolves once the listener exited and its stdio closed (bounded wait). */
  readonly exited: Promise<ListenerExit>;
  private readonly child: ChildProcess;
  private readonly log: Logger;
  private readonly clock: Clock;
  /** The last console lines, kept for the journal when the listener fails. */
  readonly tail: string[] = [];

  private constructor(child: ChildProcess, spec: ListenerSpec) {
    this.child = child;
    if (child.pid === undefined) throw new Error('listener did not start');
    this.pid = child.pid;
    this.log = spec.log;
    this.clock = spec.clock;
    this.startedAt = spec.clock.now();
    const onLine = (stream: 'stdout' | 'stderr') => (line: string) => {
      this.tail.push(line);
      if (this.tail.length > TAIL_LINES) this.tail.shift();
      this.log.debug({ stream, line }, 'listener output');
      const ev = parseConsoleLine(line);
      if (ev) spec.onConsole?.(ev);
    };
    // Bounded lines: the job can write into these streams too (console-lines.ts).
    if (child.stdout) readConsoleLines(child.stdout, onLine('stdout'));
    if (child.stderr) readConsoleLines(child.stderr, onLine('stderr'));
    this.exited = waitForChild(child).then(({ code, signal }) => ({ code, signal, at: this.clock.now() }));
  }

  /** Starts the listener; rejects when the executable cannot be spawned. */
  static start(spec: ListenerSpec): Promise<ListenerProcess> {
    return new Promise((resolve, reject) => {
      // Through setpriv --init-groups: spawn()'s own uid/gid switch clears the supplementary
      // groups, so a runner user in the docker group would lose it and every container job fail.
      const [cmd, args, ids] = existsSync(SETPRIV)
        ? [
            SETPRIV,
            [
              '--reuid',
              String(spec.uid),
              '--regid',
              String(spec.gid),
              '--init-groups',
              '--',
              listenerPath(spec.root),
              'run',
              ...(spec.args ?? []),
            ],
            {},
          ]
        : [listenerPath(spec.root), ['run', ...(spec.args ?? [])], { uid: spec.uid, gid: spec.gid }];
      const child = spawn(cmd, args, {
        cwd: spec.root,
        ...ids,
        env: spec.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.once('error', reject);
      child.once('spawn', () => {
        child.off('error', reject);
        child.on('error', (err) => spec.log.warn({ err }, 'listener process error'));
        if (child.pid !== undefined) spec.onSpawn?.(child.pid);
        resolve(new ListenerProcess(child, spec));
      });
    });
  }

  /** Sends a signal to the listener's process group (SIGINT = graceful shutdown, docs/runner-contract.md §4). */
  signal(sig: NodeJS.Signals): void {
    signalGroup(this.pid, sig);
  }

  /**
   * Stops the listener: SIGINT to the listener alone, so the runner cancels its
   * job itself (the worker stops the step process: SIGINT, SIGTERM 7.5 s later, a kill 2.5 s after
   * that, then uploads the logs) rather than every step dying of the signal at once; then SIGKILL
   * to the whole group after `graceMs`. A shutdown skips every remaining step, post steps and the
   * job-completed hook included (docs/runner-contract.md §4): what they would have cleaned is the
   * agent's to clean. Never SIGTERM: its handler gives up after 30 s and the runtime ends the
   * listener, possibly before the worker has completed the job.
   */
  async stop(graceMs: number): Promise<ListenerExit> {
    try {
      process.kill(this.pid, 'SIGINT');
    } catch {
      // already gone: the exit promise settles by itself
    }
    const ac = new AbortController();
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      this.clock.sleep(graceMs, ac.signal).then(
        () => true,
        () => false,
      ),
    ]);
    ac.abort();
    if (timedOut) signalGroup(this.pid, 'SIGKILL');
    return this.exited;
  }
}

/** util-linux's setpriv, which switches user with the user's supplementary groups, then execs. */
const SETPRIV = '/usr/bin/setpriv';

/** Console lines kept for diagnosis. */
const TAIL_LINES = 50;
