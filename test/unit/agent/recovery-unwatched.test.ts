/**
 * Recovery of a job no agent watched (the agent died while its listener idled; the orphan ran a
 * job): one record from the runner's trace, never two, also when recovery itself is killed
 * during its cleanup (the trace is in the trash by then) and when a hook report was left too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { initialState, type PersistedState } from '../../../src/agent/state-store.js';
import type { RunnerHostPort } from '../../../src/agent/runner-host.js';
import type { DiagJob } from '../../../src/runner/diag-evidence.js';
import type { HookEvent } from '../../../src/runner/hooks.js';
import { cleanReport, makeUnitWorld, recoveryRunnerHost, runUntil, type UnitWorld } from './fakes.js';
import type { JournalRecord } from '../../../src/agent/journal.js';

const RUNNER = { id: 100, name: 'unit-1' };

/** A hang bound only: how long the hung recovery may take to persist the job (real file I/O under load). */
const PERSIST_WAIT_MS = 60_000;

/** A runner host for these tests (fakes.ts recoveryRunnerHost). */
function host(w: UnitWorld, trace: () => DiagJob[], leftover: HookEvent[] = []): RunnerHostPort {
  return recoveryRunnerHost(w, trace, leftover);
}

/** state.json of an agent killed while its listener idled (registered a minute before). */
async function killedWhileIdle(w: UnitWorld): Promise<number> {
  const registeredAt = w.clock.now() - 60_000;
  const s: PersistedState = {
    ...initialState(new Date(registeredAt)),
    state: 'idle',
    dirty: true,
    runner: { ...RUNNER, registeredAt: new Date(registeredAt).toISOString() },
    registrations: [RUNNER],
  };
  await writeFile(path.join(w.stateDir, 'state.json'), JSON.stringify(s));
  return registeredAt;
}

function traceJob(startedAt: number): DiagJob {
  return {
    jobId: 'job-7',
    displayName: 'build',
    startedAt,
    endedAt: startedAt + 5_000,
    result: 'Succeeded',
    vars: { GITHUB_REPOSITORY: 'octo/app', GITHUB_RUN_ID: '7' },
    files: ['Runner_20261207-100000-utc.log', 'Worker_20261207-100010-utc.log'],
  };
}

const jobsOf = (w: UnitWorld): Extract<JournalRecord, { type: 'job' }>[] =>
  w.records.filter((r): r is Extract<JournalRecord, { type: 'job' }> => r.type === 'job');

test('a job the orphaned listener ran (runner gone, no hook report) gets one after-the-fact record from the trace', async (t) => {
  const w = await makeUnitWorld();
  t.after(() => w.dispose());
  const registeredAt = await killedWhileIdle(w);
  const agent = w.agent({ runnerHost: host(w, () => [traceJob(registeredAt + 10_000)]) });
  await runUntil(agent, () => jobsOf(w).length > 0, 'the job record');
  const [rec, ...more] = jobsOf(w);
  assert.equal(more.length, 0);
  assert.equal(rec?.runnerId, RUNNER.id);
  assert.equal(rec?.source, 'after-the-fact');
  assert.equal(rec?.result, 'Succeeded');
  assert.equal(rec?.job.repository, 'octo/app');
  assert.deepEqual(rec?.evidence, [
    '_diag/Runner_20261207-100000-utc.log',
    '_diag/Worker_20261207-100010-utc.log',
    'service: the registration is gone (an ephemeral runner is removed after its job)',
  ]);
});

test('a trace older than the registration (left by a failed cleanup) is not the job of this registration', async (t) => {
  const w = await makeUnitWorld();
  t.after(() => w.dispose());
  const registeredAt = await killedWhileIdle(w);
  // The registration is still on the service (unused): a gone one with no job in the trace is
  // recorded as a job of unknown name (recovery-gone.test.ts), never as the old trace's job.
  w.github.runners.set(RUNNER.id, { ...RUNNER, os: 'linux', status: 'offline', busy: false, labels: [] });
  const agent = w.agent({ runnerHost: host(w, () => [traceJob(registeredAt - 3_600_000)]) });
  await runUntil(agent, () => w.records.some((r) => r.type === 'event' && r.event === 'recovery'), 'the recovery event');
  assert.equal(jobsOf(w).length, 0);
});

test('a recovery killed during its cleanup (the trace then in the trash) still gives exactly one record', async (t) => {
  let hang = true;
  const w = await makeUnitWorld({ cleanup: () => (hang ? new Promise(() => {}) : cleanReport()) });
  t.after(() => w.dispose());
  const registeredAt = await killedWhileIdle(w);
  let trace = [traceJob(registeredAt + 10_000)];
  // The first recovery reads the trace, then hangs in its cleanup: the "kill" leaves its state.json.
  void w.agent({ runnerHost: host(w, () => trace) }).run(new AbortController().signal);
  const persisted = async (): Promise<PersistedState> =>
    JSON.parse(await readFile(path.join(w.stateDir, 'state.json'), 'utf8')) as PersistedState;
  // Read until the evidence shows, bounded in time rather than in reads: the agent's state writes
  // are real fsyncs, and on two loaded cores 200 reads went by before the first of them landed.
  let kept: PersistedState | undefined;
  const giveUpAt = Date.now() + PERSIST_WAIT_MS;
  while (!kept?.job?.evidence && Date.now() < giveUpAt) {
    kept = await persisted().catch(() => undefined);
    if (!kept?.job?.evidence) await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(kept?.job?.evidence, 'the job is persisted, with its evidence, before the cleanup');
  assert.equal(kept.jobsServed, 1);
  hang = false;
  trace = [];
  const second = w.agent({ runnerHost: host(w, () => trace) });
  await runUntil(second, () => jobsOf(w).length > 0, 'the job record');
  const recs = jobsOf(w);
  assert.equal(recs.length, 1);
  assert.equal(recs[0]?.source, 'after-the-fact');
  assert.equal(recs[0]?.key, kept.job?.key);
  assert.equal((await persisted()).jobsServed, 1, 'the job is counted once');
});

test('a hook report left as well adds its metadata to the same record, not a second one', async (t) => {
  const w = await makeUnitWorld();
  t.after(() => w.dispose());
  const registeredAt = await killedWhileIdle(w);
  const started: HookEvent = { event: 'started', at: registeredAt + 10_000, vars: { GITHUB_WORKFLOW: 'ci' } };
  const agent = w.agent({ runnerHost: host(w, () => [traceJob(registeredAt + 10_000)], [started]) });
  await runUntil(agent, () => jobsOf(w).length > 0, 'the job record');
  const recs = jobsOf(w);
  assert.equal(recs.length, 1);
  assert.equal(recs[0]?.job.workflow, 'ci');
  assert.equal(recs[0]?.job.repository, 'octo/app');
  assert.ok(recs[0]?.evidence?.includes('hook report'));
});
