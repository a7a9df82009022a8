/** Registration under API failure: backoff on the injected clock, state registering, no crash. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorld, jobRecords } from './agent-world.js';
import { ManualClock } from '../../../src/lib/clock.js';

/**
 * A clock whose short sleeps pass at once (backoffs) while long ones (the job time limit, the
 * heartbeat set to an hour here) wait forever, so the lifecycle runs normally without real waiting.
 */
function backoffClock(): ManualClock {
  const clock = new ManualClock(Date.now());
  clock.onSleep = (ms) => {
    if (ms <= 10 * 60_000) queueMicrotask(() => clock.advance(0 + ms));
  };
  return clock;
}

test('an unreachable API keeps the agent registering with growing backoff, then it recovers and serves the job', async (t) => {
  const w = await createWorld({
    runner: { maxJobs: 1 },
    timeouts: { heartbeatMs: 3_600_000, registerBackoffBaseMs: 1_000, registerBackoffMaxMs: 8_000 },
  });
  t.after(() => w.dispose());
  // 5 failed calls per registration attempt (the adapter's own tries) × 4 attempts, then success.
  w.fake.faults.add({ match: { path: /generate-jitconfig/ }, status: 503, times: 20 });
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'ok', run: 'echo ok' }] });
  const clock = backoffClock();
  const rt = await w.runtime({ clock });
  const exit = await rt.agent.run(AbortSignal.timeout(150_000));
  await rt.close();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobRecords(await w.journal())[0]?.result, 'Succeeded');
  // The adapter's own 1-2-4-8 s between its tries (16), and the agent's full-jitter waits between
  // its 4 failed attempts, each somewhere in [0, 1 s], [0, 2 s], [0, 4 s], [0, 8 s] (capped).
  const shortWaits = clock.sleeps.filter((ms) => ms <= 8_000);
  assert.ok(shortWaits.length >= 20, `expected 16 adapter and 4 agent backoff waits, got ${JSON.stringify(clock.sleeps.slice(0, 30))}`);
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 21, 'every attempt reached the API, none was lost or doubled');
});

test('refused credentials keep the agent registering (no crash, no busy loop) until drained', async (t) => {
  const w = await createWorld({ timeouts: { heartbeatMs: 3_600_000, authFailureBackoffMs: 300_000 } });
  t.after(() => w.dispose());
  w.fake.faults.add({ match: { path: /generate-jitconfig/ }, status: 401, times: Infinity, body: { message: 'Bad credentials' } });
  const clock = new ManualClock(Date.now());
  const rt = await w.runtime({ clock });
  const shutdown = new AbortController();
  const running = rt.agent.run(shutdown.signal);
  // Each refused attempt waits the auth backoff (full jitter: somewhere in [0, 300 s]); advance
  // three of them by the whole window. Longer sleeps are the heartbeat and the registration limit.
  const authWaits = (): number => clock.sleeps.filter((s) => s <= 300_000).length;
  for (let i = 0; i < 3; i++) {
    await until(() => authWaits() > i);
    assert.equal(rt.agent.snapshot().state, 'registering');
    clock.advance(300_000);
  }
  await until(() => authWaits() > 3);
  shutdown.abort();
  const exit = await running;
  await rt.close();
  assert.equal(exit.code, 0);
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 4, 'a 401 must not be retried in a loop');
});

async function until(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(pred(), 'condition not reached');
}
