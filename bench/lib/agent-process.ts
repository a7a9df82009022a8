/**
 * The agent as a real `runner-warden run` process, for the benches and tests that kill it (SIGKILL
 * cannot be simulated in-process: nothing of the dying agent may run afterwards). Captures its
 * JSON log lines and reads its persisted state the way a restarted agent would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';
import type { PersistedState } from '../../src/agent/state-store.js';
import type { AgentState } from '../../src/agent/states.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The CLI entry point (TypeScript source). */
export const MAIN = path.join(REPO, 'src/cli/main.ts');

/**
 * Where the agent's bundle goes: inside the checkout's node_modules, so that its package imports
 * resolve there as the sources' do (and nothing is written outside the checkout).
 */
const BUNDLE_DIR = path.join(REPO, 'node_modules/.cache/runner-warden-agent');

/** Bundles of older sources are removed once this old (a run that started with one still has it). */
const STALE_BUNDLE_MS = 24 * 3600_000;

let bundled: string | undefined;

/**
 * The command line that runs the CLI: `node <bundle>`, src/cli/main.ts and everything of ours it
 * imports as one esbuild bundle (packages stay imports of node_modules). Built from the working
 * tree at the first call in this process, so it is as fresh as `node --import tsx MAIN` would be;
 * esbuild is also what tsx transpiles with. A process start then costs about a quarter of the CPU
 * (tsx resolves and transforms a few hundred files at every start, ~2 s of CPU on a loaded host),
 * which matters to the tests and benches that start and kill the agent dozens of times.
 */
export function cliCommand(): string[] {
  bundled ??= buildAgentBundle();
  return [bundled];
}

function buildAgentBundle(): string {
  const version = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
  const r = buildSync({
    entryPoints: [MAIN],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    write: false,
    logLevel: 'silent',
    // src/cli/version.ts reads ../../package.json beside itself unless the bundler names the version.
    define: { __RUNNER_WARDEN_VERSION__: JSON.stringify(version) },
  });
  const text = r.outputFiles[0]?.text;
  if (!text) throw new Error(`esbuild produced no bundle of ${MAIN}`);
  // Named by content: test files running at once share one file and never see a half-written one.
  const file = path.join(BUNDLE_DIR, `main-${createHash('sha256').update(text).digest('hex').slice(0, 16)}.mjs`);
  if (!existsSync(file)) {
    mkdirSync(BUNDLE_DIR, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
  for (const name of readdirSync(BUNDLE_DIR)) {
    const old = path.join(BUNDLE_DIR, name);
    if (old !== file && Date.now() - (statSync(old, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > STALE_BUNDLE_MS)
      rmSync(old, { force: true });
  }
  return file;
}

/** How often state.json and the log are polled: short states (a few hundred ms) are still seen. */
const POLL_MS = 10;

/** Raw output kept for failure messages; the JSON lines are kept whole. */
const RAW_TAIL_CHARS = 64 * 1024;

/** One pino line of the agent (only the fields tests look at are typed). */
export interface LogLine {
  level: number;
  time: string;
  msg: string;
  component?: string;
  from?: string;
  to?: string;
  [field: string]: unknown;
}

/** How the process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running (or ended) agent process. */
export interface AgentProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Parsed JSON log lines, in order, growing while the process runs. */
  readonly lines: LogLine[];
  /** Resolves once the process exited and its stdio closed. */
  readonly exited: Promise<ProcessExit>;
  /** The last RAW_TAIL_CHARS of stdout and stderr, for assertion messages. */
  tail(chars?: number): string;
  /** Sends `signal` (default SIGKILL) to the agent alone (its listener lives on, as after a real crash) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<ProcessExit>;
  /** Index of the first line matching `pred`, or -1. */
  indexOf(pred: (l: LogLine) => boolean): number;
  /** Resolves with the first line matching `pred`; rejects after `timeoutMs` (default 30 s) or when the process exits first. */
  waitForLog(pred: (l: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  /** Resolves with the exit, or kills the process (SIGKILL) and rejects after `timeoutMs` (default 60 s). */
  waitForExit(timeoutMs?: number): Promise<ProcessExit>;
}

/** Options of startAgentProcess; defaults: log level debug, no extra environment. */
export interface StartAgentOptions {
  logLevel?: string;
  /** Extra environment (the agent reads RUNNER_WARDEN_* overrides). */
  env?: Record<string, string>;
  /** Also write every output chunk here (e.g. process.stderr when debugging). */
  echo?: NodeJS.WritableStream;
}

/** The runner-user lock directory of the agents started on `configFile` (inside the world's root). */
export function agentLockDir(configFile: string): string {
  return path.join(path.dirname(configFile), 'locks');
}

/**
 * Starts `runner-warden run --config <configFile>` (cliCommand) with a minimal environment (PATH,
 * the log level, the lock directory).
 */
export function startAgentProcess(configFile: string, o: StartAgentOptions = {}): AgentProcess {
  const child = spawn(process.execPath, [...cliCommand(), 'run', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      RUNNER_WARDEN_LOG_LEVEL: o.logLevel ?? 'debug',
      // The host-wide runner-user locks stay inside the world's own root (beside its config).
      RUNNER_WARDEN_LOCK_DIR: agentLockDir(configFile),
      ...o.env,
    },
  });
  if (child.pid === undefined) throw new Error('could not spawn the agent process');
  const lines: LogLine[] = [];
  let raw = '';
  let partial = '';
  const keep = (s: string): void => {
    raw += s;
    if (raw.length > RAW_TAIL_CHARS * 2) raw = raw.slice(-RAW_TAIL_CHARS);
    o.echo?.write(s);
  };
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    keep(d);
    partial += d;
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) pushLine(lines, p);
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => keep(d));
  const exited = new Promise<ProcessExit>((resolve) => {
    // 'close' comes after 'exit' and after both pipes closed (docs/decisions.md, "Stopping a child").
    child.once('close', (code, signal) => {
      if (partial !== '') pushLine(lines, partial);
      partial = '';
      resolve({ code, signal });
    });
  });
  let done = false;
  void exited.then(() => (done = true));

  const proc: AgentProcess = {
    child,
    pid: child.pid,
    lines,
    exited,
    tail: (chars = 4000) => raw.slice(-chars),
    async kill(signal = 'SIGKILL') {
      if (!done) child.kill(signal);
      return exited;
    },
    indexOf: (pred) => lines.findIndex(pred),
    async waitForLog(pred, what, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const hit = lines.find(pred);
        if (hit) return hit;
        if (done) throw new Error(`agent exited before ${what}\n${proc.tail()}`);
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${proc.tail()}`);
        await sleep(POLL_MS);
      }
    },
    async waitForExit(timeoutMs = 60_000) {
      let timer: NodeJS.Timeout | undefined;
      const res = await Promise.race([exited, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs)))]);
      clearTimeout(timer);
      if (res) return res;
      await proc.kill('SIGKILL');
      throw new Error(`the agent did not exit within ${timeoutMs} ms\n${proc.tail()}`);
    },
  };
  return proc;
}

function pushLine(lines: LogLine[], text: string): void {
  if (!text.startsWith('{')) return;
  try {
    lines.push(JSON.parse(text) as LogLine);
  } catch {
    // Not a log line (a stray write); the raw tail still has it.
  }
}

/** The persisted state (`<stateDir>/state.json`), or undefined before the first write. */
export async function readPersistedState(stateDir: string): Promise<PersistedState | undefined> {
  try {
    return JSON.parse(await readFile(path.join(stateDir, 'state.json'), 'utf8')) as PersistedState;
  } catch {
    // Absent, or (never expected: writes are atomic) unreadable: the caller polls again.
    return undefined;
  }
}

/** Options of waitForState; default timeout 30 s. */
export interface WaitForStateOptions {
  timeoutMs?: number;
  /** Fail early (with its output) when this process exits before the state is reached. */
  agent?: AgentProcess;
  /** A further condition on the persisted state (e.g. a job recorded in it). */
  where?: (s: PersistedState) => boolean;
}

/** Resolves with the persisted state once its `state` field is `state` (polled every POLL_MS). */
export async function waitForState(stateDir: string, state: AgentState, o: WaitForStateOptions = {}): Promise<PersistedState> {
  const end = Date.now() + (o.timeoutMs ?? 30_000);
  let exited = false;
  void o.agent?.exited.then(() => (exited = true));
  let last: string | undefined;
  for (;;) {
    const s = await readPersistedState(stateDir);
    last = s?.state;
    if (s && s.state === state && (!o.where || o.where(s))) return s;
    if (exited) throw new Error(`the agent exited in state ${last} before reaching ${state}\n${o.agent?.tail() ?? ''}`);
    if (Date.now() > end) throw new Error(`timed out waiting for state ${state} (last seen ${last})\n${o.agent?.tail() ?? ''}`);
    await sleep(POLL_MS);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
