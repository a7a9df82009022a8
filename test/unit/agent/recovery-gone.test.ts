/**
 * Recovery of a registration the service no longer has while nothing shows its job: the agent died,
 * its orphaned listener ran a job, and the runner's `_diag` trace kept nothing of it (a full disk,
 * or the job deleted it) and no hook report was left. The job gets exactly one record, of unknown
 * name and result, with its evidence; never a second one beside a record the registration already
 * has; none for a registration whose listener never started (an operator or the expiry removed it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { initialState, type PersistedState } from '../../../src/agent/state-store.js';
import type { RunnerHostPort } from '../../../src/agent/runner-host.js';
import type { DeleteOutcome, RunnerInfo } from '../../../src/github/port.js';
import type { JournalRecord, NewJournalRecord } from '../../../src/agent/journal.js';
import type { HookEvent } from '../../../src/runner/hooks.js';
import type { DiagJob } from '../../../src/runner/diag-evidence.js';
import { GitHubApiError } from '../../../src/lib/errors.js';
import { events, makeUnitWorld, recoveryRunnerHost, runUntil, type UnitWorld } from './fakes.js';

const RUNNER = { id: 100, name: 'unit-1' };

/** A runner host for these tests (fakes.ts recoveryRunnerHost). */
function host(w: UnitWorld, leftover: HookEvent[] = [], trace: DiagJob[] = []): RunnerHostPort {
  return recoveryRunnerHost(w, () => trace, leftover);
}

/** state.json of an agent killed in `state`, its registration made a minute before (`since`: when the state was entered). */
async function killedIn(w: UnitWorld, state: PersistedState['state'], sinceOffsetMs = -30_000): Promise<void> {
  const registeredAt = w.clock.now() - 60_000;
  const s: PersistedState = {
    ...initialState(new Date(registeredAt)),
    state,
    since: new Date(registeredAt + sinceOffsetMs).toISOString(),
    dirty: state !== 'registering',
    runner: { ...RUNNER, registeredAt: new Date(registeredAt).toISOString() },
    registrations: [RUNNER],
  };
  await writeFile(path.join(w.stateDir, 'state.json'), JSON.stringify(s));
}

/** The registration as the service lists it while it is still there (never used, offline). */
function stillThere(w: UnitWorld): void {
  const r: RunnerInfo = { ...RUNNER, os: 'linux', status: 'offline', busy: false, labels: [] };
  w.github.runners.set(RUNNER.id, r);
}

const jobsOf = (records: NewJournalRecord[]): Extract<JournalRecord, { type: 'job' }>[] =>
  records.filter((r): r is Extract<JournalRecord, { type: 'job' }> => r.type === 'job');

const persisted = async (w: UnitWorld): Promise<PersistedState> =>
  JSON.parse(await readFile(path.join(w.stateDir, 'state.json'), 'utf8')) as PersistedState;

/** Runs a restarted agent until its recovery has written a job record or its recovery event. */
async function recover(w: UnitWorld, over: Parameters<UnitWorld['agent']>[0] = {}): Promise<void> {
  const agent = w.agent({ runnerHost: host(w), ...over });
  await runUntil(agent, () => jobsOf(w.records).length > 0 || events(w.records, 'recovery').length > 0, 'the recovery');
}

test('a registration gone with no trace and no hook report: one record of an unknown job, with its evidence', async (t) => {
  const w = await makeUnitWorld({ script: () => {} });
  t.after(() => w.dispose());
  await killedIn(w, 'idle');
  await recover(w);
  const [rec, ...more] = jobsOf(w.records);
  assert.equal(more.length, 0, JSON.stringify(w.records));
  assert.equal(rec?.runnerId, RUNNER.id);
  assert.equal(rec?.source, 'after-the-fact');
  assert.equal(rec?.result, 'unknown');
  assert.deepEqual(rec?.job, {}, 'nothing the runner user wrote names the job');
  assert.equal(rec?.key, `${RUNNER.id}@gone`);
  const ev = rec?.evidence ?? [];
  assert.ok(
    ev.some((e) => e.startsWith('_diag: no job')),
    JSON.stringify(ev),
  );
  assert.ok(ev.includes('hook report: none'), JSON.stringify(ev));
  assert.ok(
    ev.some((e) => e.startsWith('service (looked up') && e.includes('operator')),
    JSON.stringify(ev),
  );
  assert.ok(
    ev.includes('service: the registration is gone (an ephemeral runner is removed after its job)'),
    'the deletion answer joins the lookup',
  );
  assert.match(rec?.notes?.[0] ?? '', /unknown/);
  assert.equal(events(w.records, 'recovery').length, 0);
  const s = await persisted(w);
  assert.equal(s.jobsServed, 1, 'counted once');
  assert.equal(s.job, undefined);
});

test('a trace older than the registration with the registration gone: the unknown job, not the old trace job', async (t) => {
  const w = await makeUnitWorld({ script: () => {} });
  t.after(() => w.dispose());
  await killedIn(w, 'idle');
  const old: DiagJob = {
    jobId: 'job-1',
    displayName: 'old',
    startedAt: w.clock.now() - 3_600_000,
    result: 'Succeeded',
    vars: { GITHUB_REPOSITORY: 'octo/old' },
    files: ['Runner_20251231-230000-utc.log'],
  };
  await recover(w, { runnerHost: host(w, [], [old]) });
  const recs = jobsOf(w.records);
  assert.equal(recs.length, 1, JSON.stringify(w.records));
  assert.equal(recs[0]?.key, `${RUNNER.id}@gone`);
  assert.deepEqual(recs[0]?.job, {});
});

test('a registration still there (never used) after its listener idled: no job record', async (t) => {
  const w = await makeUnitWorld({ script: () => {} });
  t.after(() => w.dispose());
  await killedIn(w, 'idle');
  stillThere(w);
  await recover(w);
  assert.equal(jobsOf(w.records).length, 0, JSON.stringify(w.records));
  assert.equal(events(w.records, 'recovery')[0]?.detail?.registrationGone, undefined);
  assert.equal((await persisted(w)).jobsServed, 0);
});

test('a registration whose listener never started, removed by an operator: no job record, a note in the recovery event', async (t) => {
  const w = await makeUnitWorld({ script: () => {} });
  t.after(() => w.dispose());
  // Killed in registering, the registration made after the state was entered: no listener ran.
  await killedIn(w, 'registering', -90_000);
  await recover(w);
  assert.equal(jobsOf(w.records).length, 0, JSON.stringify(w.records));
  const note = events(w.records, 'recovery')[0]?.detail?.registrationGone;
  assert.match(String(note), /no listener had started/);
  assert.equal((await persisted(w)).jobsServed, 0);
});

test('registering, but the registration is older than the state (an earlier listener may have run): a record', async (t) => {
  const w = await makeUnitWorld({ script: () => {} });
  t.after(() => w.dispose());
  // The agent re-entered registering after the registration was made: its listener may have run a job.
  await killedIn(w, 'registering', 30_000);
  await recover(w);
  assert.equal(jobsOf(w.records).length, 1, JSON.stringify(w.records));
  assert.equal(jobsOf(w.records)[0]?.result, 'unknown');
});

test('a job record of the registration already in the journal: no second one', async (t) => {
  const w = await makeUnitWorld({ script: () => {} });
  t.after(() => w.dispose());
  await killedIn(w, 'idle');
  // Written before the kill, under the watched job's own key (the state write after it was lost).
  const earlier = {
    type: 'job',
    runnerName: RUNNER.name,
    runnerId: RUNNER.id,
    job: { repository: 'octo/app' },
    endedAt: new Date(w.clock.now()).toISOString(),
    listenerExitCode: 0,
    listenerSignal: null,
    result: 'Succeeded',
    source: 'console',
    cleanup: { steps: [], verify: { clean: true, durationMs: 0, problems: [] }, clean: true, readyMs: 0 },
    decision: 'reuse',
    decisionReason: 'ok',
    key: `${RUNNER.id}@12345`,
  } as NewJournalRecord;
  w.records.push(earlier);
  await recover(w);
  assert.equal(jobsOf(w.records).length, 1, JSON.stringify(w.records));
  assert.match(String(events(w.records, 'recovery')[0]?.detail?.registrationGone), /already holds a job record/);
  assert.equal((await persisted(w)).jobsServed, 0);
});

test('a hook report left with the registration gone: the existing report-based record, not a second unknown one', async (t) => {
  const w = await makeUnitWorld({ script: () => {} });
  t.after(() => w.dispose());
  await killedIn(w, 'idle');
  const started: HookEvent = { event: 'started', at: w.clock.now() - 20_000, vars: { GITHUB_REPOSITORY: 'octo/claimed' } };
  const agent = w.agent({ runnerHost: host(w, [started]) });
  await runUntil(agent, () => jobsOf(w.records).length > 0, 'the record');
  const recs = jobsOf(w.records);
  assert.equal(recs.length, 1, JSON.stringify(recs));
  assert.notEqual(recs[0]?.key, `${RUNNER.id}@gone`);
  // The repository is the job's own word: the record marks it as a claim.
  assert.equal(recs[0]?.job.repository, 'octo/claimed');
  assert.equal(recs[0]?.source, 'after-the-fact');
  assert.ok(
    recs[0]?.evidence?.some((e) => e.includes('a claim')),
    JSON.stringify(recs[0]?.evidence),
  );
});

test('the lookup fails: the deletion answer (gone) stands in, one record', async (t) => {
  const w = await makeUnitWorld({ script: () => {} });
  t.after(() => w.dispose());
  await killedIn(w, 'idle');
  w.github.findRunnersByName = () => Promise.reject(new GitHubApiError('down', 503, 'GET runners'));
  await recover(w);
  const recs = jobsOf(w.records);
  assert.equal(recs.length, 1, JSON.stringify(w.records));
  assert.equal(recs[0]?.key, `${RUNNER.id}@gone`);
  assert.ok(recs[0]?.evidence?.some((e) => e.includes('the registration is gone')));
});

test('recovery killed after keeping the job (deletion hangs), or after the deletion (record hangs): still one record, counted once', async (t) => {
  for (const where of ['deletion', 'record'] as const) {
    let hang = true;
    const w = await makeUnitWorld({
      script: () => {},
      journalAppend: (r) => (where === 'record' && hang && r.type === 'job' ? new Promise(() => {}) : Promise.resolve()),
    });
    t.after(() => w.dispose());
    await killedIn(w, 'idle');
    const realDelete = w.github.deleteRunner.bind(w.github);
    if (where === 'deletion') w.github.deleteRunner = (): Promise<DeleteOutcome> => new Promise(() => {});
    // The first recovery stops where it hangs; the "kill" leaves its state.json.
    void w.agent({ runnerHost: host(w) }).run(new AbortController().signal);
    let kept: PersistedState | undefined;
    const there = (): boolean => kept?.job?.key === `${RUNNER.id}@gone` && (where === 'deletion' || kept.registrations.length === 0);
    // Real file writes: polled on the wall clock (generous on loaded cores), never on the manual clock.
    for (const giveUp = Date.now() + 30_000; !there() && Date.now() < giveUp;) {
      kept = await persisted(w).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(kept?.job?.key, `${RUNNER.id}@gone`, `${where}: the job is kept before the deletion`);
    assert.equal(kept.jobsServed, 1);
    assert.equal(jobsOf(w.records).length, 0);
    hang = false;
    w.github.deleteRunner = realDelete;
    await recover(w);
    const recs = jobsOf(w.records);
    assert.equal(recs.length, 1, `${where}: ${JSON.stringify(w.records)}`);
    assert.equal(recs[0]?.key, `${RUNNER.id}@gone`);
    assert.equal(recs[0]?.result, 'unknown');
    assert.equal((await persisted(w)).jobsServed, 1, `${where}: counted once`);
  }
});
