/**
 * The agent calls the guard's verify after the cleanup pipeline, which moves the job's directory
 * (and the engine's record in it) into the trash. verify must still check the engine then: a
 * process left under the runner user's subordinate ids (a container that escaped the kill) is a
 * finding, not silently passed because the record is gone.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { readSubids } from '../../../src/engine/host-checks.js';
import { signalGroup } from '../../../src/lib/process.js';
import { dockerCli, dockerPolicy, guardCtx, makeJob, openTun } from './fixture.js';

let lab: Lab;
let closeTun: () => Promise<void>;
const CGROUP_PARENT = 'rw-test-verify-after';

before(async () => {
  lab = await createLab('rw-verify-after-');
  closeTun = await openTun();
});

after(async () => {
  await closeTun();
  await lab.dispose();
  await fsp.rmdir(path.join('/sys/fs/cgroup', CGROUP_PARENT)).catch(() => undefined);
});

test("verify after the pipeline trashed the job's directory still finds a process under the subordinate ids", async () => {
  const policy = dockerPolicy({ mode: 'isolated' });
  const guard = new EngineGuard({ cgroupParent: CGROUP_PARENT });
  const job = await makeJob(lab);
  let planted: number | undefined;
  try {
    const prepared = await guard.prepare(job, policy, guardCtx());
    await dockerCli(lab, (prepared.env?.DOCKER_HOST ?? '').replace(/^unix:\/\//, ''))('version', '--format', '{{.Server.Version}}');
    assert.equal((await guard.release(job, policy, guardCtx())).outcome, 'ok');
    // As the pipeline's workdir step does: the per-job directory goes into the trash.
    await fsp.rename(job.dir, path.join(lab.root, 'trashed-job'));
    // A leftover the kill missed, running as one of the runner user's subordinate uids.
    const [range] = await readSubids('/etc/subuid', lab.user);
    assert.ok(range, 'the lab user has subordinate uids');
    const id = range.start + 1000;
    const child = spawn('setpriv', [`--reuid=${id}`, `--regid=${id}`, '--clear-groups', 'sleep', '60'], {
      detached: true,
      stdio: 'ignore',
    });
    planted = child.pid;
    await new Promise((r) => setTimeout(r, 300));
    const findings = await guard.verify(job, policy, guardCtx());
    assert.ok(
      findings.some((f) => /run under the runner user's subordinate ids/.test(f.problem)),
      `verify passed a leftover once the record was trashed: ${JSON.stringify(findings)}`,
    );
  } finally {
    if (planted !== undefined) signalGroup(planted, 'SIGKILL');
    await guard.drain();
  }
});
