import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { HostFiguresSampler, systemSources, type HostSample } from '../../../src/health/host-figures.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { createLogger } from '../../../src/lib/log.js';

const fakeSources = { cpuLoadPercent: async () => 12.345, memUsedPercent: async () => 40 };

/** Lets pending promise callbacks run (the sampler awaits statfs between sleeps). */
/** Lets the sampler's real statfs finish: polls until `done` (or 2 s), since I/O under load can take longer than a few ticks. */
async function settle(done: () => boolean = () => false): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 200 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
}

test('the sampler reports CPU, memory and the work filesystem, then samples again each interval', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-hostfig-'));
  try {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const samples: HostSample[] = [];
    const sampler = new HostFiguresSampler({ workDir: dir, clock, sources: fakeSources, onSample: (s) => samples.push(s) });
    const ac = new AbortController();
    const running = sampler.run(ac.signal);
    await settle(() => samples.length >= 1 && clock.sleeps.length >= 1);
    assert.equal(samples.length, 1, 'first sample should be taken at once');
    const s = samples[0] as HostSample;
    assert.equal(s.cpuLoadPercent, 12.35);
    assert.equal(s.memUsedPercent, 40);
    assert.ok((s.workFsFreeBytes ?? 0) > 0, 'free bytes of the temp filesystem');
    assert.ok((s.workFsFreePercent ?? -1) >= 0 && (s.workFsFreePercent ?? 101) <= 100);
    assert.equal(s.updatedAt, '2026-01-01T00:00:00.000Z');
    assert.deepEqual(clock.sleeps, [15_000], 'default interval is 15 s');
    clock.advance(15_000);
    await settle(() => samples.length >= 2);
    assert.equal(samples.length, 2, 'second sample after one interval');
    ac.abort();
    await running;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a figure that cannot be read is left out and logged, and sampling goes on', async () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'warn', destination: { write: (l: string) => void lines.push(l) } });
  const sampler = new HostFiguresSampler({
    workDir: path.join(os.tmpdir(), 'rw-does-not-exist-', String(process.pid), 'x'),
    sources: { cpuLoadPercent: async () => Promise.reject(new Error('no /proc')), memUsedPercent: async () => 55 },
    onSample: () => undefined,
    log,
  });
  const s = await sampler.sampleOnce();
  assert.equal(s.memUsedPercent, 55);
  assert.equal(s.cpuLoadPercent, undefined);
  assert.equal(s.workFsFreeBytes, undefined);
  const figures = lines.map((l) => (JSON.parse(l) as { figure: string }).figure).sort();
  assert.deepEqual(figures, ['cpu', 'work fs']);
});

test('systeminformation sources give plausible percentages on this host', async () => {
  const mem = await systemSources.memUsedPercent();
  assert.ok(mem !== undefined && mem > 0 && mem < 100, `memory used ${mem}%`);
  const cpu = await systemSources.cpuLoadPercent();
  assert.ok(cpu !== undefined && cpu >= 0 && cpu <= 100, `cpu load ${cpu}%`);
});
