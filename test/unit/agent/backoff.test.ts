/** Full-jitter backoff: the envelope, the bounds, and the spread (statistical, with a fixed seed). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffCeiling, backoffDelay, seededRandom } from '../../../src/lib/backoff.js';

const p = { baseMs: 1_000, maxMs: 300_000 };

test('the envelope doubles from the base and stops at the cap', () => {
  assert.deepEqual(
    [0, 1, 2, 3, 8, 9, 50, 5000].map((n) => backoffCeiling(n, p)),
    [1_000, 2_000, 4_000, 8_000, 256_000, 300_000, 300_000, 300_000],
  );
});

test('every wait lies within [0, envelope]', () => {
  const r = seededRandom(1);
  for (let attempt = 0; attempt < 20; attempt++) {
    for (let i = 0; i < 200; i++) {
      const w = backoffDelay(attempt, p, r);
      assert.ok(w >= 0 && w <= backoffCeiling(attempt, p) && Number.isInteger(w), `attempt ${attempt}: ${w}`);
    }
  }
  assert.equal(
    backoffDelay(3, p, () => 0),
    0,
  );
  assert.equal(
    backoffDelay(3, p, () => 0.9999999),
    8_000,
  );
});

test('a fleet that failed together comes back spread over the whole window, not in lockstep', () => {
  // 10,000 hosts at their 10th retry (window [0, 300 s]): uniform, so each tenth of the window
  // holds about 1,000 of them, the mean is about 150 s, and hardly two pick the same millisecond.
  const r = seededRandom(20261207);
  const waits = Array.from({ length: 10_000 }, () => backoffDelay(10, p, r));
  const mean = waits.reduce((a, b) => a + b, 0) / waits.length;
  assert.ok(Math.abs(mean - 150_000) < 5_000, `mean ${mean}`);
  const buckets = new Array<number>(10).fill(0);
  for (const w of waits) buckets[Math.min(9, Math.floor(w / 30_000))]! += 1;
  // Chi-square with 9 degrees of freedom; 27.9 is its 0.1 % critical value.
  const chi = buckets.reduce((a, n) => a + (n - 1_000) ** 2 / 1_000, 0);
  assert.ok(chi < 27.9, `not uniform: ${JSON.stringify(buckets)} chi2=${chi.toFixed(1)}`);
  const sameMs = waits.length - new Set(waits).size;
  assert.ok(sameMs < 400, `${sameMs} hosts share a millisecond`);
});

test('the same seed gives the same sequence (repeatable tests and simulations)', () => {
  const a = seededRandom(7);
  const b = seededRandom(7);
  assert.deepEqual([a(), a(), a()], [b(), b(), b()]);
});
