/**
 * A `container:` job with one service, run by the runner simulator on a host where the runner
 * itself runs in a container: the runner calls runner-warden's container hooks, which run the
 * containers on the job's own rootless engine; the step output reaches the job log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createRunnerLab, readDiag } from '../sim/runner-harness.js';
import { EngineGuard } from '../../src/engine/engine-guard.js';
import { engineLayout } from '../../src/engine/rootless-engine.js';
import { fileURLToPath } from 'node:url';
import { dockerCli, dockerPolicy, guardCtx, importBusybox, makeJob, openTun } from './fixture.js';

const HOOKS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/container-hooks/hooks.sh');

test('a container job with a service runs through the hooks on the job engine when the runner is in a container', async () => {
  const rl = await createRunnerLab();
  const restoreTun = await openTun();
  const guard = new EngineGuard({ cgroupParent: 'rw-test-engine', containerHooks: HOOKS });
  const policy = dockerPolicy({ mode: 'isolated' });
  const job = await makeJob(rl.lab);
  try {
    const prepared = await guard.prepare(job, policy, guardCtx());
    const engine = dockerCli(rl.lab, engineLayout(job.dir).socket);
    await importBusybox(engine, rl.lab.root, 'busybox:1');
    const cgroup = path.join(rl.hooks, 'cgroup');
    await writeFile(cgroup, '12:memory:/docker/0123abcd\n0::/\n');
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], { ...(prepared.env ?? {}), ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, RUNNER_SIM_PROC1_CGROUP: cgroup });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob({
      container: { image: 'busybox:1', env: { GREETING: 'hello' } },
      services: { db: { image: 'busybox:1', options: '--entrypoint sleep' } },
      steps: [
        { name: 'In the job container', run: 'echo "job container says $GREETING from $(pwd)"' },
        { name: 'A docker step', run: '', uses: 'docker://busybox:1', with: { entrypoint: 'echo', args: 'docker step ran' } },
      ],
    });
    assert.equal((await proc.exited).code, 0, proc.err());
    const log = await readDiag(rl.root, 'Worker');
    assert.deepEqual(rl.broker.completions.map((c) => c.result), ['Succeeded'], log.slice(-3000));
    assert.match(log, /job container says hello from \/__w\//);
    assert.match(log, /docker step ran/);
    assert.equal(await engine('ps', '-aq'), '', 'cleanup_job removed the job and service containers');
  } finally {
    await guard.release(job, policy, guardCtx()).catch(() => undefined);
    await guard.drain();
    await restoreTun();
    await rl.dispose();
  }
});
