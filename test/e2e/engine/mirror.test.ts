/**
 * The image cache no job can poison: a proxy-mode docker-registry between every per-job engine
 * and a local upstream. Job B's pull of what job A pulled is served by the mirror (the upstream
 * sees one fetch of the layer), and the agent's /metrics shows the mirror's counters; a push
 * through the mirror is refused; the cap empties the cache.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { engineLayout } from '../../../src/engine/rootless-engine.js';
import { RegistryMirror, mirrorStats, cacheBytes } from '../../../src/engine/mirror.js';
import { registerMirrorMetrics } from '../../../src/engine/mirror-metrics.js';
import { Registry } from 'prom-client';
import { busyboxTar, dockerCli, dockerPolicy, dockerTry, guardCtx, makeJob, openTun } from './fixture.js';
import { freePort, pushImage, startUpstream, type Upstream } from '../../../bench/registry-upstream.js';

let lab: Lab;
let restoreTun: () => Promise<void>;
let upstream: Upstream;
let mirror: RegistryMirror;
const guard = new EngineGuard({ cgroupParent: 'rw-test-engine' });

before(async () => {
  lab = await createLab('rw-mirror-');
  restoreTun = await openTun();
  upstream = await startUpstream(lab.root);
  mirror = new RegistryMirror({
    listen: `127.0.0.1:${await freePort()}`,
    debugListen: `127.0.0.1:${await freePort()}`,
    storage: path.join(lab.root, 'mirror', 'cache'),
    upstream: upstream.url,
    capBytes: 1 << 30,
  });
  await mirror.start();
});

after(async () => {
  await guard.drain();
  await mirror?.stop();
  await upstream?.stop();
  await restoreTun();
  await lab.dispose();
  for (const ctrl of await fsp.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    await fsp.rmdir(path.join('/sys/fs/cgroup', ctrl, 'rw-test-engine')).catch(() => undefined);
  }
});

test("job B's pull of the image job A pulled is served by the mirror: the upstream sees one fetch", async () => {
  const { layer } = await pushImage(upstream.url, 'library/busybox', '1', await fsp.readFile(await busyboxTar(lab.root)));
  upstream.blobFetches.clear();
  const policy = dockerPolicy({ mode: 'isolated', mirror: mirror.url });
  const fetchesAfter: Record<string, number> = {};
  for (const name of ['job-a', 'job-b']) {
    const job = await makeJob(lab, name);
    await guard.prepare(job, policy, guardCtx());
    const docker = dockerCli(lab, engineLayout(job.dir).socket);
    await docker('pull', 'busybox:1');
    assert.equal(await docker('run', '--rm', 'busybox:1', 'echo', 'hi'), 'hi');
    if (name === 'job-b') {
      // A container on a bridge network of the job's own reaches out through slirp (the engine's
      // one masquerade rule; dockerd's own netfilter set-up is off): here the loopback mirror.
      await docker('network', 'create', 'b-net');
      const v2 = await docker(
        'run',
        '--rm',
        '--network',
        'b-net',
        'busybox:1',
        'busybox',
        'wget',
        '-q',
        '-O-',
        `http://10.0.2.2:${new URL(mirror.url).port}/v2/`,
      );
      assert.equal(v2, '{}', 'a container on a bridge network could not reach out');
    }
    if (name === 'job-a') {
      // A job cannot write into the cache: a push through the mirror is refused.
      await docker('tag', 'busybox:1', `${new URL(mirror.url).host.replace('127.0.0.1', '10.0.2.2')}/library/busybox:1`);
      const push = await dockerTry(docker, 'push', `${new URL(mirror.url).host.replace('127.0.0.1', '10.0.2.2')}/library/busybox:1`);
      assert.equal(push.ok, false, `a push into the mirror was accepted: ${push.out}`);
    }
    assert.equal((await guard.release(job, policy, guardCtx())).outcome, 'ok');
    fetchesAfter[name] = upstream.blobFetches.get(layer) ?? 0;
  }
  // distribution 2.8's proxy reads a missing blob from its upstream twice (one stream to the
  // client, one to its store), so "one fetch" is one miss: job A's; job B adds none.
  assert.ok((fetchesAfter['job-a'] ?? 0) >= 1, 'job A pulled the layer from the upstream through the mirror');
  assert.equal(fetchesAfter['job-b'], fetchesAfter['job-a'], `job B's pull reached the upstream: ${JSON.stringify(fetchesAfter)}`);
  const stats = await mirrorStats(mirror.opts.debugListen);
  assert.ok(
    stats && stats.manifestMisses === 1 && stats.manifestHits >= 1 && stats.blobHits >= 1,
    `mirror counters: ${JSON.stringify(stats)}`,
  );
  // The same counters on the agent's /metrics.
  const registry = new Registry();
  registerMirrorMetrics(
    registry,
    () => mirror.opts.debugListen,
    () => mirror.opts.storage,
  );
  const text = await registry.metrics();
  assert.match(text, /^runner_warden_mirror_up 1$/m);
  assert.match(text, new RegExp(`^runner_warden_mirror_hits_total\\{kind="blob"\\} ${stats?.blobHits}$`, 'm'));
  assert.match(text, new RegExp(`^runner_warden_mirror_misses_total\\{kind="manifest"\\} ${stats?.manifestMisses}$`, 'm'));
  assert.match(text, new RegExp(`^runner_warden_mirror_served_bytes_total ${stats?.bytesServed}$`, 'm'));
  assert.ok(
    (stats?.bytesServed ?? 0) > (2 * (await fsp.stat(await busyboxTar(lab.root))).size) / 4,
    'the mirror counted less than the layer it served twice',
  );
  const cached = Number(/^runner_warden_mirror_cache_bytes (\d+)$/m.exec(text)?.[1]);
  assert.ok(cached >= (await cacheBytes(mirror.opts.storage)) * 0.9 && cached > 0, `cache bytes ${cached}`);
  const closed = `127.0.0.1:${await freePort()}`;
  const down = new Registry();
  registerMirrorMetrics(down, () => closed);
  assert.match(await down.metrics(), /^runner_warden_mirror_up 0$/m, 'a mirror that does not answer is up 0');
  // A direct upload to the mirror from the host is refused too (proxy mode serves pulls only).
  const upload = await fetch(`${mirror.url}/v2/library/busybox/blobs/uploads/`, { method: 'POST' });
  assert.notEqual(upload.status, 202, 'the mirror accepted an upload');
});

test('over its cap the cache is emptied and the mirror serves again', async () => {
  const capped = new RegistryMirror({ ...mirror.opts, capBytes: 0 });
  assert.ok((await cacheBytes(mirror.opts.storage)) > 0, 'the first test left blobs in the cache');
  await mirror.stop();
  try {
    await capped.start();
    const freed = await capped.enforceCap();
    assert.ok(freed > 0);
    assert.ok((await cacheBytes(mirror.opts.storage)) < 64 * 1024, 'the cache still holds blobs');
    assert.equal((await fetch(`${capped.url}/v2/`)).status, 200);
  } finally {
    await capped.stop();
  }
});
