import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { seededRandom } from '../../../src/lib/backoff.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { chainProviders } from '../../../src/recycle/chain.js';
import type { WebhookRecycleConfig } from '../../../src/recycle/config.js';
import { backoffMs, signBody, webhookProvider } from '../../../src/recycle/webhook.js';
import { startWebhookReceiver, verifySignature, type WebhookReceiver } from '../../../src/sim/webhook/receiver.js';
import { never, sampleEvent, tempRoot } from './fixtures.js';

const SECRET = 'whsec-test-0123456789abcdef';

async function withReceiver(
  fn: (rx: WebhookReceiver, config: WebhookRecycleConfig, root: string) => Promise<void>,
  receiverSecret = SECRET,
): Promise<void> {
  const { root, dispose } = await tempRoot();
  const rx = await startWebhookReceiver({ secret: receiverSecret });
  try {
    const secretFile = path.join(root, 'webhook.secret');
    await writeFile(secretFile, `${SECRET}\n`, { mode: 0o600 });
    await fn(rx, { provider: 'webhook', url: rx.url, secretFile }, root);
  } finally {
    await rx.close();
    await dispose();
  }
}

test('the event is delivered once, signed, and the receiver verifies the signature', async () => {
  await withReceiver(async (rx, config) => {
    const clock = ManualClock.instant();
    const event = sampleEvent();
    const out = await webhookProvider(config, { clock }).recycle(event, never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(rx.events, [event], 'the body must be the event as JSON');
    assert.deepEqual(
      rx.deliveries.map((d) => [d.signatureValid, d.idempotencyKey, d.status]),
      [[true, event.idempotencyKey, 202]],
    );
    assert.deepEqual(clock.sleeps, [], 'a first-time success must not wait');
  });
});

test('the signature is sha256= and the hex HMAC of the exact body', () => {
  const body = JSON.stringify(sampleEvent());
  const sig = signBody(SECRET, body);
  assert.match(sig, /^sha256=[0-9a-f]{64}$/);
  assert.equal(verifySignature(SECRET, Buffer.from(body), sig), true);
  assert.equal(verifySignature(SECRET, Buffer.from(`${body} `), sig), false, 'one changed byte must break the signature');
  assert.equal(verifySignature('other', Buffer.from(body), sig), false);
});

/** A jitter source in the middle of [0, 1): each wait is then half its envelope. */
const half = (): number => 0.5;

test('5xx answers are retried with full-jitter exponential backoff on the injected clock', async () => {
  await withReceiver(async (rx, config) => {
    rx.failNext(503, 2);
    const clock = ManualClock.instant();
    const out = await webhookProvider({ ...config, initialBackoffMs: 500 }, { clock, random: half }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.match(out.detail, /attempt 3/);
    assert.deepEqual(
      rx.deliveries.map((d) => d.status),
      [503, 503, 202],
    );
    assert.deepEqual(clock.sleeps, [250, 500], 'each wait is drawn under an envelope doubling from initialBackoffMs');
    assert.equal(rx.events.length, 1);
  });
});

test('a 4xx answer is final and not retried', async () => {
  await withReceiver(async (rx, config) => {
    rx.failNext(422, 5);
    const clock = ManualClock.instant();
    const out = await webhookProvider(config, { clock }).recycle(sampleEvent(), never);
    assert.equal(out.ok, false);
    assert.match(out.detail, /receiver refused the event: HTTP 422 \(attempt 1, not retried\)/);
    assert.equal(rx.deliveries.length, 1, 'a 4xx must not be retried');
    assert.deepEqual(clock.sleeps, []);
  });
});

test('a receiver with another secret refuses the signature and the refusal is final', async () => {
  await withReceiver(async (rx, config) => {
    const out = await webhookProvider(config, { clock: ManualClock.instant() }).recycle(sampleEvent(), never);
    assert.equal(out.ok, false);
    assert.match(out.detail, /HTTP 401/);
    assert.deepEqual(
      rx.deliveries.map((d) => d.signatureValid),
      [false],
    );
  }, 'a-different-secret');
});

test('network errors are retried up to maxAttempts and then reported', async () => {
  await withReceiver(async (_rx, config) => {
    const clock = ManualClock.instant();
    const out = await webhookProvider({ ...config, url: 'http://127.0.0.1:9/recycle', maxAttempts: 4 }, { clock, random: half }).recycle(
      sampleEvent(),
      never,
    );
    assert.equal(out.ok, false);
    assert.match(out.detail, /^not delivered after 4 attempts; last: HttpNetworkError: connect ECONNREFUSED/);
    assert.deepEqual(clock.sleeps, [500, 1000, 2000], 'three waits between four attempts');
  });
});

test('the backoff envelope doubles and is capped', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7].map((n) => backoffMs(n, 1000, 30_000)),
    [1000, 2000, 4000, 8000, 16000, 30000, 30000],
  );
});

test('1,000 hosts whose receiver failed them at once spread their retries over the whole envelope (fixed seed)', async () => {
  await withReceiver(async (rx, config) => {
    const waits: number[] = [];
    for (let host = 0; host < 1000; host++) {
      rx.failNext(503, 1);
      const clock = ManualClock.instant();
      const event = { ...sampleEvent(), host: `h${host}`, idempotencyKey: `h${host}:recycle` };
      const out = await webhookProvider({ ...config, initialBackoffMs: 10_000 }, { clock, random: seededRandom(host + 1) }).recycle(
        event,
        never,
      );
      assert.equal(out.ok, true, out.detail);
      waits.push(...clock.sleeps);
    }
    assert.equal(waits.length, 1000);
    assert.ok(Math.max(...waits) <= 10_000, 'never past the envelope');
    // Ten buckets of a second: each holds about a tenth of the fleet, none more than twice that.
    const buckets = Array.from({ length: 10 }, (_, i) => waits.filter((w) => w >= i * 1000 && w < (i + 1) * 1000).length);
    assert.ok(
      buckets.every((n) => n >= 60 && n <= 140),
      `retries bunched: ${buckets.join(' ')}`,
    );
    assert.ok(new Set(waits).size > 900, 'hosts must not share their waits');
  });
});

test("a receiver's Retry-After is kept whole, the jitter on top", async () => {
  await withReceiver(async (rx, config) => {
    rx.failNext(429, 2, 30);
    const clock = ManualClock.instant();
    const out = await webhookProvider({ ...config, initialBackoffMs: 1000 }, { clock, random: half }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(clock.sleeps, [30_000 + 500, 30_000 + 1000]);
  });
});

test('a repeated delivery with the same idempotency key is recorded once by the receiver', async () => {
  await withReceiver(async (rx, config) => {
    const provider = webhookProvider(config, { clock: ManualClock.instant() });
    assert.equal((await provider.recycle(sampleEvent(), never)).ok, true);
    assert.equal((await provider.recycle(sampleEvent(), never)).ok, true, 'a duplicate is still a success for the sender');
    assert.equal(rx.deliveries.length, 2);
    assert.equal(rx.events.length, 1, 'the receiver must deduplicate by Idempotency-Key');
  });
});

test('a secret file readable by group or others is refused and nothing is sent', async () => {
  await withReceiver(async (rx, config) => {
    await chmod(config.secretFile, 0o640);
    const out = await webhookProvider(config, { clock: ManualClock.instant() }).recycle(sampleEvent(), never);
    assert.equal(out.ok, false);
    assert.match(out.detail, /must be owned by root with mode 600 or stricter/);
    assert.equal(rx.deliveries.length, 0);
    assert.doesNotMatch(out.detail, new RegExp(SECRET), 'the secret must never appear in a detail');
  });
});

test('an abort during the backoff stops the retries and the chain', async () => {
  await withReceiver(async (rx, config) => {
    rx.failNext(500, 10);
    const clock = new ManualClock();
    const ac = new AbortController();
    clock.onSleep = () => ac.abort();
    const recycler = chainProviders([webhookProvider(config, { clock })], { clock });
    const out = await recycler.recycle(sampleEvent(), ac.signal);
    assert.equal(out.aborted, true, 'shutdown during a backoff must end the recycle as aborted');
    assert.equal(rx.deliveries.length, 1, 'no delivery after the abort');
  });
});
