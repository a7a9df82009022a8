/**
 * Host mode with images kept: a job that retags a trusted image on the shared engine fails
 * verification, and images the job added are removed while releasing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createLab, type Lab } from '../helpers/lab.js';
import { startDockerd, type Dockerd } from '../helpers/dockerd.js';
import { EngineGuard } from '../../src/engine/engine-guard.js';
import { busyboxTar, dockerPolicy, guardCtx, makeJob } from './fixture.js';

let lab: Lab;
let dockerd: Dockerd | undefined;
let skip = '';

before(async () => {
  lab = await createLab('rw-hostimg-');
  const started = await startDockerd(lab.root);
  if (started.ok) dockerd = started.dockerd;
  else skip = started.reason;
});

after(async () => {
  await dockerd?.stop();
  await lab.dispose();
});

test('a retagged trusted image fails verification, and the job\'s other images are removed', async (t) => {
  if (!dockerd) return t.skip(`dockerd could not start here: ${skip}`);
  const d = dockerd;
  const tar = await busyboxTar(lab.root);
  await d.docker('import', '-c', 'CMD ["/bin/sh"]', tar, 'node:20');
  const stateDir = path.join(lab.root, 'state');
  await fsp.mkdir(stateDir, { mode: 0o700 });
  const policy = dockerPolicy({ mode: 'host' });
  policy.cleanup.containers.socket = d.socket;
  policy.cleanup.containers.images = 'keep';
  const guard = new EngineGuard({ stateDir, runnerUser: lab.user });
  assert.deepEqual(await guard.verify(undefined, policy, guardCtx()), [], 'preflight in host mode takes the baseline');

  // A well-behaved job: pulls (here: imports) an image of its own; release removes it, verify passes.
  const job1 = await makeJob(lab);
  await d.docker('import', '-c', 'LABEL job=1', tar, 'job-one:latest');
  const r1 = await guard.release(job1, policy, guardCtx());
  assert.equal(r1.removed?.['images not in the baseline']?.count, 1);
  assert.deepEqual(await guard.verify(job1, policy, guardCtx()), []);
  assert.match(await d.docker('images', '--format', '{{.Repository}}:{{.Tag}}'), /^node:20$/);

  // A hostile job: builds a marked image and tags it with the trusted name.
  const job2 = await makeJob(lab);
  await d.docker('import', '-c', 'LABEL poisoned=yes', '-c', 'CMD ["/bin/sh"]', tar, 'node:20');
  await guard.release(job2, policy, guardCtx());
  const findings = await guard.verify(job2, policy, guardCtx());
  assert.ok(findings.some((f) => /image tag node:20 (is gone|now names)/.test(f.problem)), JSON.stringify(findings));
});
