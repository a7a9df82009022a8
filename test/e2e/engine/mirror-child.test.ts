/**
 * The image cache as a child process (what the demo runs): it starts only where docker-registry is
 * installed and otherwise says why, never throws; a cache whose upstream does not answer (the
 * proxy exits at start) is a reason too; the debug server is on the next port, where the agent's
 * /metrics looks for a loopback mirror's counters.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { startLoopbackMirror } from '../../../src/engine/mirror-child.js';
import { mirrorStats, type RegistryMirror } from '../../../src/engine/mirror.js';
import { mirrorDebugAddress } from '../../../src/engine/mirror-metrics.js';
import { freePort } from '../../../bench/registry-upstream.js';

let lab: Lab;
const started: RegistryMirror[] = [];

before(async () => {
  lab = await createLab('rw-mirror-child-');
});

after(async () => {
  for (const m of started) await m.stop();
  await lab.dispose();
});

test('no docker-registry installed: a reason naming the package, no throw', async () => {
  const r = await startLoopbackMirror({
    storage: path.join(lab.root, 'none', 'store'),
    upstream: undefined,
    capBytes: 0,
    binary: path.join(lab.root, 'absent'),
  });
  assert.ok('skipped' in r && /apt-get install docker-registry/.test(r.skipped), JSON.stringify(r));
});

test('a cache before a local registry answers, with its counters on the next port', async () => {
  const upstream = await startLoopbackMirror({ storage: path.join(lab.root, 'up', 'store'), upstream: undefined, capBytes: 0 });
  assert.ok('mirror' in upstream, JSON.stringify(upstream));
  started.push(upstream.mirror);
  const cache = await startLoopbackMirror({
    storage: path.join(lab.root, 'cache', 'store'),
    upstream: upstream.mirror.url,
    capBytes: 1 << 30,
  });
  assert.ok('mirror' in cache, JSON.stringify(cache));
  started.push(cache.mirror);
  assert.equal((await fetch(`${cache.mirror.url}/v2/`)).status, 200);
  const debug = mirrorDebugAddress(cache.mirror.url);
  assert.equal(debug, cache.mirror.opts.debugListen);
  assert.ok(await mirrorStats(debug), 'the debug server did not answer on the next port');
});

test('a cache whose upstream does not answer is a reason (the proxy exits at start), not a throw', async () => {
  const closed = `http://127.0.0.1:${await freePort()}`;
  const r = await startLoopbackMirror({ storage: path.join(lab.root, 'dead', 'store'), upstream: closed, capBytes: 1 << 30 });
  if ('mirror' in r) started.push(r.mirror);
  assert.ok('skipped' in r && /did not answer/.test(r.skipped), JSON.stringify(r));
});
