import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decideRetry,
  isRateLimited,
  LIMIT_JITTER_MAX_MS,
  MAX_TRIES,
  SECONDARY_LIMIT_MIN_MS,
  SERVER_ERROR_MAX_MS,
} from '../../../src/github/retry-policy.js';
import { seededRandom } from '../../../src/lib/backoff.js';

const now = Date.UTC(2026, 0, 1);
const base = { attempt: 1, now, headers: {} };
/** The lowest and the highest draw of the jitter. */
const LOW = (): number => 0;
const HIGH = (): number => 0.999_999_9;

type Kind = 'primary-limit' | 'secondary-limit' | 'retry-after' | 'server-error' | 'network';
const cases: { name: string; a: Parameters<typeof decideRetry>[0]; kind?: Kind; min?: number; max?: number }[] = [
  {
    name: 'a secondary limit with retry-after waits that many seconds, plus jitter over at least a minute',
    a: { ...base, status: 429, headers: { 'retry-after': '7' } },
    kind: 'secondary-limit',
    min: 7000,
    max: 67_000,
  },
  {
    name: 'a primary limit with retry-after gets jitter of at most its own length',
    a: { ...base, status: 403, headers: { 'retry-after': '7', 'x-ratelimit-remaining': '0' } },
    kind: 'primary-limit',
    min: 7000,
    max: 14_000,
  },
  {
    name: '403 with remaining 0 waits until the reset (plus a second), plus jitter',
    a: { ...base, status: 403, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(now / 1000 + 120) } },
    kind: 'primary-limit',
    min: 121_000,
    max: 242_000,
  },
  {
    name: 'a primary wait of an hour gets at most five minutes of jitter',
    a: { ...base, status: 403, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(now / 1000 + 3000) } },
    kind: 'primary-limit',
    min: 3_001_000,
    max: 3_001_000 + LIMIT_JITTER_MAX_MS,
  },
  {
    name: 'a secondary limit without headers waits at least 60 s',
    a: { ...base, status: 403, message: 'You have exceeded a secondary rate limit' },
    kind: 'secondary-limit',
    min: SECONDARY_LIMIT_MIN_MS,
    max: 2 * SECONDARY_LIMIT_MIN_MS,
  },
  {
    name: 'the secondary-limit wait doubles on the next try',
    a: { ...base, attempt: 2, status: 429, message: 'secondary rate limit' },
    kind: 'secondary-limit',
    min: 2 * SECONDARY_LIMIT_MIN_MS,
    max: 4 * SECONDARY_LIMIT_MIN_MS,
  },
  {
    name: 'a 503 with retry-after waits it',
    a: { ...base, status: 503, headers: { 'retry-after': '30' } },
    kind: 'retry-after',
    min: 30_000,
    max: 60_000,
  },
  { name: 'a 502 backs off with full jitter under one second', a: { ...base, status: 502 }, kind: 'server-error', min: 0, max: 1000 },
  {
    name: 'a network error backs off with full jitter under 4 s on the third try',
    a: { ...base, attempt: 3, network: true },
    kind: 'network',
    min: 0,
    max: 4000,
  },
  {
    name: 'the 5xx envelope is capped',
    a: { ...base, attempt: 4, status: 500 },
    kind: 'server-error',
    min: 0,
    max: Math.min(8000, SERVER_ERROR_MAX_MS),
  },
  { name: 'a 403 for a missing permission is not retried', a: { ...base, status: 403, message: 'Resource not accessible by integration' } },
  { name: 'a 401 is not retried', a: { ...base, status: 401 } },
  { name: 'a 409 is not retried', a: { ...base, status: 409 } },
  { name: 'nothing is retried after the last try', a: { ...base, attempt: MAX_TRIES, status: 503 } },
];

for (const c of cases) {
  test(c.name, () => {
    const low = decideRetry({ ...c.a, random: LOW });
    const high = decideRetry({ ...c.a, random: HIGH });
    if (c.kind === undefined) {
      assert.deepEqual(low, { retry: false });
      return;
    }
    assert.deepEqual(low, { retry: true, waitMs: c.min, kind: c.kind }, 'the lowest draw waits the least the rules allow');
    assert.deepEqual(high, { retry: true, waitMs: c.max, kind: c.kind }, 'the highest draw waits the envelope');
  });
}

test('a 403 that only lacks a permission is not taken for a rate limit', () => {
  assert.equal(isRateLimited({ status: 403, headers: { 'x-ratelimit-remaining': '4999' }, message: 'Must have admin rights' }), false);
});

test('jitter spreads 1,000 hosts told the same retry-after over the whole window (fixed seed)', () => {
  const random = seededRandom(20261207);
  const waits = Array.from({ length: 1000 }, () => {
    const d = decideRetry({ ...base, status: 403, headers: { 'retry-after': '60' }, message: 'secondary rate limit', random });
    assert.ok(d.retry);
    return d.waitMs;
  });
  assert.ok(Math.min(...waits) >= 60_000, 'nobody comes back before retry-after');
  // Ten 6-second buckets over [60 s, 120 s]: each should hold about 100; lockstep would put 1,000 in one.
  const buckets = new Array<number>(10).fill(0);
  for (const w of waits) buckets[Math.min(9, Math.floor((w - 60_000) / 6_000))]!++;
  assert.ok(Math.max(...buckets) <= 140 && Math.min(...buckets) >= 60, `retries bunch up: ${buckets.join(' ')}`);
  const sameSecond = new Map<number, number>();
  for (const w of waits) sameSecond.set(Math.floor(w / 1000), (sameSecond.get(Math.floor(w / 1000)) ?? 0) + 1);
  assert.ok(Math.max(...sameSecond.values()) <= 40, 'no second gets more than a few percent of the fleet');
});

test('jitter spreads 1,000 server-error retries over the backoff envelope (fixed seed)', () => {
  const random = seededRandom(7);
  const waits = Array.from({ length: 1000 }, () => {
    const d = decideRetry({ ...base, attempt: 4, status: 503, random });
    assert.ok(d.retry);
    return d.waitMs;
  });
  const mean = waits.reduce((s, w) => s + w, 0) / waits.length;
  assert.ok(mean > 3_500 && mean < 4_500, `full jitter over [0, 8 s] has a mean near 4 s, got ${mean}`);
  assert.ok(waits.filter((w) => w < 800).length > 50, 'full jitter reaches the bottom of the envelope');
});
