/** Runner updates in the agent (host config runner.updates): the decision around a deprecated runner and the periodic check. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunnerUpdatesPort } from '../../../src/agent/deps.js';
import type { UpdateResult } from '../../../src/runner/update.js';
import { events, makeUnitWorld, oneJob, recordingRecycler, settleUntil, type ListenerScript } from './fakes.js';

/** The first listener is refused as deprecated (console line, exit 7); later ones serve one job. */
const deprecatedThenJob: ListenerScript = (l, n) => {
  if (n > 1) return oneJob(l, n);
  queueMicrotask(() => {
    l.say({ kind: 'version-deprecated', version: '2.310.0' });
    l.exit(7);
  });
};

function fakeUpdates(results: UpdateResult[], checkEveryMs = 6 * 3_600_000): RunnerUpdatesPort & { updates: number; recovers: number } {
  const port = {
    updates: 0,
    recovers: 0,
    checkEveryMs,
    recover: () => {
      port.recovers += 1;
      return Promise.resolve();
    },
    update: () => {
      port.updates += 1;
      return Promise.resolve(results.shift() ?? { none: 'v2.330.0 is the newest release' });
    },
  };
  return port;
}

test('a deprecated runner with an update available is updated and registers again, without a recycle', async (t) => {
  const recycler = recordingRecycler();
  const w = await makeUnitWorld({ recycler, script: deprecatedThenJob });
  t.after(() => w.dispose());
  const updates = fakeUpdates([{ updated: '2.330.0', from: '2.310.0', ms: 1200 }]);
  const exit = await w.agent({ runnerUpdates: updates }).run(new AbortController().signal);
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(updates.recovers, 1, 'an interrupted update is recovered at boot');
  assert.ok(updates.updates >= 1, 'the deprecation asked for an update');
  assert.deepEqual(recycler.calls, [], 'the host was recycled although the runner was updated');
  assert.equal(w.listeners.length, 2, 'the agent registered again after the update');
  assert.equal(w.records.filter((r) => r.type === 'job').length, 1, 'the updated runner served the job');
  const ev = events(w.records, 'runner-updated')[0];
  assert.equal(ev?.detail?.version, '2.330.0');
  assert.equal(ev?.detail?.trigger, 'deprecated');
});

test('a deprecated runner with no newer release recycles the host, naming why', async (t) => {
  const recycler = recordingRecycler();
  const w = await makeUnitWorld({ recycler, script: deprecatedThenJob });
  t.after(() => w.dispose());
  const updates = fakeUpdates([{ none: 'v2.310.0 is the newest release' }, { none: 'v2.310.0 is the newest release' }]);
  await w.agent({ runnerUpdates: updates }).run(new AbortController().signal);
  assert.equal(w.listeners.length, 1, 'no new registration for a runner GitHub refuses');
  assert.equal(recycler.calls.length, 1);
  assert.match(recycler.calls[0] ?? '', /^runner-version-deprecated: v2\.310\.0 .*no update: v2\.310\.0 is the newest release/);
});

test('a refused update names the refusal in the recycle reason', async (t) => {
  const recycler = recordingRecycler();
  const w = await makeUnitWorld({ recycler, script: deprecatedThenJob });
  t.after(() => w.dispose());
  const refused = { refused: 'v2.330.0: SHA-256 aa differs from the published bb' };
  const updates = fakeUpdates([refused, refused]);
  await w.agent({ runnerUpdates: updates }).run(new AbortController().signal);
  assert.match(recycler.calls[0] ?? '', /update refused: v2\.330\.0: SHA-256 aa differs/);
});

test('between jobs the check runs once per period, first at a random offset, and the host keeps serving', async (t) => {
  const period = 60 * 60_000;
  const w = await makeUnitWorld({ maxJobs: 0, script: (l) => setImmediate(() => oneJob(l, 0)) });
  t.after(() => w.dispose());
  const updates = fakeUpdates([], period);
  const agent = w.agent({ runnerUpdates: updates });
  const shutdown = new AbortController();
  const running = agent.run(shutdown.signal);
  await settleUntil(() => w.records.filter((r) => r.type === 'job').length >= 3, 'three jobs');
  assert.equal(updates.updates, 0, 'asked before the random offset passed');
  for (const want of [1, 2]) {
    w.clock.advance(period);
    const jobsNow = w.records.filter((r) => r.type === 'job').length;
    await settleUntil(() => w.records.filter((r) => r.type === 'job').length >= jobsNow + 3, 'three more jobs');
    assert.equal(updates.updates, want, 'one check per period');
  }
  assert.equal(events(w.records, 'runner-updated').length, 0);
  shutdown.abort();
  await running;
});
