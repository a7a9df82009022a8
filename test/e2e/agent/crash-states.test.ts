/**
 * Crash safety: the agent, as a real process, is killed with SIGKILL in each state
 * of its lifecycle and started again. Whatever the state, the restarted agent must clean before it
 * registers, journal every job that started exactly once, and leave no registration behind.
 *
 * Short states are made long on purpose so the kill lands in them: a generate-jitconfig the fake
 * holds (registering), an admin command that sleeps (cleaning), a temp directory with many
 * root-owned entries that verify walks (verifying), a recycle command that sleeps (recycling). The
 * slowness is removed after the kill, so the restarted agent runs at normal speed. `deciding` is
 * hit by an inotify watch on the journal, with the agent's state writes held by strace
 * (RENAME_DELAY_MS), so the kill lands after the job's record was written and before the state says so.
 *
 * A job the crash cut short is journaled `interrupted`; a job that had ended before the crash
 * (killed while cleaning, verifying or deciding) keeps its own result, and still has one record.
 *
 * One case per recovery path, not per state: where two kills leave the restarted agent the same
 * persisted facts, one case kills twice (the second time in the restarted agent's recovery, which
 * walks the same states) instead of building a second host.
 *
 * Slow by necessity: every case starts two or three agent processes and several simulated
 * listeners. Cases run two at a time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, watch } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { agentPolicy, createWorld, until, type World } from './agent-world.js';
import { readPersistedState, startAgentProcess, waitForState, type AgentProcess, type LogLine } from '../../helpers/agent-process.js';
import { processesOfUid } from '../../../src/cleanup/proc.js';
import { Journal, type JobRecord } from '../../../src/agent/journal.js';
import type { AgentState } from '../../../src/agent/states.js';

/**
 * How long the first agent may take to reach the state it is killed in: a hang bound only. A state
 * after a job comes after the preflight, a registration and the job (seen past 30 s with the
 * machine's load at 13 on two cores).
 */
const STATE_WAIT_MS = 120_000;

/** Marks job one's leftover process, so the probe job can tell whether it survived. */
const MARKER = 'job-one-marker';

/** Job one: leaves a daemon behind (as a hostile job would) and then runs for `seconds`. */
function firstJob(seconds: number): { repository: string; runId: number; steps: { name: string; run: string }[] } {
  return {
    repository: 'octo/app',
    runId: 1,
    steps: [{ name: 'leave a daemon', run: `(exec -a ${MARKER} sleep 300 &); sleep ${seconds}; echo done` }],
  };
}

/**
 * Root-owned entries put under a temp path to make verify slow: the temp step leaves what is not
 * the runner user's, but verify walks every entry (one lstat each), a few seconds for this many.
 */
const SLOW_VERIFY_ENTRIES = 60_000;

/** Per-case context handed to the hooks of a case. */
interface Ctx {
  w: World;
  slowCleanMarker: string;
  slowVerifyDir: string;
  /**
   * The result each fake job's record must carry, by job id: `interrupted` for a job the crash cut
   * short, the job's own result for one that had ended before the crash (only its cleanup was cut).
   */
  expected: Map<string, string>;
  /** Scratch space between a case's hooks. */
  notes: Record<string, unknown>;
}

/** One row of the table: where to kill the agent and how to get there. */
interface Case {
  name: string;
  /** The state the first agent must be in (persisted) when it dies. */
  state: AgentState;
  /** Policy fields over testPolicy (shallow, per top-level key), given the lab. */
  policy?: (c: Ctx) => Record<string, unknown>;
  /** Host config fields over the world's defaults. */
  config?: Record<string, unknown>;
  /** Fake GitHub options (default jobLockMs 3 s: an abandoned job's runner is freed soon after the kill). */
  fake?: { jobLockMs?: number };
  /** Before the first agent starts (queue jobs, add faults, make things slow). */
  arm?: (c: Ctx) => Promise<void>;
  /** Waits until the first agent is in the state, then kills it; resolves once it is dead. */
  killIn?: (c: Ctx, a: AgentProcess) => Promise<void>;
  /** After the first agent died and before the second starts. */
  release?: (c: Ctx) => Promise<void>;
  /** Uses strace to hold the agent's state writes (skipped where strace is missing). */
  needsStrace?: boolean;
  /** Kills the restarted agent as well (its state at death must be `restartState`); a third one then finishes. */
  killRestartIn?: (c: Ctx, b: AgentProcess) => Promise<void>;
  restartState?: AgentState;
  /** The restarted agent serves a probe job (false: it must recycle without registering). */
  restartServes: boolean;
  /** Seconds the probe job sleeps first (default 0). */
  probeSleepSeconds?: number;
  /** Runs beside the restarted agent from its start (not awaited by the harness before it waits for the agent). */
  whileRestarted?: (c: Ctx, b: AgentProcess) => Promise<void>;
}

/** Policy with cleanup.commands.before sleeping while `marker` exists (only the targeted pass is slow). */
function slowCleaningPolicy(c: Ctx): Record<string, unknown> {
  const base = agentPolicy(c.w.lab);
  return {
    cleanup: {
      ...(base.cleanup as Record<string, unknown>),
      commands: { before: [{ run: `if [ -e '${c.slowCleanMarker}' ]; then sleep 4; fi`, timeoutSeconds: 10 }] },
    },
  };
}

const CASES: Case[] = [
  {
    name: 'registering, and the service creates the runner only after the restart looked for it',
    state: 'registering',
    // GitHub finishes the dead agent's request only after the restarted agent has looked the name
    // up (and not found it); the lookup at the next job boundary, or at stop, must then find the
    // late runner and delete it. (A request the service never completes, e.g. one it dropped with
    // the dead client's connection, takes the first half of this path: the lookup finds nothing.)
    probeSleepSeconds: 3,
    async arm(c) {
      let finish!: () => void;
      c.notes.finish = () => finish();
      const completeWhen = new Promise<void>((r) => (finish = r));
      c.notes.fault = c.w.fake.faults.add({ match: { method: 'POST', path: /generate-jitconfig/ }, times: 1, completeWhen });
    },
    async killIn(c, a) {
      await waitForState(c.w.stateDir, 'registering', { agent: a, timeoutMs: STATE_WAIT_MS });
      const fault = c.notes.fault as { remaining: number };
      await until(() => fault.remaining === 0, 'the slow generate-jitconfig request to arrive');
      await a.kill('SIGKILL');
      c.notes.killedAt = Date.now();
    },
    async release(c) {
      assert.equal(c.w.fake.runners().length, 0, 'the late runner must not exist yet when the agent restarts');
    },
    async whileRestarted(c) {
      const pending = 'test-1';
      // The restarted agent's lookup of the pending name (GET .../runners?name=test-1), then the late creation.
      await until(
        () => c.w.fake.restCalls({ method: 'GET', path: /\/actions\/runners$/ }) > 0,
        'the restarted agent to look the pending name up',
        120_000,
      );
      (c.notes.finish as () => void)();
      await until(() => c.w.fake.runners().some((r) => r.name === pending), "GitHub to complete the dead agent's registration", 10_000);
    },
    restartServes: true,
  },
  {
    name: 'registering, after the service created the runner and before the agent heard of it',
    state: 'registering',
    async killIn(c, a) {
      // Killed synchronously inside the fake's handler: the runner exists, the answer is never read.
      c.w.fake.events.once('runner-created', () => process.kill(a.pid, 'SIGKILL'));
      await a.exited;
      assert.equal(c.w.fake.runners().length, 1, 'the runner registered just before the crash should exist on the service');
    },
    restartServes: true,
  },
  {
    name: 'idle, with the listener waiting for a job',
    state: 'idle',
    async killIn(c, a) {
      const online = new Promise<void>((r) => c.w.fake.events.once('session-created', () => r()));
      await waitForState(c.w.stateDir, 'idle', { agent: a, timeoutMs: STATE_WAIT_MS });
      await online;
      await a.kill('SIGKILL');
    },
    restartServes: true,
  },
  {
    name: 'idle, and a job reaches the orphaned listener before the restart',
    state: 'idle',
    // A lock longer than the restart takes, so the restarted agent can still see its runner busy (422).
    fake: { jobLockMs: 10_000 },
    async killIn(c, a) {
      const online = new Promise<void>((r) => c.w.fake.events.once('session-created', () => r()));
      await waitForState(c.w.stateDir, 'idle', { agent: a, timeoutMs: STATE_WAIT_MS });
      await online;
      await a.kill('SIGKILL');
      // The listener outlives its agent and keeps polling: the service hands it the next job, which
      // runs until the restarted agent's recovery kills it.
      const id = c.w.fake.enqueueJob(firstJob(300));
      await c.w.fake.waitForJob(id, 'assigned', 20_000);
      c.expected.set(id, 'interrupted');
    },
    restartServes: true,
  },
  {
    name: 'job-running, in the middle of a job',
    state: 'job-running',
    async arm(c) {
      c.expected.set(c.w.fake.enqueueJob(firstJob(300)), 'interrupted');
    },
    async killIn(c, a) {
      await waitForState(c.w.stateDir, 'job-running', { agent: a, timeoutMs: STATE_WAIT_MS });
      await until(async () => (await processesOfUid(c.w.lab.user.uid)).some((p) => p.comm === 'sleep'), 'the job step to run');
      await a.kill('SIGKILL');
    },
    restartServes: true,
  },
  {
    // Killed in cleaning, and the restarted agent again in verifying while its recovery checks the
    // host: both leave a job that ended (its result persisted) and no record, the verifying kill
    // with the host already cleaned once. The agent that finally serves must write that record once.
    name: 'cleaning, after the job ended and before its record was written, and again in verifying during recovery',
    state: 'cleaning',
    policy: slowCleaningPolicy,
    async arm(c) {
      await writeFile(c.slowCleanMarker, '');
      c.expected.set(c.w.fake.enqueueJob(firstJob(0)), 'Succeeded');
    },
    async killIn(c, a) {
      await waitForState(c.w.stateDir, 'cleaning', { agent: a, timeoutMs: STATE_WAIT_MS, where: (s) => s.job !== undefined });
      await a.kill('SIGKILL');
    },
    async release(c) {
      await rm(c.slowCleanMarker, { force: true });
      await makeSlowVerifyDir(c.slowVerifyDir);
    },
    async killRestartIn(c, b) {
      // The job's verification (the job is still in the persisted state until its record is written).
      await waitForState(c.w.stateDir, 'verifying', { agent: b, timeoutMs: STATE_WAIT_MS, where: (s) => s.job !== undefined });
      await b.kill('SIGKILL');
      await rm(c.slowVerifyDir, { recursive: true, force: true });
    },
    restartState: 'verifying',
    restartServes: true,
  },
  {
    name: 'deciding, right after the job record was written',
    state: 'deciding',
    needsStrace: true,
    // Cleaning is held (the slow admin command) so that strace attaches before the record is written.
    policy: slowCleaningPolicy,
    async arm(c) {
      await writeFile(c.slowCleanMarker, '');
      c.expected.set(c.w.fake.enqueueJob(firstJob(0)), 'Succeeded');
    },
    killIn: (c, a) => killAfterJobRecords(c.w.stateDir, a, 1, 'cleaning'),
    async release(c) {
      await rm(c.slowCleanMarker, { force: true });
    },
    restartServes: true,
  },
  {
    name: 'job-running, and again while recovery decides, right after it wrote the interrupted record',
    state: 'job-running',
    async arm(c) {
      c.expected.set(c.w.fake.enqueueJob(firstJob(300)), 'interrupted');
    },
    async killIn(c, a) {
      await waitForState(c.w.stateDir, 'job-running', { agent: a, timeoutMs: STATE_WAIT_MS });
      await a.kill('SIGKILL');
    },
    needsStrace: true,
    policy: slowCleaningPolicy,
    async release(c) {
      // The restarted agent's recovery cleanup is held instead, for strace to attach.
      await writeFile(c.slowCleanMarker, '');
    },
    async killRestartIn(c, b) {
      await killAfterJobRecords(c.w.stateDir, b, 1, 'cleaning');
      await rm(c.slowCleanMarker, { force: true });
    },
    restartState: 'deciding',
    restartServes: true,
  },
  {
    name: 'recycling, while the recycle command runs',
    state: 'recycling',
    config: { recycle: { provider: 'command', command: ['sleep', '5'] } },
    policy: () => ({ host: { maxJobs: 1 } }),
    async arm(c) {
      c.expected.set(c.w.fake.enqueueJob(firstJob(0)), 'Succeeded');
    },
    async killIn(c, a) {
      await waitForState(c.w.stateDir, 'recycling', { agent: a, timeoutMs: STATE_WAIT_MS });
      await a.kill('SIGKILL');
    },
    // The host was being replaced: the restarted agent finishes the recycle and never registers.
    restartServes: false,
  },
];

/** strace, used to widen the few-millisecond window after a journal append (cases skip without it). */
const STRACE = ['/usr/bin/strace', '/bin/strace'].find((f) => existsSync(f));

/**
 * Each state write's rename(2) is held this long while the deciding cases run, so the kill that
 * follows a journal append lands before the next state write however loaded the machine is.
 */
const RENAME_DELAY_MS = 400;

/**
 * Delays every rename(2) of process `pid` (all its threads) by `ms`, with strace's fault injection;
 * resolves once strace is attached. strace ends with the process.
 */
async function delayRenames(pid: number, ms: number): Promise<void> {
  if (!STRACE) throw new Error('strace is needed to widen the window');
  const set = 'rename,renameat,renameat2';
  const st = spawn(
    STRACE,
    ['-f', '-o', '/dev/null', '-p', String(pid), '-e', `trace=${set}`, '-e', `inject=${set}:delay_enter=${ms * 1000}`],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    let err = '';
    st.stderr?.setEncoding('utf8');
    st.stderr?.on('data', (d: string) => {
      err += d;
      if (/attached/.test(err)) resolve();
    });
    st.once('close', (code) => reject(new Error(`strace ended (${code}) before attaching: ${err}`)));
  });
}

/**
 * SIGKILLs `a` as soon as the journal holds `count` job records, once `a` is in `after` (a state
 * it holds for a while): from then on each of its renames waits RENAME_DELAY_MS, so the kill, sent
 * from an inotify watch on the journal, lands between the record's append and the next state write.
 */
async function killAfterJobRecords(stateDir: string, a: AgentProcess, count: number, after: AgentState): Promise<void> {
  await waitForState(stateDir, after, { agent: a, timeoutMs: STATE_WAIT_MS });
  await delayRenames(a.pid, RENAME_DELAY_MS);
  const file = path.join(stateDir, 'journal.jsonl');
  const reached = (): boolean => {
    try {
      return (readFileSync(file, 'utf8').match(/"type":"job"/g) ?? []).length >= count;
    } catch {
      return false;
    }
  };
  const watcher = watch(stateDir, (_ev, name) => {
    if (name === 'journal.jsonl' && reached()) a.child.kill('SIGKILL');
  });
  try {
    await a.waitForExit(120_000);
  } finally {
    watcher.close();
  }
}

/** Makes `dir` (root-owned, 0755, not world-writable) with SLOW_VERIFY_ENTRIES empty files. */
async function makeSlowVerifyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  // One xargs'd touch per few thousand names: far faster than a write per file from node.
  execFileSync('sh', ['-c', `seq 1 ${SLOW_VERIFY_ENTRIES} | xargs touch`], { cwd: dir, stdio: 'ignore' });
}

/** Every line of the live journal parses on its own and the file ends with a newline (no torn record). */
async function assertJournalIntact(stateDir: string): Promise<void> {
  const text = await readFile(path.join(stateDir, 'journal.jsonl'), 'utf8');
  assert.ok(text.endsWith('\n'), 'the journal ends without a newline: a record was torn by the crash');
  text
    .split('\n')
    .slice(0, -1)
    .forEach((line, i) => {
      assert.doesNotThrow(() => JSON.parse(line), `journal line ${i + 1} does not parse (torn or glued records): ${line.slice(0, 200)}`);
    });
  const read = await new Journal({ dir: stateDir }).readAll();
  assert.deepEqual(read.skipped, [], 'the journal reader skipped lines');
}

function stateLine(to: string): (l: LogLine) => boolean {
  return (l) => l.msg === 'state' && l.to === to;
}

async function runCase(c: Case): Promise<void> {
  const w = await createWorld({ runner: { maxJobs: 1 }, ...(c.config ? { config: c.config } : {}), fake: c.fake ?? { jobLockMs: 3_000 } });
  try {
    const ctx: Ctx = {
      w,
      slowCleanMarker: path.join(w.lab.root, 'slow-clean'),
      slowVerifyDir: path.join(w.lab.root, 'sys', 'var-tmp', 'slow-verify'),
      expected: new Map(),
      notes: {},
    };
    if (c.policy) await writeFile(path.join(w.policyDir, 'test.yaml'), stringify(agentPolicy(w.lab, c.policy(ctx))));
    // The image step: a baseline of the runner user's home (no host is called clean without one).
    await (await w.runtime()).close();
    await c.arm?.(ctx);

    const a = startAgentProcess(w.configFile);
    try {
      await c.killIn?.(ctx, a);
    } finally {
      await a.kill('SIGKILL');
    }
    const died = await readPersistedState(w.stateDir);
    assert.equal(died?.state, c.state, `the first agent was meant to die in ${c.state} but its last persisted state is ${died?.state}`);
    await c.release?.(ctx);
    if (c.killRestartIn) {
      const mid = startAgentProcess(w.configFile);
      try {
        await c.killRestartIn(ctx, mid);
      } finally {
        await mid.kill('SIGKILL');
      }
      const again = await readPersistedState(w.stateDir);
      assert.equal(
        again?.state,
        c.restartState,
        `the restarted agent was meant to die in ${c.restartState} but its last persisted state is ${again?.state}`,
      );
    }

    const b = startAgentProcess(w.configFile);
    const beside = c.whileRestarted?.(ctx, b);
    let probe: string | undefined;
    if (c.restartServes) {
      await b.waitForLog((l) => l.msg === 'runner registered', 'the restarted agent to register a runner', 120_000);
      probe = w.fake.enqueueJob({
        repository: 'octo/app',
        runId: 2,
        steps: [
          { name: 'look around', run: `sleep ${c.probeSleepSeconds ?? 0}; ps -u $(id -u) -o args= > ${w.dropDir}/seen.txt; echo ok` },
        ],
      });
    }
    const exit = await b.waitForExit(120_000);
    await beside;
    assert.equal(exit.code, 0, `the restarted agent should stop normally:\n${b.tail()}`);

    // Cleans before anything is registered again.
    const firstClean = b.indexOf(stateLine('cleaning'));
    const firstRegister = b.indexOf((l) => l.msg === 'runner registered');
    assert.ok(firstClean >= 0, `the restarted agent never cleaned:\n${b.tail()}`);
    if (c.restartServes) assert.ok(firstClean < firstRegister, 'the restarted agent registered a runner before cleaning the host');
    else assert.equal(firstRegister, -1, 'a host killed while recycling must not be registered again');

    // Every job that started has exactly one record; the interrupted ones say so.
    await assertJournalIntact(w.stateDir);
    const records = (await new Journal({ dir: w.stateDir }).readAll()).records;
    const jobs = records.filter((r): r is JobRecord => r.type === 'job');
    const started = w.fake.jobs().filter((j) => j.assignedAt !== null);
    const brief = (r: JobRecord): unknown => ({
      seq: r.seq,
      runnerName: r.runnerName,
      runnerId: r.runnerId,
      runId: r.job.runId,
      result: r.result,
    });
    for (const fj of started) {
      // A record names its job by the runner it ran on, or (without one) by the run id from the hook.
      const mine = jobs.filter((r) => (r.runnerId !== undefined ? r.runnerId === fj.runnerId : r.job.runId === fj.job.runId));
      assert.equal(
        mine.length,
        1,
        `job ${fj.id} (run ${fj.job.runId}, runner ${fj.runnerName} #${fj.runnerId}, ${fj.status}/${fj.result}) has ${mine.length} ` +
          `journal records ${JSON.stringify(mine.map(brief))}; all job records: ${JSON.stringify(jobs.map(brief))}`,
      );
      const want = ctx.expected.get(fj.id);
      if (want) assert.equal(mine[0]?.result, want, `the record of job ${fj.id} should say ${want}: ${JSON.stringify(mine[0]?.notes)}`);
    }
    assert.equal(jobs.length, started.length, `journal job records (${jobs.length}) vs jobs the service saw start (${started.length})`);
    if (probe) assert.equal(w.fake.job(probe)?.result, 'Succeeded', 'the probe job should run on the restarted agent');
    if (!c.restartServes) {
      const booted = records.findLastIndex((r) => r.type === 'event' && r.event === 'boot');
      assert.ok(
        records.slice(booted).some((r) => r.type === 'event' && r.event === 'recycle' && r.detail?.ok === true),
        'the restarted agent should finish the interrupted recycle',
      );
    }

    // No ghost (an abandoned job's runner is freed by the fake after jobLockMs, 3 s or 10 s here).
    await until(() => w.fake.runners().length === 0, 'every registration to be gone (no ghost)', 15_000).catch(() => {
      assert.deepEqual(
        w.fake.runners().map((r) => `${r.id} ${r.name} ${r.status} busy=${r.busy}`),
        [],
        'ghost registrations left on the service',
      );
    });

    // Nothing of the first job (nor the orphaned listener) survived the restart.
    if (probe) {
      const seen = await readFile(path.join(w.dropDir, 'seen.txt'), 'utf8');
      assert.equal(seen.includes(MARKER), false, `the probe job saw the first job's process:\n${seen}`);
      const listeners = seen.split('\n').filter((l) => /listener\.(ts|mjs)/.test(l));
      assert.ok(listeners.length <= 1, `the probe job saw more than its own listener:\n${seen}`);
    }
    const left = await processesOfUid(w.lab.user.uid);
    assert.deepEqual(
      left.map((p) => `${p.pid} ${p.comm}`),
      [],
      'runner user processes left after the restarted agent stopped',
    );
  } finally {
    await w.dispose();
  }
}

// Two cases at a time: each has its own lab, user, fake API and agents, so they do not interfere;
// without a per-job container engine a case is light enough that two fit in the hang bounds on a
// loaded two-core machine (with one, two at once missed them).
test(
  'an agent killed in any state and restarted loses no journal record, leaves no ghost and cleans before reuse',
  { concurrency: 2 },
  async (t) => {
    await Promise.all(
      CASES.map((c) =>
        t.test(`killed in ${c.name}`, { skip: c.needsStrace && !STRACE ? 'strace is not installed' : false }, () => runCase(c)),
      ),
    );
  },
);
