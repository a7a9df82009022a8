/**
 * The tests' world: a lab user and root (src/sim/lab.ts) holding the host bench/lib/world.ts writes
 * (runner installation, fake GitHub, policy, config), plus what the tests do with it: wire a
 * runtime, run the agent to its end or drain it at a state, read the journal.
 */
import { readFile } from 'node:fs/promises';
import type { EventEmitter } from 'node:events';
import path from 'node:path';
import { createLab, type Lab } from './lab.js';
import { BENCH_TIMEOUTS, SIM_ENV, benchPolicy, removeSlotCgroups, writeHost } from '../../bench/lib/world.js';
import { startFakeGitHub, type FakeGitHub } from '../../src/sim/github/server.js';
import type { FakeGitHubOptions } from '../../src/sim/github/types.js';
import { loadHostConfig } from '../../src/policy/load.js';
import type { HostConfig } from '../../src/policy/types.js';
import { wire, type Runtime } from '../../src/cli/wire.js';
import { systemClock, type Clock } from '../../src/lib/clock.js';
import { silentLogger, createLogger, type Logger } from '../../src/lib/log.js';
import { takeBaseline } from '../../src/cleanup/baseline.js';
import type { JournalRecord } from '../../src/agent/journal.js';
import type { GitHubPort } from '../../src/github/port.js';
import type { RecyclePort } from '../../src/agent/agent.js';

export { SIM_ENV };

/** Timers short enough for tests (real time is used for listeners, which are real processes). */
export const TEST_TIMEOUTS = {
  ...BENCH_TIMEOUTS,
  // The fake completes a stalled request when the test says so: a stop need not wait a minute for it.
  lateRegistrationMs: 5_000,
};

/**
 * A policy for tests: reuse, every step on, temp dirs inside the lab (never the real /tmp). The
 * whole-host integrity check is off: it compares the real host, where the tests running beside
 * this one add users and mounts; test/e2e/integrity checks it against roots it builds. `over.host`
 * is merged into `host`.
 */
export function testPolicy(lab: Lab, over: Record<string, unknown> = {}): Record<string, unknown> {
  return benchPolicy(lab.root, over);
}

/** A host with a simulated runner, a fake GitHub and a config, all inside one lab root. */
export interface World {
  lab: Lab;
  fake: FakeGitHub;
  runnerRoot: string;
  stateDir: string;
  configFile: string;
  policyDir: string;
  /** A world-writable directory outside every policy path, where hostile jobs drop what they found. */
  dropDir: string;
  /** Loads the config and wires a runtime (not started). */
  runtime(o?: { clock?: Clock; github?: GitHubPort; recycler?: RecyclePort; log?: Logger }): Promise<Runtime>;
  journal(): Promise<JournalRecord[]>;
  /** Wires a runtime, runs the agent until it stops (bounded), closes it; the exit and the job records. */
  runToEnd(
    timeoutMs?: number,
  ): Promise<{ exit: { code: number; reason: string }; jobs: ReturnType<typeof jobRecords>; records: JournalRecord[] }>;
  /** Runs the agent, and stops it (SIGTERM-like drain) once its state is `state`; same result as runToEnd. */
  drainWhen(state: string): ReturnType<World['runToEnd']>;
  /** Calls `fn` for the first `event` the fake emits only. */
  onFirst<T>(event: string, fn: (payload: T) => void): void;
  dispose(): Promise<void>;
}

/** Options of createWorld. */
export interface WorldOptions {
  fake?: FakeGitHubOptions;
  policy?: Record<string, unknown>;
  /** Host config fields merged over the defaults below. */
  config?: Record<string, unknown>;
  /** runner.* fields merged over the defaults. */
  runner?: Record<string, unknown>;
  timeouts?: Record<string, number>;
  /** Take a home baseline before the agent starts (default true). */
  baseline?: boolean;
}

/** Builds a world: lab user, runner installation, fake API, policy dir, host config file. */
export async function createWorld(o: WorldOptions = {}): Promise<World> {
  const lab = await createLab('rw-world-');
  // A job lock of 10 s (GitHub's is 10 min; the simulator renews every 0.5 s here): with 3 s, a
  // listener or a test process starved for 3 s at load 20 lost its job to the fake's abandonment
  // and the job ended Canceled in tests about something else. Tests that need a quick
  // abandonment (crash-states) ask for a shorter lock.
  const fake = await startFakeGitHub({ jobLockMs: 10_000, sessionStaleMs: 2_000, ...o.fake });
  const runnerRoot = path.join(lab.root, 'actions-runner');
  const stateDir = path.join(lab.root, 'state');
  const { configFile, policyDir, dropDir } = await writeHost({
    root: lab.root,
    runnerRoot,
    stateDir,
    user: lab.user,
    fake,
    ...(o.policy ? { policy: o.policy } : {}),
    ...(o.runner ? { runner: o.runner } : {}),
    ...(o.config ? { config: o.config } : {}),
    timeouts: { ...TEST_TIMEOUTS, ...o.timeouts },
    runnerName: 'test-{seq}',
  });
  let baselined = false;
  const world: World = {
    lab,
    fake,
    runnerRoot,
    stateDir,
    configFile,
    policyDir,
    dropDir,
    async runtime(ro = {}) {
      const cfg: HostConfig = await loadHostConfig(configFile, {});
      const rt = await wire(cfg, {
        configFile,
        env: {},
        log: ro.log ?? (process.env.RW_TEST_LOG ? createLogger({ level: 'debug' }) : silentLogger()),
        clock: ro.clock ?? systemClock,
        hostname: 'testhost',
        ...(ro.github ? { github: ro.github } : {}),
        ...(ro.recycler ? { recycler: ro.recycler } : {}),
      });
      if (o.baseline !== false && !baselined) {
        await takeBaseline(rt.slot);
        baselined = true;
      }
      return rt;
    },
    async runToEnd(timeoutMs = 60_000) {
      const rt = await world.runtime();
      const exit = await rt.agent.run(AbortSignal.timeout(timeoutMs));
      await rt.close();
      const records = await world.journal();
      return { exit, jobs: jobRecords(records), records };
    },
    async drainWhen(state) {
      const rt = await world.runtime();
      const shutdown = new AbortController();
      const running = rt.agent.run(shutdown.signal);
      await until(() => rt.agent.snapshot().state === state, `the agent to be ${state}`);
      shutdown.abort();
      const exit = await running;
      await rt.close();
      const records = await world.journal();
      return { exit, jobs: jobRecords(records), records };
    },
    onFirst(event, fn) {
      (fake.events as unknown as EventEmitter).once(event, fn as (...a: unknown[]) => void);
    },
    async journal() {
      const text = await readFile(path.join(stateDir, 'journal.jsonl'), 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as JournalRecord);
    },
    async dispose() {
      await fake.close();
      await lab.dispose();
      await removeSlotCgroups(stateDir);
    },
  };
  return world;
}

/** Job records of a journal, in order. */
export function jobRecords(records: JournalRecord[]): Extract<JournalRecord, { type: 'job' }>[] {
  return records.filter((r): r is Extract<JournalRecord, { type: 'job' }> => r.type === 'job');
}

/** Resolves when `pred` holds, polling every 20 ms; rejects after `timeoutMs` with `what`. */
export async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Runs the agent of `rt` until its state is one of `states` or `limitMs` passes, then closes it.
 * Returns the last state seen (the limit ending the run shows as whatever state it was in).
 */
export async function runUntilState(rt: Runtime, states: readonly string[], limitMs: number): Promise<string> {
  const stop = new AbortController();
  const limit = setTimeout(() => stop.abort(), limitMs);
  let seen = rt.agent.snapshot().state;
  const poll = setInterval(() => {
    seen = rt.agent.snapshot().state;
    // Sampling ends at the match: the stop that follows passes through `stopped`, which a later
    // sample on a loaded machine saw and returned instead (a quarantined boot reported as stopped).
    if (states.includes(seen)) {
      clearInterval(poll);
      stop.abort();
    }
  }, 100);
  try {
    await rt.agent.run(stop.signal);
  } finally {
    clearInterval(poll);
    clearTimeout(limit);
    await rt.close();
  }
  return seen;
}
