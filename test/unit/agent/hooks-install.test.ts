/**
 * The job hooks at start: a disk a job filled must not kill the agent before it cleaned (it tries
 * again at each job boundary, and never serves without them), while a configuration the hooks
 * refuse (the runner user's group is shared) still stops it for the operator (exit 78 in run).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../src/lib/errors.js';
import { events, makeUnitWorld, recordingRecycler } from './fakes.js';

function enospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
}

test('hooks that cannot be written at start are written once the cleanup made room, then the host serves', async (t) => {
  let tries = 0;
  const w = await makeUnitWorld({
    installHooks: () => (++tries === 1 ? Promise.reject(enospc()) : Promise.resolve()),
  });
  t.after(() => w.dispose());
  const exit = await w.agent().run(new AbortController().signal);
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(tries, 2, 'the hooks were not tried again before the registration');
  assert.ok(w.cleanups >= 1, 'the host was not cleaned');
  assert.equal(w.records.filter((r) => r.type === 'job').length, 1, 'the host did not serve its job');
});

test('hooks that still cannot be written at the job boundary recycle the host instead of serving it', async (t) => {
  const recycler = recordingRecycler();
  const w = await makeUnitWorld({ installHooks: () => Promise.reject(enospc()), recycler });
  t.after(() => w.dispose());
  const exit = await w.agent().run(new AbortController().signal);
  assert.equal(w.github.jitCalls, 0, 'a runner was registered on a host without its job hooks');
  assert.match(exit.reason, /state-unwritable: job hooks: .*ENOSPC/);
  assert.equal(recycler.calls.length, 1);
  assert.equal(events(w.records, 'recycle').length, 1);
});

test('a configuration the hooks refuse stops the agent (run exits 78) instead of recycling every host', async (t) => {
  const w = await makeUnitWorld({
    installHooks: () => Promise.reject(new ConfigError("runner.user's primary group runner is shared", '', ['runner.user: expected ...'])),
  });
  t.after(() => w.dispose());
  await assert.rejects(w.agent().run(new AbortController().signal), ConfigError);
  assert.equal(w.github.jitCalls, 0);
});
