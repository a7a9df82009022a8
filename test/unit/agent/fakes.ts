/**
 * The Agent built with fake ports for the unit layer: no root, no child processes, no real timers.
 * GitHub, the runner host (hooks and listeners), cleanup, journal, recycle and disk are in memory;
 * the state directory is a temporary directory of the test's own; time is a ManualClock whose
 * short sleeps (backoffs, polls) pass at once and whose long ones wait for the test.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Agent, type AgentDeps, type RecyclePort } from '../../../src/agent/agent.js';
import { DEFAULT_TIMEOUTS, type Timeouts } from '../../../src/agent/timeouts.js';
import type { NewJournalRecord, JournalRecord } from '../../../src/agent/journal.js';
import type { ListenerHandle, RunnerHostPort } from '../../../src/agent/runner-host.js';
import type { DiskFigures, DiskPort } from '../../../src/agent/disk.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { seededRandom } from '../../../src/lib/backoff.js';
import type { JobGuard } from '../../../src/lib/job-guard.js';
import { GitHubApiError } from '../../../src/lib/errors.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import type { CleanupReport } from '../../../src/cleanup/types.js';
import type { DeleteOutcome, GitHubPort, JitRegistration, RunnerInfo } from '../../../src/github/port.js';
import type { ConsoleEvent } from '../../../src/runner/console.js';
import { hookPaths, type HookEvent } from '../../../src/runner/hooks.js';
import type { ListenerExit } from '../../../src/runner/listener.js';
import type { DiagJob } from '../../../src/runner/diag-evidence.js';

/** Sleeps up to this long pass at once; longer ones (job limit, registration limit, heartbeat) wait. */
export const AUTO_ADVANCE_MS = 1_000;

/** Timers for unit tests: short backoffs (auto-advanced), a heartbeat that never fires by itself. */
export const UNIT_TIMEOUTS: Timeouts = {
  ...DEFAULT_TIMEOUTS,
  registerBackoffBaseMs: 100,
  registerBackoffMaxMs: 800,
  authFailureBackoffMs: 800,
  retryableRestartDelayMs: 10,
  heartbeatMs: 3_600_000,
  // A stopping agent waits this long for a registration the service may still complete, on the
  // manual clock nobody advances here: no wait (the late window is tested in test/e2e/agent).
  lateRegistrationMs: 0,
};

/** A clock whose sleeps up to AUTO_ADVANCE_MS complete at once. */
export function unitClock(): ManualClock {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  clock.onSleep = (ms) => {
    if (ms <= AUTO_ADVANCE_MS) queueMicrotask(() => clock.advance(ms));
  };
  return clock;
}

/** A fake listener the test (or a script) drives: console lines and the exit. */
export class FakeListener implements ListenerHandle {
  readonly pid: number;
  readonly startedAt: number;
  readonly exited: Promise<ListenerExit>;
  stopped = false;
  private resolveExit!: (e: ListenerExit) => void;
  private done = false;
  constructor(
    readonly env: Record<string, string>,
    private readonly onConsole: (e: ConsoleEvent) => void,
    private readonly clock: ManualClock,
    pid: number,
  ) {
    this.pid = pid;
    this.startedAt = clock.now();
    this.exited = new Promise((r) => (this.resolveExit = r));
  }
  /** The listener printed a job's completion (the service then removes the ephemeral runner). */
  completed = false;
  say(e: ConsoleEvent): void {
    if (e.kind === 'job-completed') this.completed = true;
    this.onConsole(e);
  }
  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (this.done) return;
    this.done = true;
    this.resolveExit({ code, signal, at: this.clock.now() });
  }
  stop(): Promise<ListenerExit> {
    this.stopped = true;
    this.exit(0);
    return this.exited;
  }
}

/** What a script does with a started listener (default: one successful job, then exit 0). */
export type ListenerScript = (l: FakeListener, n: number) => void;

/** One Succeeded job: "Running job", "completed with result", exit 0. */
export const oneJob: ListenerScript = (l) => {
  queueMicrotask(() => {
    l.say({ kind: 'job-started', jobName: 'build' });
    queueMicrotask(() => {
      l.say({ kind: 'job-completed', jobName: 'build', result: 'Succeeded' });
      l.exit(0);
    });
  });
};

/** A clean cleanup report with the given disk figures. */
export function cleanReport(disk: DiskFigures = { freePercent: 50, freeInodesPercent: 50 }): CleanupReport {
  return {
    steps: [{ name: 'workdir', outcome: 'ok', durationMs: 1, removed: {} }],
    verify: { clean: true, durationMs: 1, problems: [], disk },
    clean: true,
    readyMs: 1,
  };
}

/** A dirty report (one leftover process). */
export function dirtyReport(): CleanupReport {
  return {
    steps: [],
    verify: {
      clean: false,
      durationMs: 1,
      problems: ['process 4242 of the runner user is still alive'],
      disk: { freePercent: 50, freeInodesPercent: 50 },
    },
    clean: false,
    readyMs: 1,
  };
}

/** Options of makeUnitWorld. */
export interface UnitWorldOptions {
  policy?: (p: Policy) => void;
  maxJobs?: number;
  script?: ListenerScript;
  cleanup?: (n: number) => CleanupReport | Promise<CleanupReport>;
  recycler?: RecyclePort;
  guards?: JobGuard<Policy>[];
  disk?: DiskPort;
  /** Replaces the in-memory journal's append (e.g. to fail with ENOSPC). */
  journalAppend?: (r: NewJournalRecord) => Promise<unknown>;
  stateDir?: string;
  /** Replaces the host's hook installation (e.g. to fail with ENOSPC at start). */
  installHooks?: () => Promise<void>;
}

/** A fake host around one Agent; `agent()` builds a new Agent on the same state (a restart). */
export interface UnitWorld {
  clock: ManualClock;
  stateDir: string;
  github: FakeGitHubPort;
  records: NewJournalRecord[];
  listeners: FakeListener[];
  cleanups: number;
  hookQueue: HookEvent[];
  deliverHook: ((e: HookEvent) => void) | undefined;
  policy: Policy;
  agent(over?: Partial<AgentDeps>): Agent;
  dispose(): Promise<void>;
}

/** An in-memory GitHub: registrations, with switches for failures and hangs. */
export class FakeGitHubPort implements GitHubPort {
  runners = new Map<number, RunnerInfo>();
  jitCalls = 0;
  deletes: number[] = [];
  nextId = 100;
  /** Called on every generate-jitconfig; return a promise to replace the answer (e.g. one that never settles). */
  onJit: ((n: number) => Promise<JitRegistration> | undefined) | undefined;
  busy = new Set<number>();

  generateJitConfig(req: { name: string; labels: string[] }): Promise<JitRegistration> {
    this.jitCalls += 1;
    const over = this.onJit?.(this.jitCalls);
    if (over) return over;
    const runner: RunnerInfo = {
      id: this.nextId++,
      name: req.name,
      os: 'linux',
      status: 'offline',
      busy: false,
      labels: req.labels.map((name) => ({ name })),
    };
    this.runners.set(runner.id, runner);
    return Promise.resolve({ runner, encodedJitConfig: `jit-secret-${runner.id}` });
  }
  resolveRunnerGroup(): Promise<number> {
    return Promise.resolve(1);
  }
  deleteRunner(id: number): Promise<DeleteOutcome> {
    this.deletes.push(id);
    if (this.busy.has(id)) return Promise.resolve('busy');
    return Promise.resolve(this.runners.delete(id) ? 'deleted' : 'not-found');
  }
  findRunnersByName(name: string): Promise<RunnerInfo[]> {
    return Promise.resolve([...this.runners.values()].filter((r) => r.name === name));
  }
  createRegistrationToken(): Promise<never> {
    return Promise.reject(new GitHubApiError('not in unit tests', 404, 'token'));
  }
  createRemoveToken(): Promise<never> {
    return Promise.reject(new GitHubApiError('not in unit tests', 404, 'token'));
  }
}

/** Builds the fake host. */
export async function makeUnitWorld(o: UnitWorldOptions = {}): Promise<UnitWorld> {
  const root = await mkdtemp(path.join(tmpdir(), 'rw-unit-'));
  const stateDir = o.stateDir ?? path.join(root, 'state');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const clock = unitClock();
  const github = new FakeGitHubPort();
  const policy: Policy = structuredClone({ ...DEFAULT_POLICY, host: { ...DEFAULT_POLICY.host, maxJobs: 100 } });
  policy.cleanup.containers.enabled = false;
  o.policy?.(policy);
  const w: UnitWorld = {
    clock,
    stateDir,
    github,
    records: [],
    listeners: [],
    cleanups: 0,
    hookQueue: [],
    deliverHook: undefined,
    policy,
    agent(over = {}) {
      const host: RunnerHostPort = {
        takeLeftoverEvents: () => Promise.resolve(w.hookQueue.splice(0)),
        installHooks: () => (o.installHooks ? o.installHooks() : Promise.resolve()),
        watchEvents: (onEvent, signal) =>
          new Promise<void>((resolve) => {
            w.deliverHook = onEvent;
            signal.addEventListener('abort', () => resolve(), { once: true });
          }),
        writeRunnerEnv: () => Promise.resolve(),
        recordInstall: () => Promise.resolve([]),
        removeLocalConfig: () => Promise.resolve(),
        takeUpdateFinished: () => Promise.resolve(true),
        startListener: (spec) => {
          const l = new FakeListener(spec.env, spec.onConsole, clock, 1000 + w.listeners.length);
          w.listeners.push(l);
          const id = Number(/^jit-secret-(\d+)$/.exec(spec.env.ACTIONS_RUNNER_INPUT_JITCONFIG ?? '')?.[1]);
          void l.exited.then(() => {
            if (l.completed) github.runners.delete(id);
          });
          (o.script ?? oneJob)(l, w.listeners.length);
          return Promise.resolve(l);
        },
      };
      return new Agent({
        slot: {
          index: 0,
          runnerRoot: path.join(root, 'runner'),
          workDir: path.join(root, 'runner', '_work'),
          user: { name: 'runner', uid: 1001, gid: 1001, home: path.join(root, 'home') },
          stateDir,
          trashDir: path.join(stateDir, 'trash'),
          jobRoot: path.join(stateDir, 'jobs'),
        },
        github,
        policies: { atJobBoundary: () => policy, status: () => ({ team: 'unit' }) },
        cleanup: async ({ beforeVerify }) => {
          w.cleanups += 1;
          await beforeVerify();
          return o.cleanup ? o.cleanup(w.cleanups) : cleanReport();
        },
        prepareJobDirs: (key) =>
          Promise.resolve({
            root: path.join(stateDir, 'jobs', key),
            home: path.join(stateDir, 'jobs', key, 'home'),
            tmp: path.join(stateDir, 'jobs', key, 'tmp'),
            dockerConfig: path.join(stateDir, 'jobs', key, 'docker'),
          }),
        journal: {
          append: async (r) => {
            if (o.journalAppend) await o.journalAppend(r);
            w.records.push(r);
            return r;
          },
          readLastJobs: (n) => Promise.resolve({ records: w.records.filter((r) => r.type === 'job').slice(-n) }),
        },
        hooks: hookPaths(path.join(stateDir, 'public')),
        runner: { name: 'unit-{seq}', labels: ['self-hosted'], group: null, maxJobs: o.maxJobs ?? 1 },
        team: 'unit',
        hostname: 'unithost',
        version: '0.0.0-unit',
        clock,
        log: silentLogger(),
        timeouts: UNIT_TIMEOUTS,
        runnerHost: host,
        disk: o.disk ?? {
          trashEmpty: () => Promise.resolve(true),
          measure: () => Promise.resolve({ freePercent: 50, freeInodesPercent: 50 }),
        },
        random: seededRandom(42),
        ...(o.recycler ? { recycler: o.recycler } : {}),
        ...(o.guards ? { guards: o.guards } : {}),
        ...over,
      });
    },
    async dispose() {
      // A write the agent started before the test ended may land while the tree goes (ENOTEMPTY).
      await rm(root, { recursive: true, force: true, maxRetries: 3 });
    },
  };
  return w;
}

/**
 * How long settleUntil lets real I/O run before it gives up: the state files are written for real,
 * and on two cores loaded by other test files a few dozen fsyncs took over 15 s (a unit test of
 * three jobs timed out so). Only a broken test waits this long.
 */
const SETTLE_GIVE_UP_MS = 60_000;

/**
 * Lets the event loop turn (I/O of the state files, microtasks) until `pred` holds; fails after
 * `turns` turns or SETTLE_GIVE_UP_MS, whichever comes first. Nothing here waits on a timer.
 */
export async function settleUntil(pred: () => boolean, what: string, turns = Infinity): Promise<void> {
  const giveUpAt = Date.now() + SETTLE_GIVE_UP_MS;
  for (let i = 0; i < turns && Date.now() < giveUpAt; i++) {
    if (pred()) return;
    await new Promise((r) => setImmediate(r));
  }
  if (pred()) return;
  throw new Error(`timed out waiting for ${what}`);
}

/** Runs `agent` until `pred` holds, then stops it as SIGTERM would; resolves with its exit. */
export async function runUntil(agent: Agent, pred: () => boolean, what: string): Promise<{ code: number; reason: string }> {
  const shutdown = new AbortController();
  const running = agent.run(shutdown.signal);
  await settleUntil(pred, what);
  shutdown.abort();
  return running;
}

/** A recycler that records its calls. */
export function recordingRecycler(ok = true): RecyclePort & { calls: string[] } {
  const calls: string[] = [];
  return {
    provider: 'command',
    calls,
    recycle: (e) => {
      calls.push(e.reason);
      return Promise.resolve({ ok, provider: 'command', detail: ok ? 'done' : 'refused', exitCode: 0 });
    },
  };
}

/** The event records of a journal, by event name. */
export function events(records: NewJournalRecord[], name: string): Extract<JournalRecord, { type: 'event' }>[] {
  return records.filter((r) => r.type === 'event' && r.event === name) as Extract<JournalRecord, { type: 'event' }>[];
}

/**
 * A runner host for recovery tests: its listener idles, its `_diag` trace shows `trace()`, and the
 * hook reports a dead agent left are `leftover` (taken once).
 */
export function recoveryRunnerHost(w: UnitWorld, trace: () => DiagJob[], leftover: HookEvent[] = []): RunnerHostPort {
  return {
    takeLeftoverEvents: () => Promise.resolve(leftover.splice(0)),
    installHooks: () => Promise.resolve(),
    watchEvents: (_onEvent, signal) => new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true })),
    writeRunnerEnv: () => Promise.resolve(),
    recordInstall: () => Promise.resolve([]),
    removeLocalConfig: () => Promise.resolve(),
    takeUpdateFinished: () => Promise.resolve(false),
    readDiagJobs: () => Promise.resolve(trace()),
    startListener: (spec) => Promise.resolve(new FakeListener(spec.env, spec.onConsole, w.clock, 4000)),
  };
}
