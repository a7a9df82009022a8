import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import type { Policy } from '../../../src/policy/types.js';
import { ctxFor as baseCtx, NOWHERE_SLOT } from '../../helpers/cleanup.js';
import type { CleanupContext } from '../../../src/cleanup/types.js';
import { containersStep } from '../../../src/cleanup/steps/containers.js';
import { verifyWith } from '../../../src/cleanup/verify.js';
import { DockerApi } from '../../../src/cleanup/docker-api.js';
import { startDockerd, importBusybox } from '../../helpers/dockerd.js';

// This file starts a real dockerd (test/helpers/dockerd.ts): about 10 s, most of it dockerd's start and stop.

function ctxFor(socket: string, jobStartedAt: number | undefined, edit: (p: Policy) => void = () => {}): CleanupContext {
  const set = (p: Policy): void => {
    p.cleanup.containers.socket = socket;
    edit(p);
  };
  return baseCtx(NOWHERE_SLOT, set, false, jobStartedAt !== undefined ? { jobStartedAt } : {});
}

test('without an engine the containers step is skipped with "no engine", not failed', async () => {
  const r = await containersStep().run(ctxFor('/nonexistent/docker.sock', Date.now()));
  assert.deepEqual(r, { outcome: 'skipped', removed: {}, reason: 'no engine' });
});

test('the job container, volume, network and committed image are removed; what existed before the job stays', async (t) => {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'rw-dockerd-'));
  const started = await startDockerd(root);
  if (!started.ok) {
    t.skip(`dockerd could not start here: ${started.reason}`);
    await fsp.rm(root, { recursive: true, force: true });
    return;
  }
  const d = started.dockerd;
  try {
    await importBusybox(d, root, 'envlab/busybox:latest');
    await d.docker('volume', 'create', 'admin-cache');
    // Engines stamp creation to the second: the job starts on the next second.
    await new Promise((r) => setTimeout(r, 1_100));
    const jobStartedAt = Date.now();

    // The job.
    await d.docker('network', 'create', '--internal', 'jobnet');
    await d.docker('volume', 'create', 'jobvol');
    const cid = await d.docker('run', '-d', '--network', 'jobnet', '-v', 'jobvol:/data', 'envlab/busybox', 'sleep', '300');
    await d.docker('commit', cid, 'job/built:1');

    const dry = await containersStep().run({
      ...ctxFor(d.socket, jobStartedAt, (p) => (p.cleanup.containers.images = 'job')),
      dryRun: true,
    });
    assert.ok(
      (dry.plan ?? []).some((l) => l.startsWith(`container ${cid.slice(0, 12)}`)),
      `plan lacks the container: ${dry.plan?.join('; ')}`,
    );
    assert.ok(await d.docker('ps', '-q'), 'dry run removed the container');

    const r = await containersStep().run(ctxFor(d.socket, jobStartedAt, (p) => (p.cleanup.containers.images = 'job')));
    assert.equal(r.outcome, 'ok', `containers step not ok: ${r.reason}`);
    assert.equal(r.removed['container']?.count, 1);
    assert.equal(r.removed['volume']?.count, 1);
    assert.equal(r.removed['network']?.count, 1);
    assert.equal(r.removed['image']?.count, 1, `the committed image was not removed: ${JSON.stringify(r.removed)}`);

    const api = new DockerApi(d.socket);
    await api.version();
    assert.deepEqual(
      (await api.containers()).map((c) => c.Id),
      [],
      'a container is left',
    );
    assert.deepEqual(
      (await api.volumes()).map((v) => v.Name),
      ['admin-cache'],
      'the pre-existing volume went, or the job volume stayed',
    );
    assert.ok(!(await api.networks()).some((n) => n.Name === 'jobnet'), 'the job network is left');
    const tags = (await api.images()).flatMap((i) => i.RepoTags ?? []);
    assert.deepEqual(tags, ['envlab/busybox:latest'], 'the pre-existing image must stay and the job image go');

    // Verify agrees, independently.
    const v = await verifyWith(
      ctxFor(d.socket, jobStartedAt, (p) => {
        for (const k of ['processes', 'workdir', 'credentials', 'home', 'temp', 'system', 'runnerInstall'] as const)
          p.cleanup[k].enabled = false;
        p.limits.minFreeDiskPercent = 0;
        p.limits.minFreeInodesPercent = 0;
      }),
      {},
    );
    assert.deepEqual(v.problems, []);

    // And it does see a container the job leaves.
    await d.docker('create', '--name', 'late', 'envlab/busybox');
    const v2 = await verifyWith(
      ctxFor(d.socket, jobStartedAt, (p) => {
        for (const k of ['processes', 'workdir', 'credentials', 'home', 'temp', 'system', 'runnerInstall'] as const)
          p.cleanup[k].enabled = false;
        p.limits.minFreeDiskPercent = 0;
        p.limits.minFreeInodesPercent = 0;
      }),
      {},
    );
    assert.ok(
      v2.problems.some((p) => p.startsWith('container ') && p.includes('/late')),
      v2.problems.join('\n'),
    );
    await d.docker('rm', '-f', 'late');
  } finally {
    // Networks make host interfaces: remove any the test left before the engine stops.
    const api = new DockerApi(d.socket);
    await api.version().catch(() => undefined);
    for (const c of await api.containers().catch(() => [])) await api.removeContainer(c.Id).catch(() => undefined);
    for (const n of await api.networks().catch(() => []))
      if (!['none', 'host'].includes(n.Name)) await api.removeNetwork(n.Id).catch(() => undefined);
    await d.stop();
    await fsp.rm(root, { recursive: true, force: true });
  }
});
