/**
 * The image cache no job can poison: a proxy-mode docker-registry between every per-job engine
 * and a local upstream. Job B's pull of what job A pulled is served by the mirror (the upstream
 * sees one fetch of the layer), and the agent's /metrics shows the mirror's counters; a push
 * through the mirror is refused; over its cap the least recently used blobs are pruned while the
 * mirror serves, and a pruned image is pulled again. A job whose mirror is down is not held by it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { engineLayout } from '../../../src/engine/rootless-engine.js';
import { RegistryMirror, mirrorStats, cacheBytes } from '../../../src/engine/mirror.js';
import { registerMirrorMetrics, registerMirrorPruneMetrics } from '../../../src/engine/mirror-metrics.js';
import { listBlobs, PRUNE_TO_RATIO, sweepMirror } from '../../../src/engine/mirror-janitor.js';
import { mirrorProblems } from '../../../src/engine/mirror-checks.js';
import { Registry } from 'prom-client';
import { busyboxTar, dockerCli, dockerPolicy, dockerTry, guardCtx, makeJob, openTun } from './fixture.js';
import { freePort, pushImage, startMirror, startUpstream, type Upstream } from '../../../bench/registry-upstream.js';

let lab: Lab;
let restoreTun: () => Promise<void>;
let upstream: Upstream;
let mirror: RegistryMirror;
const guard = new EngineGuard({ cgroupParent: 'rw-test-engine' });

before(async () => {
  lab = await createLab('rw-mirror-');
  restoreTun = await openTun();
  upstream = await startUpstream(lab.root);
  mirror = await startMirror(path.join(lab.root, 'mirror', 'cache'), upstream.url, 1 << 30);
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

/** Pulls `repo:1` through the registry API (manifest, config, layers) and checks every digest. */
async function apiPull(registry: string, repo: string): Promise<string[]> {
  const res = await fetch(`${registry}/v2/${repo}/manifests/1`, {
    headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
  });
  assert.equal(res.status, 200, `manifest of ${repo}: ${res.status}`);
  const m = (await res.json()) as { config: { digest: string }; layers: { digest: string }[] };
  const digests = [m.config.digest, ...m.layers.map((l) => l.digest)];
  for (const d of digests) {
    const body = Buffer.from(await (await fetch(`${registry}/v2/${repo}/blobs/${d}`)).arrayBuffer());
    assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, d, `blob ${d} of ${repo}`);
  }
  return digests;
}

const blobDir = (storage: string, digest: string): string =>
  path.join(storage, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7));
const exists = (p: string): Promise<boolean> =>
  fsp.stat(p).then(
    () => true,
    () => false,
  );

test('over its cap the least recently used blobs are pruned while the mirror serves; a pruned image is pulled again', async () => {
  const storage = mirror.opts.storage;
  const MiB = 1024 * 1024;
  // Four images of one 1 MiB incompressible layer each, cached in this order; then A is read again.
  const layers: Record<string, string> = {};
  for (const x of ['a', 'b', 'c', 'd']) {
    const dir = path.join(lab.root, `cap-${x}`);
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'blob'), randomBytes(MiB));
    const tar = execFileSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: 4 * MiB });
    layers[x] = (await pushImage(upstream.url, `library/cap-${x}`, '1', tar)).layer;
    await apiPull(mirror.url, `library/cap-${x}`);
    // The proxy stores what it streamed in the background: wait for the layer to land.
    for (let i = 0; i < 100 && !(await exists(path.join(blobDir(storage, layers[x]), 'data'))); i++) await sleep(50);
    await sleep(20);
  }
  await listBlobs(storage, true);
  await sleep(20);
  await apiPull(mirror.url, 'library/cap-a');
  const before = (await listBlobs(storage)).reduce((sum, b) => sum + b.bytes, 0);
  assert.ok(before > 4 * MiB, `the cache holds ${before} bytes`);

  // Blobs in use (the last five minutes: all of them) are never pruned: the cache is full, said so.
  const full = await sweepMirror(storage, before - MiB);
  assert.equal(full.prunedBlobs, 0, 'a blob used a moment ago was pruned');
  assert.equal(full.overCap, true);
  const problems = await mirrorProblems(mirror.url, storage, before - MiB);
  assert.ok(
    problems.some((p) => /image cache is full/.test(p.what) && /docker\.mirrorCapGiB/.test(p.fix)),
    JSON.stringify(problems),
  );
  const huge = await mirrorProblems(mirror.url, storage, 1e15);
  assert.ok(
    huge.some((p) => /larger than its disk/.test(p.what)),
    `a cap larger than the disk was not reported: ${JSON.stringify(huge)}`,
  );

  // Everything older than the in-use window (0 here): pruned down to 90% of the cap, oldest use first.
  const cap = Math.round(2.5 * MiB);
  const r = await mirror.enforceCap(Date.now(), 0);
  assert.equal(r.prunedBlobs, 0, 'the 1 GiB cap of the test mirror pruned something');
  const capped = new RegistryMirror({ ...mirror.opts, capBytes: cap });
  const pruned = await capped.enforceCap(Date.now(), 0);
  const after = (await listBlobs(storage)).reduce((sum, b) => sum + b.bytes, 0);
  assert.ok(pruned.prunedBlobs > 0 && after <= cap * PRUNE_TO_RATIO && pruned.bytes === after, `${JSON.stringify(pruned)}, ${after} left`);
  assert.equal(pruned.overCap, false);
  assert.ok(await exists(blobDir(storage, layers.a as string)), 'A, read last, was pruned');
  assert.ok(await exists(blobDir(storage, layers.d as string)), 'D, cached last, was pruned');
  assert.ok(!(await exists(blobDir(storage, layers.b as string))), 'B, the least recently used, is still cached');

  // The agent's figures on /metrics.
  const registry = new Registry();
  registerMirrorPruneMetrics(registry, () => ({
    sweeps: 1,
    prunedBlobs: pruned.prunedBlobs,
    prunedBytes: pruned.prunedBytes,
    last: pruned,
  }));
  const text = await registry.metrics();
  assert.match(text, new RegExp(`^runner_warden_mirror_pruned_blobs_total ${pruned.prunedBlobs}$`, 'm'));
  assert.match(text, new RegExp(`^runner_warden_mirror_blob_bytes ${after}$`, 'm'));
  assert.match(text, new RegExp(`^runner_warden_mirror_cap_bytes ${cap}$`, 'm'));
  assert.match(text, /^runner_warden_mirror_full 0$/m);

  // A later pull of the pruned image by a job's engine works, through the same running mirror,
  // which fetched the layer from the upstream again.
  const fetched = upstream.blobFetches.get(layers.b as string) ?? 0;
  const job = await makeJob(lab, 'job-after-prune');
  const policy = dockerPolicy({ mode: 'isolated', mirror: mirror.url });
  await guard.prepare(job, policy, guardCtx());
  const docker = dockerCli(lab, engineLayout(job.dir).socket);
  await docker('pull', 'cap-b:1');
  assert.ok((upstream.blobFetches.get(layers.b as string) ?? 0) > fetched, 'the pruned layer was not fetched again');
  assert.equal((await guard.release(job, policy, guardCtx())).outcome, 'ok');
  assert.ok(await exists(path.join(blobDir(storage, layers.b as string), 'data')), 'the pulled layer was not cached again');
});

test("the mirror down: a job's engine does not wait for it (dockerd tries the upstream itself, which fails at once offline) and keeps answering; the mirror back on its address, the same engine pulls through it again", async () => {
  await pushImage(upstream.url, 'library/busybox', '1', await fsp.readFile(await busyboxTar(lab.root)));
  const policy = dockerPolicy({ mode: 'isolated', mirror: mirror.url });
  const job = await makeJob(lab, 'job-down');
  await guard.prepare(job, policy, guardCtx());
  const docker = dockerCli(lab, engineLayout(job.dir).socket);
  assert.match(await docker('version', '--format', '{{.Server.Version}}'), /^\d+\./);
  await mirror.stop();
  try {
    const t = Date.now();
    const pull = await dockerTry(docker, 'pull', 'busybox:1');
    const tookMs = Date.now() - t;
    // A host with internet access may get Docker Hub's busybox:1; this one has none (and CI neither).
    if (!pull.ok) assert.match(pull.out, /registry-1\.docker\.io/, `the failed pull does not name the upstream it tried: ${pull.out}`);
    assert.ok(tookMs < 30_000, `the pull waited ${tookMs} ms for a cache that is down`);
    assert.match(await docker('version', '--format', '{{.Server.Version}}'), /^\d+\./, 'the engine still answers');
  } finally {
    await mirror.start();
  }
  await docker('pull', 'busybox:1');
  assert.equal(await docker('run', '--rm', 'busybox:1', 'echo', 'back'), 'back');
  assert.equal((await guard.release(job, policy, guardCtx())).outcome, 'ok');
});
