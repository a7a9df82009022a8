/**
 * Host mode, against one rootful dockerd of the file's own (started once: both tests need only a
 * shared engine, as host mode has):
 * - with images kept, a job that retags a trusted image fails verification, and images the job
 *   added are removed while releasing;
 * - the job reaches the shared engine only through the agent's policy proxy: ordinary containers
 *   run (attach streams included); privileged, host-namespace, host-path, device and capability
 *   asks are refused with the key that would allow them; a policy that allows one lets it through.
 * The image test runs first: it asserts the engine's whole image list.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { startDockerd, type Dockerd } from '../../helpers/dockerd.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { busyboxTar, dockerCli, dockerPolicy, dockerTry, guardCtx, makeJob } from './fixture.js';

let lab: Lab;
let dockerd: Dockerd | undefined;
let skip = '';

before(async () => {
  lab = await createLab('rw-hostmode-');
  const started = await startDockerd(lab.root);
  if (started.ok) dockerd = started.dockerd;
  else skip = started.reason;
});

after(async () => {
  await dockerd?.stop();
  await lab.dispose();
});

test("a retagged trusted image fails verification, and the job's other images are removed", async (t) => {
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
  assert.ok(
    findings.some((f) => /image tag node:20 (is gone|now names)/.test(f.problem)),
    JSON.stringify(findings),
  );
});

test('through the host-mode proxy ordinary containers run and escapes are refused naming the policy key', async (t) => {
  if (!dockerd) return t.skip(`dockerd could not start here: ${skip}`);
  await dockerd.docker('import', '-c', 'CMD ["/bin/sh"]', await busyboxTar(lab.root), 'bb:1');
  const policy = dockerPolicy({ mode: 'host' });
  policy.cleanup.containers.socket = dockerd.socket;
  policy.cleanup.containers.images = 'job';
  const guard = new EngineGuard({});
  const job = await makeJob(lab);
  const prepared = await guard.prepare(job, policy, guardCtx());
  const socket = (prepared.env?.DOCKER_HOST ?? '').replace('unix://', '');
  assert.notEqual(socket, dockerd.socket, 'the job gets the proxy, not the host socket');
  assert.equal((await fsp.stat(socket)).uid, lab.user.uid);
  const docker = dockerCli(lab, socket);
  try {
    assert.equal(await docker('run', '--rm', 'bb:1', 'echo', 'through the proxy'), 'through the proxy');
    const cases: Array<[string[], RegExp]> = [
      [['--privileged'], /docker\.allow\.privileged: true/],
      [['--pid=host'], /docker\.allow\.hostNamespaces: true/],
      [['--network=host'], /docker\.allow\.hostNamespaces: true/],
      [['--userns=host'], /docker\.allow\.hostNamespaces: true/],
      [['-v', '/:/host'], /docker\.allow\.hostPaths: \[\/\]/],
      [['-v', `${dockerd.socket}:/docker.sock`], /docker\.allow\.hostPaths/],
      [['--device', '/dev/mem'], /docker\.allow\.devices: \[\/dev\/mem\]/],
      [['--cap-add', 'SYS_ADMIN'], /docker\.allow\.capabilities: \[SYS_ADMIN\]/],
    ];
    for (const [args, key] of cases) {
      const r = await dockerTry(docker, 'run', '--rm', ...args, 'bb:1', 'true');
      assert.equal(r.ok, false, `${args.join(' ')} was accepted`);
      assert.match(r.out, key, `${args.join(' ')}: ${r.out}`);
    }
    const id = await docker('run', '-d', 'bb:1', 'sleep', '60');
    const exec = await dockerTry(docker, 'exec', '--privileged', id, 'true');
    assert.equal(exec.ok, false, 'a privileged exec was accepted');
    await docker('rm', '-f', id);
  } finally {
    await guard.release(job, policy, guardCtx());
  }
  await fsp.access(socket).then(
    () => assert.fail('the proxy socket outlived the job'),
    () => undefined,
  );

  const allowed = dockerPolicy({
    mode: 'host',
    allow: { privileged: true, hostNamespaces: false, hostPaths: [], devices: [], capabilities: ['NET_ADMIN'] },
  });
  allowed.cleanup.containers.socket = dockerd.socket;
  allowed.cleanup.containers.images = 'job';
  const job2 = await makeJob(lab);
  const p2 = await guard.prepare(job2, allowed, guardCtx());
  try {
    const d2 = dockerCli(lab, (p2.env?.DOCKER_HOST ?? '').replace('unix://', ''));
    assert.equal(await d2('run', '--rm', '--cap-add', 'NET_ADMIN', 'bb:1', 'echo', 'allowed'), 'allowed');
    // This VM's runc cannot give every capability (it lacks CAP_SYS_RESOURCE), so a privileged
    // container may fail in the runtime; what matters is that the proxy passed it on.
    const priv = await dockerTry(d2, 'run', '--rm', '--privileged', 'bb:1', 'true');
    assert.doesNotMatch(priv.out, /not allowed by the runner's policy/, 'an allowed --privileged was refused by the proxy');
  } finally {
    await guard.release(job2, allowed, guardCtx());
  }
});
