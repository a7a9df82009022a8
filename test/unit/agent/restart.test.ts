/**
 * Quarantine is a persisted fact, and every state the agent can die in restarts through legal
 * edges. Reproduces the lost quarantine: a quarantined agent stopped and started again went
 * recovering -> quarantined (illegal, exit 75), and the start after that served again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ALL_STATES, DIRTY_STATES, type AgentState } from '../../../src/agent/states.js';
import { initialState } from '../../../src/agent/state-store.js';
import { QuarantineStore, quarantineFact } from '../../../src/agent/quarantine-store.js';
import { RELEASE_POLL_MS } from '../../../src/agent/endings.js';
import { GitHubApiError } from '../../../src/lib/errors.js';
import { cleanReport, dirtyReport, events, makeUnitWorld, runUntil, settleUntil, type UnitWorld } from './fakes.js';
import type { Agent } from '../../../src/agent/agent.js';

/** Runs an agent until it holds the quarantine, then stops it as SIGTERM would. */
function runUntilHeld(_w: UnitWorld, agent: Agent): Promise<{ code: number; reason: string }> {
  return runUntil(agent, () => agent.snapshot().state === 'quarantined', 'the agent to hold the quarantine');
}

test('a quarantined host stays quarantined through any number of restarts, without cleaning or registering', async (t) => {
  const w = await makeUnitWorld({ cleanup: () => dirtyReport() });
  t.after(() => w.dispose());
  const first = await runUntilHeld(w, w.agent());
  assert.equal(first.code, 0, first.reason);
  const fact = JSON.parse(await readFile(path.join(w.stateDir, 'quarantine.json'), 'utf8')) as { reason: string; evidence: string[] };
  assert.match(fact.reason, /verification failed/);
  assert.deepEqual(fact.evidence, ['process 4242 of the runner user is still alive'], 'the evidence is kept with the fact');
  const cleanupsBefore = w.cleanups;
  const jitBefore = w.github.jitCalls;
  for (let i = 0; i < 3; i++) {
    const agent = w.agent();
    const exit = await runUntilHeld(w, agent);
    assert.equal(exit.code, 0, `restart ${i + 1}: ${exit.reason}`);
    assert.match(exit.reason, /^quarantined: verification failed/);
  }
  assert.equal(w.cleanups, cleanupsBefore, 'a restart cleaned a quarantined host (the next step is serving it)');
  assert.equal(w.github.jitCalls, jitBefore, 'a restarted quarantined host registered a runner');
  assert.equal(events(w.records, 'quarantine-kept').length, 3);
});

test('a state file that says quarantined (older agent, or the fact could not be written) is held, not recovered', async (t) => {
  const w = await makeUnitWorld();
  t.after(() => w.dispose());
  const s = {
    ...initialState(new Date(w.clock.now())),
    state: 'quarantined' as const,
    dirty: true,
    quarantineReason: 'verification failed: _work left behind',
  };
  await writeFile(path.join(w.stateDir, 'state.json'), JSON.stringify(s));
  const agent = w.agent();
  const exit = await runUntilHeld(w, agent);
  assert.match(exit.reason, /_work left behind/);
  assert.equal(w.cleanups, 0);
  assert.ok(await readFile(path.join(w.stateDir, 'quarantine.json'), 'utf8'), 'the fact is written from the state file');
});

test('an operator release (unquarantine) is journaled with who and why, then the host is cleaned and verified before it serves', async (t) => {
  let dirty = true;
  const w = await makeUnitWorld({ cleanup: () => (dirty ? dirtyReport() : cleanReport()) });
  t.after(() => w.dispose());
  await runUntilHeld(w, w.agent());
  dirty = false;
  const agent = w.agent();
  const running = agent.run(new AbortController().signal);
  await settleUntil(() => agent.snapshot().state === 'quarantined', 'the restarted agent to hold');
  await new QuarantineStore(w.stateDir).writeRequest({
    v: 1,
    reason: 'leftover was a known cron of the image',
    by: 'alice (uid 1000)',
    at: new Date(w.clock.now()).toISOString(),
  });
  w.clock.advance(RELEASE_POLL_MS);
  const exit = await running;
  assert.equal(exit.code, 0, exit.reason);
  const released = events(w.records, 'unquarantine')[0];
  assert.equal(released?.detail?.by, 'alice (uid 1000)');
  assert.equal(released?.detail?.reason, 'leftover was a known cron of the image');
  assert.equal(w.records.filter((r) => r.type === 'job').length, 1, 'the released host serves once proven clean');
  await assert.rejects(readFile(path.join(w.stateDir, 'quarantine.json')), 'the fact is gone after the release');
});

/** States in which the dead agent may have held a registration. */
function hasRunner(state: AgentState): boolean {
  return !['boot', 'preflight', 'stopped'].includes(state);
}

/** What a state file left in `state` looks like (a registration when one may exist). */
function leftState(state: AgentState, now: number): object {
  const s = initialState(new Date(now));
  const withRunner = hasRunner(state);
  return {
    ...s,
    state,
    dirty: DIRTY_STATES.has(state),
    ...(withRunner ? { runner: { id: 5, name: 'old-5', registeredAt: s.since }, registrations: [{ id: 5, name: 'old-5' }] } : {}),
    ...(state === 'registering' ? { pendingName: 'old-6' } : {}),
    ...(state === 'job-running'
      ? { job: { key: '5@1', startedAt: s.since, listenerStartedAt: s.since, runner: { id: 5, name: 'old-5' } } }
      : {}),
  };
}

for (const quarantined of [false, true]) {
  test(`an agent killed in any state restarts through legal edges${quarantined ? ' and keeps the quarantine' : ' and cleans before it registers'}`, async (t) => {
    for (const state of ALL_STATES) {
      const w = await makeUnitWorld();
      t.after(() => w.dispose());
      await writeFile(path.join(w.stateDir, 'state.json'), JSON.stringify(leftState(state, w.clock.now())));
      if (quarantined) await new QuarantineStore(w.stateDir).save(quarantineFact('verification failed: x', new Date(w.clock.now())));
      if (hasRunner(state)) w.github.runners.set(5, { id: 5, name: 'old-5', os: 'linux', status: 'offline', busy: false, labels: [] });
      const shutdown = new AbortController();
      let cleanedBeforeRegistering: boolean | undefined;
      w.github.onJit = () => {
        cleanedBeforeRegistering ??= w.cleanups > 0;
        shutdown.abort();
        return Promise.reject(new GitHubApiError('stop here', 503, 'generate-jitconfig'));
      };
      // A state file that says quarantined is the fact itself (see the test above).
      const held = quarantined || state === 'quarantined';
      const agent = w.agent();
      const running = agent.run(shutdown.signal);
      if (held) {
        await settleUntil(() => agent.snapshot().state === 'quarantined', `${state}: the quarantine to be held`);
        shutdown.abort();
      }
      const exit = await running;
      assert.equal(exit.code, 0, `${state}: ${exit.reason}`);
      assert.equal(w.github.runners.has(5), false, `${state}: the dead agent's registration was left behind`);
      if (held) {
        assert.equal(w.cleanups, 0, `${state}: a quarantined host was cleaned (the next step is serving it)`);
        assert.equal(w.github.jitCalls, 0, `${state}: a quarantined host registered`);
      } else {
        assert.equal(cleanedBeforeRegistering, true, `${state}: registered before cleaning`);
      }
    }
  });
}

test('a quarantine decided while the state disk is full reaches the disk once there is room, and a restart keeps it', async (t) => {
  let stateDir = '';
  // The job filled the disk: both files refuse writes (a directory in the way fails the atomic
  // rename as ENOSPC would) from the job's cleanup on, until the test frees them.
  const block = async (): Promise<void> => {
    for (const f of ['quarantine.json', 'state.json']) {
      await rm(path.join(stateDir, f), { force: true });
      await mkdir(path.join(stateDir, f, 'full'), { recursive: true });
    }
  };
  const w = await makeUnitWorld({
    cleanup: async () => {
      await block();
      return dirtyReport();
    },
  });
  stateDir = w.stateDir;
  t.after(() => w.dispose());
  const agent = w.agent();
  const shutdown = new AbortController();
  const running = agent.run(shutdown.signal);
  await settleUntil(() => agent.snapshot().state === 'quarantined', 'the agent to quarantine the host');
  for (const f of ['quarantine.json', 'state.json']) await rm(path.join(stateDir, f), { recursive: true, force: true });
  // On a loaded machine the hold may not wait for its release poll yet: an advance before that
  // sleep starts wakes nothing. Advance once it waits.
  await settleUntil(() => w.clock.sleeps.includes(RELEASE_POLL_MS), 'the quarantined agent to wait for a release');
  w.clock.advance(RELEASE_POLL_MS);
  await settleUntil(() => existsSync(path.join(stateDir, 'quarantine.json')), 'the held quarantine to be written once there is room');
  shutdown.abort();
  assert.equal((await running).code, 0);
  const cleanupsBefore = w.cleanups;
  const again = await runUntilHeld(w, w.agent());
  assert.match(again.reason, /^quarantined: verification failed/, 'the restart lost the quarantine');
  assert.equal(w.cleanups, cleanupsBefore, 'the restarted agent cleaned the quarantined host for service');
});
