/** Job guards around every job: prepare, release (a cleanup step), verify; unfit and findings quarantine. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { GuardUnfitError, type GuardFinding, type GuardJob, type JobGuard } from '../../../src/lib/job-guard.js';
import type { Policy } from '../../../src/policy/types.js';
import { initialState } from '../../../src/agent/state-store.js';
import { makeUnitWorld, runUntil } from './fakes.js';

/** A guard that records its calls; behaviour switchable per test. */
function fakeGuard(
  o: { unfit?: boolean; findings?: (job: GuardJob | undefined) => GuardFinding[] } = {},
): JobGuard<Policy> & { calls: string[] } {
  const calls: string[] = [];
  return {
    name: 'fake',
    calls,
    prepare(job) {
      calls.push(`prepare ${job.key}`);
      if (o.unfit)
        return Promise.reject(new GuardUnfitError('fake', 'no user namespaces on this kernel', 'set kernel.unprivileged_userns_clone=1'));
      return Promise.resolve({ env: { DOCKER_HOST: `unix://${job.dir}/docker.sock` }, notes: ['engine started'] });
    },
    release(job) {
      calls.push(`release ${job.key}`);
      return Promise.resolve({ outcome: 'ok', removed: { container: { count: 2, bytes: 0 } } });
    },
    verify(job) {
      calls.push(`verify ${job?.key ?? 'none'}`);
      return Promise.resolve(o.findings?.(job) ?? []);
    },
  };
}

test('a guard is verified at preflight, prepared before the listener (its env reaches it), released while cleaning and verified after', async (t) => {
  const guard = fakeGuard();
  const w = await makeUnitWorld({ guards: [guard] });
  t.after(() => w.dispose());
  const exit = await w.agent().run(new AbortController().signal);
  assert.equal(exit.code, 0, exit.reason);
  const key = guard.calls[1]?.split(' ')[1] ?? '';
  assert.deepEqual(guard.calls, ['verify none', `prepare ${key}`, `release ${key}`, `verify ${key}`]);
  assert.match(w.listeners[0]?.env.DOCKER_HOST ?? '', /^unix:\/\/.*docker\.sock$/, 'the guard env must reach the listener');
  const job = w.records.find((r) => r.type === 'job');
  assert.ok(job && job.type === 'job');
  assert.equal(job.cleanup.steps[0]?.name, 'guard:fake', 'the release is a step of the cleanup report');
  assert.deepEqual(job.cleanup.steps[0]?.removed, { container: { count: 2, bytes: 0 } });
  assert.ok(job.notes?.includes('fake: engine started'));
});

test('a guard finding after the job makes the host dirty: quarantined, the finding in verify problems and its detail in the journal', async (t) => {
  const guard = fakeGuard({
    findings: (job) => (job ? [{ problem: 'file /etc/cron.d/x added (root)', detail: { path: '/etc/cron.d/x', kind: 'added' } }] : []),
  });
  const w = await makeUnitWorld({ guards: [guard] });
  t.after(() => w.dispose());
  const agent = w.agent();
  await runUntil(agent, () => agent.snapshot().quarantined, 'the quarantine');
  const job = w.records.find((r) => r.type === 'job');
  assert.ok(job && job.type === 'job');
  assert.equal(job.decision, 'quarantine');
  assert.ok(
    job.cleanup.verify.problems.includes('guard:fake: file /etc/cron.d/x added (root)'),
    JSON.stringify(job.cleanup.verify.problems),
  );
  assert.deepEqual(job.guardFindings, [
    { guard: 'fake', problem: 'file /etc/cron.d/x added (root)', detail: { path: '/etc/cron.d/x', kind: 'added' } },
  ]);
});

test('a guard that finds the host unfit quarantines it, naming the guard and the fix, and no listener starts', async (t) => {
  const guard = fakeGuard({ unfit: true });
  const w = await makeUnitWorld({ guards: [guard] });
  t.after(() => w.dispose());
  const agent = w.agent();
  await runUntil(agent, () => agent.snapshot().quarantined, 'the quarantine');
  assert.equal(w.listeners.length, 0, 'a listener ran without its guard');
  assert.match(
    agent.snapshot().quarantineReason ?? '',
    /guard fake unfit: no user namespaces.*fix: set kernel\.unprivileged_userns_clone=1/,
  );
  assert.ok(
    guard.calls.some((c) => c.startsWith('release')),
    'what prepare began is released',
  );
});

test('a guard job persisted by an agent killed mid-job is released at recovery', async (t) => {
  const guard = fakeGuard();
  const w = await makeUnitWorld({ guards: [guard] });
  t.after(() => w.dispose());
  const s = initialState(new Date(w.clock.now()));
  const guardJob: GuardJob = {
    key: 'dead-1',
    dir: path.join(w.stateDir, 'jobs', 'dead-1'),
    user: { name: 'runner', uid: 1001, gid: 1001, home: '/home/runner' },
    runnerRoot: '/runner',
    stateDir: w.stateDir,
  };
  await writeFile(path.join(w.stateDir, 'state.json'), JSON.stringify({ ...s, state: 'job-running', dirty: true, guardJob }));
  await w.agent().run(new AbortController().signal);
  assert.equal(guard.calls[0], 'release dead-1', `calls: ${JSON.stringify(guard.calls)}`);
});
