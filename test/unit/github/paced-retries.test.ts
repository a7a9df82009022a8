/**
 * GitHub retries of a host that knows its place in the fleet (host config `fleet`): the real
 * Octokit adapter over a fetch that answers from a script, on the manual clock. A failing host
 * sends again only at the start of its own slot; hosts of different indexes never share a slot;
 * a retry-after longer than that wins; and without a fleet section the waits are the full jitter
 * they always were.
 */
import { test } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { createOctokitPort } from '../../../src/github/octokit.js';
import { githubSlots } from '../../../src/github/fleet-pacing.js';
import { decideRetry } from '../../../src/github/retry-policy.js';
import type { FleetSlots } from '../../../src/lib/fleet-slots.js';

type Answer = 'network' | 'ok' | { secondary: number };

/** A host's adapter whose fetch answers `script` in order (then 'ok'), recording the clock at each request. */
function host(clock: ManualClock, script: Answer[], slots?: FleetSlots, random?: () => number) {
  const sent: number[] = [];
  const fetch: typeof globalThis.fetch = () => {
    sent.push(clock.now());
    const a = script.shift() ?? 'ok';
    if (a === 'network') return Promise.reject(new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') }));
    if (a === 'ok') return Promise.resolve(new Response(null, { status: 204 }));
    return Promise.resolve(
      new Response(
        JSON.stringify({ message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.' }),
        {
          status: 403,
          headers: { 'content-type': 'application/json', 'retry-after': String(a.secondary) },
        },
      ),
    );
  };
  const port = createOctokitPort({
    apiUrl: 'http://github.invalid',
    scope: { kind: 'org', org: 'acme' },
    auth: { kind: 'token', token: 'unit' },
    clock,
    log: silentLogger(),
    fetch,
    ...(slots ? { slots } : {}),
    ...(random ? { random } : {}),
  });
  return { port, sent };
}

/** Lets pending I/O and promise callbacks run; nothing here waits on a timer. */
async function settle(turns = 30): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0, 7);

test('a host that failed sends again only at the start of its own slot, one try per window', async () => {
  const slots = githubSlots({ size: 1000, index: 417 });
  const clock = new ManualClock(T0);
  const h = host(clock, ['network', 'network'], slots);
  const call = h.port.deleteRunner(5);
  await settle();
  assert.deepEqual(h.sent, [T0]);
  const first = slots.nextSlot(T0 + 1);
  clock.advance(first - T0 - 1);
  await settle();
  assert.equal(h.sent.length, 1, 'the retry went before the host slot');
  clock.advance(1);
  await settle();
  assert.deepEqual(h.sent, [T0, first], 'the retry did not go at the start of the host slot');
  clock.advance(slots.windowMs - 1);
  await settle();
  assert.equal(h.sent.length, 2, 'a second try went in the same window');
  clock.advance(1);
  assert.equal(await call, 'deleted');
  assert.deepEqual(h.sent, [T0, first, first + slots.windowMs]);
  assert.equal((first - slots.offsetMs) % slots.windowMs, 0, 'the slot is not this host’s offset of the window');
});

test('hosts of different indexes that failed at the same instant never retry in the same slot', async () => {
  const size = 40;
  const retries: number[] = [];
  for (let index = 0; index < size; index++) {
    const slots = githubSlots({ size, index });
    // Each host has its own clock (they are different machines); sleeps pass at once.
    const clock = ManualClock.instant(T0);
    const h = host(clock, ['network', { secondary: 1 }], slots);
    assert.equal(await h.port.deleteRunner(1), 'deleted');
    assert.equal(h.sent.length, 3);
    retries.push(h.sent[1]!, h.sent[2]!);
  }
  const slotMs = githubSlots({ size, index: 0 }).slotMs;
  const sorted = [...retries].sort((a, b) => a - b);
  for (let i = 1; i < sorted.length; i++) {
    assert.ok(
      sorted[i]! - sorted[i - 1]! >= Math.floor(slotMs),
      `two retries ${sorted[i]! - sorted[i - 1]!} ms apart (a slot is ${slotMs} ms)`,
    );
  }
  // The first retries of the whole fleet fit in one window after the failure: the fleet is back in one window.
  const firsts = retries.filter((_, i) => i % 2 === 0);
  assert.ok(Math.max(...firsts) - T0 <= githubSlots({ size, index: 0 }).windowMs);
});

test('a retry-after longer than the slot wins, and it holds every call of the host until that slot', async () => {
  const slots = githubSlots({ size: 100, index: 3 });
  assert.equal(slots.windowMs, 60_000, 'a fleet of 100 retries once a minute');
  const clock = new ManualClock(T0);
  const h = host(clock, [{ secondary: 150 }], slots);
  const first = h.port.deleteRunner(1);
  await settle();
  // Another call of the same host, made while the host is paused, waits for the same slot.
  const second = h.port.deleteRunner(2);
  await settle();
  assert.equal(h.sent.length, 1, 'a call went out while the host was paused');
  const at = slots.nextSlot(T0 + 150_000);
  assert.ok(at >= T0 + 150_000 && at < T0 + 150_000 + slots.windowMs);
  clock.advance(at - T0 - 1);
  await settle();
  assert.equal(h.sent.length, 1, 'the host did not wait for the retry-after and its slot after it');
  clock.advance(1);
  assert.deepEqual([await first, await second], ['deleted', 'deleted']);
  assert.deepEqual(h.sent, [T0, at, at]);
});

test('without a fleet section the waits are full jitter, as before', async () => {
  const r = 0.37;
  // A network failure: the call alone waits its jittered backoff.
  const clock = ManualClock.instant(T0);
  const h = host(clock, ['network'], undefined, () => r);
  await h.port.deleteRunner(1);
  const network = decideRetry({ network: true, headers: {}, attempt: 1, now: T0, random: () => r });
  assert.ok(network.retry);
  assert.deepEqual(h.sent, [T0, T0 + network.waitMs]);
  // A secondary limit: retry-after kept whole, jitter over at least a minute on top.
  const clock2 = ManualClock.instant(T0);
  const h2 = host(clock2, [{ secondary: 10 }], undefined, () => r);
  await h2.port.deleteRunner(1);
  assert.deepEqual(h2.sent, [T0, T0 + 10_000 + Math.floor(r * 60_001)]);
});

test('a token mint retried in slots past a JWT lifetime sends a JWT signed at each try', async () => {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const slots = githubSlots({ size: 1000, index: 9 });
  const clock = ManualClock.instant(T0);
  const mints: { at: number; iat: number }[] = [];
  let mintFailures = 3;
  const fetch: typeof globalThis.fetch = (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    const auth = new Headers(init?.headers).get('authorization') ?? '';
    if (url.endsWith('/access_tokens')) {
      const payload = JSON.parse(Buffer.from(auth.split(' ')[1]!.split('.')[1]!, 'base64url').toString()) as { iat: number };
      mints.push({ at: clock.now(), iat: payload.iat });
      if (mintFailures-- > 0) return Promise.reject(new TypeError('fetch failed'));
      const expires = new Date(clock.now() + 3_600_000).toISOString();
      return Promise.resolve(Response.json({ token: 'ghs_unit', expires_at: expires }, { status: 201 }));
    }
    assert.equal(auth, 'token ghs_unit');
    return Promise.resolve(new Response(null, { status: 204 }));
  };
  const port = createOctokitPort({
    apiUrl: 'http://github.invalid',
    scope: { kind: 'org', org: 'acme' },
    auth: { kind: 'app', appId: 1, installationId: 2, privateKey },
    clock,
    log: silentLogger(),
    fetch,
    slots,
  });
  assert.equal(await port.deleteRunner(1), 'deleted');
  assert.equal(mints.length, 4);
  assert.ok(mints[3]!.at - T0 > 10 * 60_000, 'the test must span more than a JWT lifetime');
  for (const m of mints) assert.equal(m.iat, Math.floor(m.at / 1000) - 60, 'a mint try carried a JWT signed at an earlier try');
});
