import { chmod, mkdir, writeFile, readFile, rmdir, readdir, stat } from 'node:fs/promises';
import type { EventEmitter } from 'node:events';
import path from 'node:path';
import { stringify } from 'yaml';
import { createLab, type Lab } from './lab.js';
import { startFakeGitHub, type FakeGitHub } from '../../src/sim/github/server.js';
import type { FakeGitHubOptions } from '../../src/sim/github/types.js';
import { installSimulatedRunner } from '../../src/sim/runner/install.js';
import { loadHostConfig } from '../../src/policy/load.js';
import type { HostConfig } from '../../src/policy/types.js';
import { slotCgroupParent, wire, type Runtime } from '../../src/cli/wire.js';
import { detectCgroupSupport, openProcessContainer } from '../../src/lib/cgroup.js';
import { systemClock, type Clock } from '../../src/lib/clock.js';
import { silentLogger, createLogger, type Logger } from '../../src/lib/log.js';
import { takeBaseline } from '../../src/cleanup/baseline.js';
import type { JournalRecord } from '../../src/agent/journal.js';
import type { GitHubPort } from '../../src/github/port.js';
import type { RecyclerPort } from '../../src/agent/agent.js';

/** Timers short enough for tests (real time is used for listeners, which are real processes). */
export const TEST_TIMEOUTS = {
  listenerStopGraceMs: 5_000,
  updateFinishedWaitMs: 10_000,
  registerBackoffBaseMs: 20,
  registerBackoffMaxMs: 200,
  authFailureBackoffMs: 200,
  retryableRestartDelayMs: 20,
  drainGraceMs: 10_000,
  heartbeatMs: 1_000,
  // The fake completes a stalled request when the test says so: a stop need not wait a minute for it.
  lateRegistrationMs: 5_000,
};

/** The simulator knobs that shorten its real-time waits (documented in src/sim/runner/listener.ts). */
export const SIM_ENV = {
  RUNNER_SIM_SESSION_CONFLICT_RETRY_SECONDS: '0.2',
  RUNNER_SIM_SESSION_CONFLICT_TOTAL_SECONDS: '0.5',
  RUNNER_SIM_RECONNECT_DELAY_SECONDS: '0.2',
  RUNNER_SIM_JOB_RENEW_INTERVAL_SECONDS: '0.5',
};

/**
 * A policy for tests: reuse, every step on, temp dirs inside the lab (never the real /tmp). The
 * whole-host integrity check is off: it compares the real host, where the tests running beside
 * this one add users and mounts; test/integrity checks it against roots it builds. `over.host`
 * is merged into `host`.
 */
export function testPolicy(lab: Lab, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    host: { maxJobs: 50, integrity: { enabled: false } },
    cleanup: {
      processes: { graceSeconds: 1 },
      temp: { paths: [path.join(lab.root, 'sys', 'tmp'), path.join(lab.root, 'sys', 'var-tmp'), path.join(lab.root, 'sys', 'shm')] },
      containers: { socket: path.join(lab.root, 'no-docker.sock') },
    },
    ...over,
    ...(over.host ? { host: { maxJobs: 50, integrity: { enabled: false }, ...(over.host as Record<string, unknown>) } } : {}),
  };
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
  runtime(o?: { clock?: Clock; github?: GitHubPort; recycler?: RecyclerPort; log?: Logger }): Promise<Runtime>;
  journal(): Promise<JournalRecord[]>;
  /** Wires a runtime, runs the agent until it stops (bounded), closes it; the exit and the job records. */
  runToEnd(timeoutMs?: number): Promise<{ exit: { code: number; reason: string }; jobs: ReturnType<typeof jobRecords>; records: JournalRecord[] }>;
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
  const fake = await startFakeGitHub({ jobLockMs: 3_000, sessionStaleMs: 2_000, ...o.fake });
  const runnerRoot = path.join(lab.root, 'actions-runner');
  await installSimulatedRunner(runnerRoot, { owner: { uid: lab.user.uid, gid: lab.user.gid } });
  for (const d of ['tmp', 'var-tmp', 'shm']) {
    await mkdir(path.join(lab.root, 'sys', d), { recursive: true });
    await chmod(path.join(lab.root, 'sys', d), 0o1777);
  }
  const dropDir = path.join(lab.root, 'drop');
  await mkdir(dropDir);
  await chmod(dropDir, 0o777);
  const etc = path.join(lab.root, 'etc');
  const policyDir = path.join(etc, 'policies');
  await mkdir(policyDir, { recursive: true, mode: 0o700 });
  await writeFile(path.join(policyDir, 'test.yaml'), stringify(o.policy ?? testPolicy(lab)));
  await writeFile(path.join(etc, 'token'), `${fake.defaultToken}\n`, { mode: 0o600 });
  const stateDir = path.join(lab.root, 'state');
  const config = {
    github: { url: fake.origin, apiUrl: fake.url, org: 'octo', token: { file: path.join(etc, 'token') } },
    runner: { root: runnerRoot, user: lab.user.name, name: 'test-{seq}', labels: ['self-hosted'], env: SIM_ENV, ...o.runner },
    team: 'test',
    policyDir,
    stateDir,
    health: { listen: '127.0.0.1:0' },
    recycle: { provider: 'none' },
    timeouts: { ...TEST_TIMEOUTS, ...o.timeouts },
    ...o.config,
  };
  const configFile = path.join(etc, 'config.yaml');
  await writeFile(configFile, stringify(config), { mode: 0o600 });
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
      // The slot's cgroup parent (its containers were removed by the agent, or at its next boot).
      const support = await detectCgroupSupport();
      for (const mount of [support.v2, support.v1Freezer]) {
        if (!mount) continue;
        const parent = path.join(mount, slotCgroupParent(stateDir));
        // Containers left by an agent the test killed (its successor may never have run).
        for (const name of await readdir(parent).catch(() => [] as string[])) {
          const child = path.join(parent, name);
          if ((await stat(child).catch(() => undefined))?.isDirectory()) await openProcessContainer(child).remove().catch(() => {});
        }
        await rmdir(parent).catch(() => {});
      }
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
