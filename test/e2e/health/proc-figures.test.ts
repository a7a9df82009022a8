/**
 * The /proc-backed CPU and memory figures the agent samples instead of loading systeminformation:
 * the busy share since the previous read, MemAvailable counted as free, and a malformed file named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import si from 'systeminformation';
import { procSources } from '../../../src/health/proc-figures.js';

test('CPU load is the busy share since the previous read; memory counts MemAvailable as free', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-proc-figures-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const stat = (user: number, idle: number): Promise<void> =>
    writeFile(path.join(dir, 'stat'), `cpu  ${user} 0 0 ${idle} 0 0 0 0 0 0\ncpu0 ${user} 0 0 ${idle} 0 0 0 0 0 0\nintr 1\n`);
  const src = procSources(dir);
  await stat(100, 300);
  assert.equal(await src.cpuLoadPercent(), 25, 'the first read is the average since boot');
  await stat(190, 310); // 90 busy of 100
  assert.equal(await src.cpuLoadPercent(), 90);
  assert.equal(await src.cpuLoadPercent(), undefined, 'no time passed: no figure rather than 0 or NaN');
  await writeFile(path.join(dir, 'meminfo'), 'MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    250 kB\nCached: 150 kB\n');
  assert.equal(await src.memUsedPercent(), 75);
  await writeFile(path.join(dir, 'stat'), 'intr 1\n');
  await assert.rejects(src.cpuLoadPercent(), (e: Error) => e.message.includes(`${dir}/stat: expected a "cpu" line first`));
});

test("on this host the memory figure agrees with systeminformation's", async () => {
  const [ours, theirs] = await Promise.all([procSources().memUsedPercent(), si.mem()]);
  const expected = ((theirs.total - theirs.available) / theirs.total) * 100;
  assert.ok(ours !== undefined && Math.abs(ours - expected) < 5, `ours ${String(ours)} %, systeminformation ${expected} %`);
});
