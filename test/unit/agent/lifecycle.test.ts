/** The Agent with fake ports: the loop, hook reports, registration limits, disk, ENOSPC. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { READY_STATES, type AgentState } from '../../../src/agent/states.js';
import { cleanReport, events, makeUnitWorld, recordingRecycler, settleUntil, type FakeListener } from './fakes.js';
import type { JitRegistration } from '../../../src/github/port.js';

test('one job: registered, served, cleaned, recorded, and the registration is gone', async (t) => {
  const w = await makeUnitWorld();
  t.after(() => w.dispose());
  const exit = await w.agent().run(new AbortController().signal);
  assert.equal(exit.code, 0, exit.reason);
  const jobs = w.records.filter((r) => r.type === 'job');
  assert.equal(jobs.length, 1, 'one record per job');
  assert.equal(jobs[0]?.type === 'job' && jobs[0].result, 'Succeeded');
  assert.equal(w.cleanups, 2, 'preflight cleanup and the job cleanup');
  assert.equal(w.github.runners.size, 0, 'no registration left behind');
  assert.equal(
    w.listeners[0]?.env.ACTIONS_RUNNER_INPUT_JITCONFIG,
    'jit-secret-100',
    'the JIT config reaches the listener through its environment',
  );
});

test('a forged hook report never makes an idle agent busy; the listener alone confirms a job', async (t) => {
  let listener: FakeListener | undefined;
  const w = await makeUnitWorld({ script: (l) => (listener = l) });
  t.after(() => w.dispose());
  const agent = w.agent();
  const shutdown = new AbortController();
  const running = agent.run(shutdown.signal);
  await settleUntil(
    () => agent.snapshot().state === 'idle' && listener !== undefined && w.deliverHook !== undefined,
    'the agent to be idle',
  );
  for (let i = 0; i < 50; i++)
    w.deliverHook?.({ event: 'started', at: w.clock.now(), vars: { GITHUB_REPOSITORY: 'evil/spoofed', GITHUB_ACTOR: 'mallory' } });
  await settleUntil(() => false, 'nothing', 200).catch(() => {});
  assert.equal(agent.snapshot().state, 'idle', 'a hook report alone turned the agent busy');
  assert.equal(agent.snapshot().currentJob, undefined);
  listener?.exit(0);
  // The agent cleans and registers again; stop it once the next listener waits.
  await settleUntil(() => w.listeners.length === 2 && agent.snapshot().state === 'idle', 'the next listener');
  shutdown.abort();
  const exit = await running;
  assert.ok(exit.code === 0, exit.reason);
  assert.equal(w.records.filter((r) => r.type === 'job').length, 0, 'a forged report was journaled as a job');
  const ended = events(w.records, 'listener-ended-without-job')[0];
  assert.match(String(ended?.detail?.unconfirmedHookReport), /evil\/spoofed/, 'the claim is kept as evidence');
  assert.equal(ended?.detail?.ignoredHookReports, 50 - 8, 'reports beyond the cap are counted, not kept');
});

test('hook metadata is added to a job the listener confirmed', async (t) => {
  const w = await makeUnitWorld({
    script: (l) => {
      queueMicrotask(() => {
        l.say({ kind: 'job-started', jobName: 'build' });
        w.deliverHook?.({ event: 'started', at: w.clock.now(), vars: { GITHUB_REPOSITORY: 'octo/app' } });
        setImmediate(() => {
          l.say({ kind: 'job-completed', jobName: 'build', result: 'Succeeded' });
          l.exit(0);
        });
      });
    },
  });
  t.after(() => w.dispose());
  await w.agent().run(new AbortController().signal);
  const job = w.records.find((r) => r.type === 'job');
  assert.equal(job?.type === 'job' && job.job.repository, 'octo/app');
});

test('a registration the API never answers fails /readyz and, past limits.maxRegistrationMinutes, recycles the host', async (t) => {
  const recycler = recordingRecycler();
  const w = await makeUnitWorld({ recycler, policy: (p) => (p.limits.maxRegistrationMinutes = 30) });
  t.after(() => w.dispose());
  let answer: ((r: JitRegistration) => void) | undefined;
  w.github.onJit = () => new Promise((resolve) => (answer = resolve));
  const agent = w.agent();
  const running = agent.run(new AbortController().signal);
  await settleUntil(() => w.github.jitCalls === 1, 'the registration request');
  assert.equal(agent.snapshot().state, 'registering');
  assert.equal(READY_STATES.has(agent.snapshot().state as AgentState), false, '/readyz must fail while registering');
  w.clock.advance(29 * 60_000);
  await settleUntil(() => false, 'nothing', 50).catch(() => {});
  assert.equal(recycler.calls.length, 0, 'recycled before the limit');
  w.clock.advance(60_000);
  await settleUntil(() => recycler.calls.length > 0, 'the recycle');
  assert.match(recycler.calls[0] ?? '', /^registration-stuck/);
  // The request answers after all: that late registration is deleted, never left as a ghost.
  answer?.({ runner: { id: 777, name: 'unit-1', os: 'linux', status: 'offline', busy: false, labels: [] }, encodedJitConfig: 'late' });
  w.github.runners.set(777, { id: 777, name: 'unit-1', os: 'linux', status: 'offline', busy: false, labels: [] });
  const exit = await running;
  assert.match(exit.reason, /recycled \(registration-stuck/);
  await settleUntil(() => w.github.deletes.includes(777), 'the late registration to be deleted');
});

test('low disk measured while the trash still holds the job recycles or reuses on the figure taken after the trash is empty', async (t) => {
  for (const [after, want] of [
    [50, 'stop'],
    [3, 'recycle'],
  ] as const) {
    let trashChecks = 0;
    const recycler = recordingRecycler();
    const w = await makeUnitWorld({
      recycler,
      cleanup: () => cleanReport({ freePercent: 2, freeInodesPercent: 50 }),
      disk: {
        trashEmpty: () => Promise.resolve(++trashChecks > 3),
        measure: () => Promise.resolve({ freePercent: after, freeInodesPercent: 50 }),
      },
    });
    t.after(() => w.dispose());
    const exit = await w.agent().run(new AbortController().signal);
    const job = w.records.find((r) => r.type === 'job');
    if (want === 'stop') {
      assert.equal(job?.type === 'job' && job.decision, 'stop', `the decision saw the figure before the trash emptied: ${exit.reason}`);
    } else {
      assert.match(recycler.calls[0] ?? '', /^disk-low/, 'low disk must recycle');
      assert.equal(events(w.records, 'quarantine').length, 0, 'low disk must never quarantine');
    }
    assert.ok(trashChecks > 3, 'the decision did not wait for the background deletion');
  }
});

test('ENOSPC on every journal append: the agent neither dies nor loses a record, and recycles instead of serving on', async (t) => {
  let full = true;
  const recycler = recordingRecycler();
  const w = await makeUnitWorld({
    recycler,
    maxJobs: 3,
    journalAppend: (r) =>
      full && r.type === 'job'
        ? Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }))
        : Promise.resolve(r),
  });
  t.after(() => w.dispose());
  const agent = w.agent();
  const shutdown = new AbortController();
  const running = agent.run(shutdown.signal);
  await settleUntil(() => recycler.calls.length > 0, 'the recycle');
  assert.match(recycler.calls[0] ?? '', /^state-unwritable: .*ENOSPC/);
  assert.equal(w.listeners.length, 1, 'a second job was served while the journal could not be written');
  full = false;
  const exit = await running;
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(w.records.filter((r) => r.type === 'job').length, 1, 'the job record kept in memory must be written once the disk has room');
});
