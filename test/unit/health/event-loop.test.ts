import assert from 'node:assert/strict';
import test from 'node:test';
import { DelaySamples, EVENT_LOOP_MAX_SAMPLES } from '../../../src/health/event-loop.js';

test('percentiles are the nearest rank of the samples held and the max is in seconds', () => {
  const s = new DelaySamples(3000);
  // 1..100 ms in a shuffled order: p50 is 50 ms, p99 is 99 ms, max 100 ms.
  for (let i = 0; i < 100; i++) s.record(((i * 37) % 100) + 1);
  const f = s.figures();
  assert.equal(s.count, 100);
  assert.equal(f.p50, 0.05, 'p50 should be the 50th smallest of 100 samples');
  assert.equal(f.p99, 0.099, 'p99 should be the 99th smallest of 100 samples');
  assert.equal(f.max, 0.1, 'max should be in seconds');
});

test('a timer that fired early counts as no delay, and nothing recorded reads as zeros', () => {
  const s = new DelaySamples(10);
  assert.deepEqual(s.figures(), { p50: 0, p99: 0, max: 0 });
  s.record(-0.4);
  assert.deepEqual(s.figures(), { p50: 0, p99: 0, max: 0 });
});

test('a full ring keeps the latest samples for percentiles and the maximum of the whole window', () => {
  const s = new DelaySamples(4);
  s.record(500); // the stall, then overwritten by four quiet samples
  for (let i = 0; i < 4; i++) s.record(1);
  const f = s.figures();
  assert.equal(s.count, 4, 'the ring holds its capacity, no more');
  assert.equal(f.p99, 0.001, 'percentiles are over the samples still held');
  assert.equal(f.max, 0.5, 'the max must not forget a stall that left the ring');
  s.reset();
  assert.deepEqual(s.figures(), { p50: 0, p99: 0, max: 0 }, 'reset starts a new window');
});

test('the ring is bounded whatever window it is asked for', () => {
  const s = new DelaySamples(1e9);
  for (let i = 0; i < EVENT_LOOP_MAX_SAMPLES + 10; i++) s.record(i);
  assert.equal(s.count, EVENT_LOOP_MAX_SAMPLES);
  assert.equal(s.figures().max, (EVENT_LOOP_MAX_SAMPLES + 9) / 1e3);
});
