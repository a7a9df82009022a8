/**
 * A fleet recycled at once against a cloud API's token bucket (the sims' RateBucket), every host
 * through sendThrottled on one simulated clock. With the fleet section each refused host retries
 * in its own slot of a window sized from the bucket: all are through within size / perSecond (+5%),
 * none refused twice, and no first call is held back. Without it: full jitter,
 * as before, and hosts are refused again and again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Clock } from '../../../src/lib/clock.js';
import { seededRandom } from '../../../src/lib/backoff.js';
import { sendThrottled, type ThrottleVerdict } from '../../../src/recycle/throttle.js';
import { CLOUD_API_RATES, recycleWindowMs, type ApiRate } from '../../../src/recycle/cloud-slots.js';
import { RateBucket } from '../../../src/sim/cloud-rate.js';

/** A clock whose time moves to the next sleeper once everyone is asleep. */
class StepClock implements Clock {
  private t = Date.UTC(2026, 0, 1, 3, 0, 0, 123);
  private sleepers: { until: number; resolve: () => void }[] = [];
  now(): number {
    return this.t;
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.sleepers.push({ until: this.t + ms, resolve }));
  }
  /** Wakes the earliest sleepers; false when none is left. */
  step(): boolean {
    if (this.sleepers.length === 0) return false;
    const next = Math.min(...this.sleepers.map((s) => s.until));
    this.t = Math.max(this.t, next);
    const due = this.sleepers.filter((s) => s.until <= this.t);
    this.sleepers = this.sleepers.filter((s) => s.until > this.t);
    for (const s of due) s.resolve();
    return true;
  }
}

async function recycleAtOnce(hosts: number, rate: ApiRate, paced: boolean): Promise<{ doneMs: number; most: number; first: number[] }> {
  const clock = new StepClock();
  const bucket = new RateBucket(rate, clock);
  const t0 = clock.now();
  const throttles: number[] = [];
  const first: number[] = [];
  let doneAt = t0;
  const runs = Array.from({ length: hosts }, async (_, index) => {
    let sent = 0;
    const send = (): Promise<ThrottleVerdict> => {
      if (sent++ === 0) first.push(clock.now());
      const wait = bucket.take();
      // AWS sends no Retry-After; Azure does (here: when the next token comes).
      return Promise.resolve(wait === undefined ? { kind: 'final' } : { kind: 'throttled', retryAfterMs: Math.ceil(wait / 1000) * 1000 });
    };
    const r = await sendThrottled(
      send,
      (v) => v,
      new AbortController().signal,
      { clock, random: seededRandom(index + 1), ...(paced ? { fleet: { size: hosts, index } } : {}) },
      3,
      undefined,
      rate,
    );
    assert.equal(r.answer.kind, 'final', `host ${index} ran out of tries`);
    throttles.push(r.throttled);
    doneAt = Math.max(doneAt, clock.now());
  });
  let settled = false;
  void Promise.all(runs).then(() => (settled = true));
  for (;;) {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    if (settled || !clock.step()) break;
  }
  await Promise.all(runs);
  return { doneMs: doneAt - t0, most: Math.max(...throttles), first: first.map((t) => t - t0) };
}

for (const [provider, hosts] of [
  ['aws-asg', 1000],
  ['azure-vmss', 1000],
] as const) {
  const rate = CLOUD_API_RATES[provider];
  const boundMs = ((hosts - rate.burst) / rate.perSecond) * 1000;

  // The slots cannot know which hosts the burst took: the fleet is through within size / perSecond
  // (+5%, + one Retry-After), 1.1x the bound on AWS's bucket, 1.3x on Azure's larger burst.
  const windowMs = recycleWindowMs(hosts, rate) + 1_000;
  test(`${hosts} hosts recycled at once against ${provider}'s bucket: through within ${(windowMs / boundMs).toFixed(2)}x of the bound, none refused twice`, async () => {
    const r = await recycleAtOnce(hosts, rate, true);
    assert.ok(r.doneMs <= windowMs, `${r.doneMs} ms against a window of ${windowMs} ms (bound ${boundMs} ms)`);
    if (provider === 'aws-asg') assert.ok(r.doneMs <= 1.2 * boundMs, `${r.doneMs} ms is more than 1.2x the bound ${boundMs} ms`);
    assert.equal(r.most, 1, 'a host was refused more than once');
    assert.deepEqual(new Set(r.first), new Set([0]), 'a first call was held back');
  });

  test(`without the fleet section the same recycle is full jitter: hosts are refused more than once (${provider})`, async () => {
    const r = await recycleAtOnce(hosts, rate, false);
    assert.ok(r.most > 1, `most refusals of one host: ${r.most}`);
  });
}
