/** The listener exit-code table (src/agent/exit-codes.ts) row by row, without a process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyListenerExit, IDLE_TIMEOUT, type ListenerExitFacts } from '../../../src/agent/exit-codes.js';

const base: ListenerExitFacts = {
  code: 0,
  signal: null,
  job: false,
  draining: false,
  idleTimedOut: false,
  runnerGone: false,
  restarts: 0,
  restartLimit: 3,
};
const f = (o: Partial<ListenerExitFacts>): ListenerExitFacts => ({ ...base, ...o });

test('a job ended: failed only for a code other than 0, 3 or 4; never a restart', () => {
  assert.deepEqual(classifyListenerExit(f({ job: true, code: 0 })), { action: 'job-ended', failed: false, waitForUpdate: false });
  assert.deepEqual(classifyListenerExit(f({ job: true, code: 1 })), { action: 'job-ended', failed: true, waitForUpdate: false });
  assert.deepEqual(classifyListenerExit(f({ job: true, code: null, signal: 'SIGKILL' })), {
    action: 'job-ended',
    failed: true,
    waitForUpdate: false,
  });
});

test('exit 3 or 4 after a job: the job ended, not failed, and update.finished is awaited (no restart on a spent registration)', () => {
  for (const code of [3, 4]) {
    assert.deepEqual(classifyListenerExit(f({ job: true, code })), { action: 'job-ended', failed: false, waitForUpdate: true });
    assert.deepEqual(classifyListenerExit(f({ job: true, code, restarts: 99 })), {
      action: 'job-ended',
      failed: false,
      waitForUpdate: true,
    });
  }
});

test('exit 3 or 4 without a job: update.finished is awaited whether it restarts, drains or idles out', () => {
  assert.deepEqual(classifyListenerExit(f({ code: 4 })), { action: 'restart', restarts: 1, waitForUpdate: true, delay: false });
  assert.equal(classifyListenerExit(f({ code: 4, draining: true, drainReason: 'x' })).waitForUpdate, true);
  assert.equal(classifyListenerExit(f({ code: 3, idleTimedOut: true })).waitForUpdate, true);
  const loop = classifyListenerExit(f({ code: 4, restarts: 3 }));
  assert.deepEqual(loop, { action: 'end', reason: 'self-update loop (4 restarts)', failed: true, waitForUpdate: true });
  assert.equal(classifyListenerExit(f({ code: 0, draining: true })).waitForUpdate, false);
});

test('"no longer exists" then exit 1 (or 0) is a deregistration, not a crash', () => {
  for (const code of [0, 1]) {
    const v = classifyListenerExit(f({ code, runnerGone: true }));
    assert.equal(v.action, 'end');
    assert.equal(v.action === 'end' && v.failed, false, `exit ${code}`);
    assert.match(v.action === 'end' ? v.reason : '', /removed on the server/);
  }
  // Without the line, exit 1 is a refusal and counts towards the crash loop.
  const refused = classifyListenerExit(f({ code: 1 }));
  assert.equal(refused.action === 'end' && refused.failed, true);
  // A job whose registration vanished under it ended, not failed.
  assert.deepEqual(classifyListenerExit(f({ job: true, code: 1, runnerGone: true })), {
    action: 'job-ended',
    failed: false,
    waitForUpdate: false,
  });
});

test('the other rows: idle, drain, deprecated, retryable, conflict, signal', () => {
  assert.deepEqual(classifyListenerExit(f({ idleTimedOut: true })), {
    action: 'end',
    reason: IDLE_TIMEOUT,
    failed: false,
    waitForUpdate: false,
  });
  assert.equal(classifyListenerExit(f({ code: 7 })).action, 'end');
  const dep = classifyListenerExit(f({ code: 1, versionDeprecated: '2.300.0', runnerGone: true }));
  assert.equal(dep.action === 'end' && dep.versionDeprecated, '2.300.0');
  assert.deepEqual(classifyListenerExit(f({ code: 2 })), { action: 'restart', restarts: 1, waitForUpdate: false, delay: true });
  assert.equal(classifyListenerExit(f({ code: 2, restarts: 3 })).action, 'end');
  const conflict = classifyListenerExit(f({ code: 5 }));
  assert.equal(conflict.action === 'end' && conflict.failed, true);
  const killed = classifyListenerExit(f({ code: null, signal: 'SIGKILL' }));
  assert.equal(killed.action === 'end' && killed.failed, true);
  assert.equal(classifyListenerExit(f({ code: 0 })).action === 'end' && classifyListenerExit(f({ code: 0 })).action, 'end');
});

test('update.sh started (console) but the listener exited 0 after "no longer exists": update.finished is still awaited', () => {
  assert.deepEqual(classifyListenerExit(f({ job: true, code: 0, runnerGone: true, updateScript: true })), {
    action: 'job-ended',
    failed: false,
    waitForUpdate: true,
  });
  const idle = classifyListenerExit(f({ code: 0, runnerGone: true, updateScript: true }));
  assert.equal(idle.action, 'end');
  assert.equal(idle.waitForUpdate, true);
});
