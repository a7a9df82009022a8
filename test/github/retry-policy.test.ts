import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideRetry, isRateLimited, MAX_TRIES, SECONDARY_LIMIT_MIN_MS } from '../../src/github/retry-policy.js';

const now = Date.UTC(2026, 0, 1);
const base = { attempt: 1, now, headers: {} };

const cases: { name: string; a: Parameters<typeof decideRetry>[0]; expect: ReturnType<typeof decideRetry> }[] = [
  { name: '429 with retry-after waits that many seconds', a: { ...base, status: 429, headers: { 'retry-after': '7' } }, expect: { retry: true, waitMs: 7000, kind: 'secondary-limit' } },
  {
    name: '403 with remaining 0 waits until the reset (plus a second)',
    a: { ...base, status: 403, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(now / 1000 + 120) } },
    expect: { retry: true, waitMs: 121_000, kind: 'primary-limit' },
  },
  {
    name: 'a secondary limit without headers waits at least 60 s',
    a: { ...base, status: 403, message: 'You have exceeded a secondary rate limit' },
    expect: { retry: true, waitMs: SECONDARY_LIMIT_MIN_MS, kind: 'secondary-limit' },
  },
  {
    name: 'the secondary-limit wait doubles on the next try',
    a: { ...base, attempt: 2, status: 429, message: 'secondary rate limit' },
    expect: { retry: true, waitMs: 2 * SECONDARY_LIMIT_MIN_MS, kind: 'secondary-limit' },
  },
  { name: 'a 502 backs off from one second', a: { ...base, status: 502 }, expect: { retry: true, waitMs: 1000, kind: 'server-error' } },
  { name: 'a network error backs off exponentially', a: { ...base, attempt: 3, network: true }, expect: { retry: true, waitMs: 4000, kind: 'network' } },
  { name: 'a 403 for a missing permission is not retried', a: { ...base, status: 403, message: 'Resource not accessible by integration' }, expect: { retry: false } },
  { name: 'a 401 is not retried', a: { ...base, status: 401 }, expect: { retry: false } },
  { name: 'a 409 is not retried', a: { ...base, status: 409 }, expect: { retry: false } },
  { name: 'nothing is retried after the last try', a: { ...base, attempt: MAX_TRIES, status: 503 }, expect: { retry: false } },
];

for (const c of cases) {
  test(c.name, () => {
    assert.deepEqual(decideRetry(c.a), c.expect, 'the retry rules of runner-contract.md §7 changed');
  });
}

test('a 403 that only lacks a permission is not taken for a rate limit', () => {
  assert.equal(isRateLimited({ status: 403, headers: { 'x-ratelimit-remaining': '4999' }, message: 'Must have admin rights' }), false);
});
