/**
 * The demo's image cache is supervised: killed, it is started again on the same address after a
 * full-jitter backoff that grows while starts fail (here its port is taken meanwhile), each exit
 * and restart logged; while it is down the agent's /metrics says so (runner_warden_mirror_up 0),
 * and 1 again once it serves. Skipped where docker-registry is not installed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fsp } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { createLogger } from '../../../src/lib/log.js';
import { REGISTRY_BINARY, startLoopbackMirror } from '../../../src/engine/mirror-child.js';
import type { RegistryMirror } from '../../../src/engine/mirror.js';
import { MirrorSupervisor } from '../../../src/engine/mirror-supervisor.js';
import { mirrorDebugAddress, registerMirrorMetrics } from '../../../src/engine/mirror-metrics.js';

let root: string;
let mirror: RegistryMirror | undefined;
/** Stopped before the registry, whatever the test's outcome: a running supervisor would start it again. */
const stop = new AbortController();
let running: Promise<void> | undefined;

before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'rw-mirror-sup-'));
});

after(async () => {
  stop.abort();
  await running;
  await mirror?.stop();
  await fsp.rm(root, { recursive: true, force: true });
});

const answers = (url: string): Promise<boolean> =>
  fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2_000) }).then(
    (r) => r.status === 200,
    () => false,
  );

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test(
  'a killed cache is restarted on its address with a growing backoff, logged, and /metrics says it is down meanwhile',
  { timeout: 120_000, skip: !existsSync(REGISTRY_BINARY) && `${REGISTRY_BINARY} is not installed` },
  async () => {
    const started = await startLoopbackMirror({ storage: path.join(root, 'store'), upstream: undefined, capBytes: 1 << 30 });
    assert.ok('mirror' in started, JSON.stringify(started));
    mirror = started.mirror;
    const url = mirror.url;
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({
      level: 'debug',
      destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) },
    });
    const metrics = new Registry();
    registerMirrorMetrics(metrics, () => mirrorDebugAddress(url));
    const up = async (): Promise<string | undefined> => /^runner_warden_mirror_up (\d)$/m.exec(await metrics.metrics())?.[1];
    assert.equal(await up(), '1');

    // random just under 1: each wait is the backoff's whole envelope (1.5 s, then 3 s), so the growth shows.
    const sup = new MirrorSupervisor(mirror, {
      log,
      name: 'image cache',
      backoff: { baseMs: 1_500, maxMs: 6_000 },
      random: () => 0.9999999,
    });
    const stop = new AbortController();
    const running = sup.run(stop.signal);
    const pid = mirror.pid;
    assert.ok(pid, 'the registry runs');
    process.kill(pid, 'SIGKILL');
    await until('the supervisor to see the exit', () => !sup.state.up);
    // Its port taken while it is down: the first restart fails and the next waits longer.
    // (It drops each connection: a held one would keep close() waiting.)
    const squatter = net.createServer((c) => c.destroy());
    const port = Number(new URL(url).port);
    await new Promise<void>((resolve, reject) => {
      squatter.once('error', reject);
      squatter.listen(port, '127.0.0.1', resolve);
    });
    try {
      assert.equal(await answers(url), false);
      // (A scrape's collectors share one read of the debug server for a second.)
      await until('/metrics to say the cache is down', async () => (await up()) === '0', 5_000);
      await until('a failed restart', () => sup.state.failedStarts >= 1);
    } finally {
      await new Promise<void>((r) => squatter.close(() => r()));
    }
    await until('the restart', () => sup.state.restarts === 1);
    assert.equal(await answers(url), true, 'the same address serves again');
    assert.equal(await up(), '1');
    assert.ok(mirror.pid && mirror.pid !== pid, 'a new process');

    const msgs = lines.map((l) => String(l.msg));
    assert.ok(msgs.includes('image cache exited'), msgs.join(' | '));
    assert.equal(lines.find((l) => l.msg === 'image cache exited')?.signal, 'SIGKILL');
    assert.ok(msgs.includes('image cache did not start again'), msgs.join(' | '));
    assert.ok(msgs.includes('image cache restarted'), msgs.join(' | '));
    const waits = lines.filter((l) => l.msg === 'image cache: restart after a wait').map((l) => Number(l.waitMs));
    assert.deepEqual(waits.slice(0, 2), [1_500, 3_000], 'full jitter under a doubling envelope');
    stop.abort();
    await running;
    assert.equal(await answers(url), true, 'stopping the supervisor leaves the cache to its owner');
  },
);
