/**
 * The registration loop of a host that knows its place in the fleet (AgentDeps.fleetSlots, from
 * the host config's fleet section): a failed registration is tried again at the start of the
 * host's next slot, refused credentials wait their own longer wait first, and without a fleet
 * section the waits are the full jitter they always were.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GitHubApiError } from '../../../src/lib/errors.js';
import { backoffDelay, seededRandom } from '../../../src/lib/backoff.js';
import { githubSlots } from '../../../src/github/fleet-pacing.js';
import { registrationRetryWait } from '../../../src/agent/registrar.js';
import { UNIT_TIMEOUTS, makeUnitWorld, settleUntil } from './fakes.js';

for (const index of [17, 18]) {
  test(`host ${index} of 1000 whose registration fails tries again exactly at its own slot, once a window`, async (t) => {
    const w = await makeUnitWorld();
    t.after(() => w.dispose());
    const slots = githubSlots({ size: 1000, index });
    const at: number[] = [];
    w.github.onJit = (n) => {
      at.push(w.clock.now());
      return n <= 2 ? Promise.reject(new GitHubApiError('GitHub API failed with 502: Bad Gateway', 502, 'generate-jitconfig')) : undefined;
    };
    const running = w.agent({ fleetSlots: slots }).run(new AbortController().signal);
    await settleUntil(() => at.length === 1, 'the first registration attempt');
    const t0 = at[0]!;
    let expected = slots.nextSlot(t0 + 1);
    for (let n = 2; n <= 3; n++) {
      await settleUntil(() => w.clock.sleeps.at(-1) === expected - w.clock.now(), `the wait for slot ${n - 1}`);
      w.clock.advance(expected - w.clock.now() - 1);
      await new Promise((r) => setImmediate(r));
      assert.equal(at.length, n - 1, 'the host tried again before its slot');
      w.clock.advance(1);
      await settleUntil(() => at.length === n, `attempt ${n}`);
      assert.equal(at[n - 1], expected, `attempt ${n} was not at the start of the host's slot`);
      assert.equal((expected - slots.offsetMs) % slots.windowMs, 0);
      expected += slots.windowMs;
    }
    const exit = await running;
    assert.equal(exit.code, 0, exit.reason);
    // Hosts 17 and 18 own neighbouring slots: never the same instant, one slot apart.
    assert.equal(Math.round(githubSlots({ size: 1000, index: 18 }).offsetMs - githubSlots({ size: 1000, index: 17 }).offsetMs), 350);
  });
}

test('refused credentials wait authFailureBackoffMs and then the host slot: the longer wait wins', () => {
  const slots = githubSlots({ size: 1000, index: 5 });
  const now = Date.UTC(2026, 0, 1, 8, 30);
  const random = seededRandom(1);
  const base = { now, timeouts: UNIT_TIMEOUTS, random, slots };
  const auth = registrationRetryWait({ ...base, failures: 1, auth: true });
  assert.equal(now + auth, slots.nextSlot(now + UNIT_TIMEOUTS.authFailureBackoffMs));
  assert.ok(auth >= UNIT_TIMEOUTS.authFailureBackoffMs);
  // Any other failure: the next slot, however many failures came before (no growing backoff past a window).
  for (const failures of [1, 5, 40]) {
    const wait = registrationRetryWait({ ...base, failures, auth: false });
    assert.equal(now + wait, slots.nextSlot(now + 1));
    assert.ok(wait > 0 && wait <= slots.windowMs);
  }
});

test('without a fleet section the registration waits are the same full jitter as before', async (t) => {
  const now = Date.UTC(2026, 0, 1);
  const a = seededRandom(9);
  const b = seededRandom(9);
  for (let failures = 1; failures <= 12; failures++) {
    const envelope = { baseMs: UNIT_TIMEOUTS.registerBackoffBaseMs, maxMs: UNIT_TIMEOUTS.registerBackoffMaxMs };
    assert.equal(
      registrationRetryWait({ failures, auth: false, now, timeouts: UNIT_TIMEOUTS, random: a }),
      backoffDelay(failures - 1, envelope, b),
    );
  }
  const auth = { baseMs: UNIT_TIMEOUTS.authFailureBackoffMs, maxMs: UNIT_TIMEOUTS.authFailureBackoffMs };
  assert.equal(registrationRetryWait({ failures: 3, auth: true, now, timeouts: UNIT_TIMEOUTS, random: a }), backoffDelay(0, auth, b));

  // And the agent: failures wait within the growing envelope (auto-advanced here), then it registers.
  const w = await makeUnitWorld();
  t.after(() => w.dispose());
  w.github.onJit = (n) => (n <= 3 ? Promise.reject(new GitHubApiError('bad gateway', 502, 'generate-jitconfig')) : undefined);
  const exit = await w.agent().run(new AbortController().signal);
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(w.github.jitCalls, 4);
  const waits = w.clock.sleeps.filter((s) => s <= UNIT_TIMEOUTS.registerBackoffMaxMs);
  assert.ok(waits.length >= 3, `backoff waits: ${JSON.stringify(w.clock.sleeps)}`);
});
