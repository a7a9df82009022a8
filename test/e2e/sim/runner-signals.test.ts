import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createRunnerLab, processGone, readDiag } from './runner-harness.js';

async function waitForFile(file: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} did not appear within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('SIGTERM while idle deletes the session, keeps files and registration, and exits 0', async () => {
  const rl = await createRunnerLab();
  try {
    const { encoded } = rl.broker.jitRunner({ name: 'idle-one' });
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await proc.waitFor(/Listening for Jobs/);
    proc.child.kill('SIGTERM');
    const { code } = await proc.exited;
    assert.equal(code, 0);
    assert.doesNotMatch(proc.out(), /Exiting\.\.\./, 'only Ctrl-C prints Exiting...');
    assert.ok(
      existsSync(path.join(rl.root, '.runner')) && existsSync(path.join(rl.root, '.credentials')),
      'idle shutdown keeps the config',
    );
    assert.ok(rl.broker.agentNames().includes('idle-one'), 'idle shutdown keeps the registration');
    assert.ok(
      rl.broker.events.some((e) => e.method === 'DELETE' && e.path.startsWith('/_broker/sessions/')),
      'the session is deleted',
    );
  } finally {
    await rl.dispose();
  }
});

test('SIGINT during a job: the step gets SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that; every later step and the completed hook are skipped; console Canceled, job Failed, exit 0', async () => {
  const rl = await createRunnerLab();
  try {
    const { out, hooks, broker, root } = rl;
    const completed = path.join(hooks, 'completed.sh');
    await writeFile(completed, `#!/bin/bash\ntouch ${out}/completed.ran\n`, { mode: 0o755 });
    const { encoded } = broker.jitRunner();
    // the real runner's waits (no RUNNER_SIM_STEP_* override): the listener has no deadline of its own
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, ACTIONS_RUNNER_HOOK_JOB_COMPLETED: completed });
    await proc.waitFor(/Listening for Jobs/);
    const job = broker.enqueueJob({
      steps: [
        {
          name: 'Stubborn',
          run: [
            `trap 'echo "INT $(date +%s%N)" >> ${out}/signals' INT`,
            `trap 'echo "TERM $(date +%s%N)" >> ${out}/signals' TERM`,
            `sleep 300 & echo $! > ${out}/orphan.pid`,
            `echo $$ > ${out}/step.pid`,
            'while :; do sleep 0.1; done',
          ].join('\n'),
        },
        { name: 'After', run: `touch ${out}/after.ran` },
      ],
    });
    await waitForFile(path.join(out, 'step.pid'));
    const t0 = Date.now();
    proc.child.kill('SIGINT');
    const { code } = await proc.exited;
    const took = Date.now() - t0;
    assert.equal(code, 0, `a job cut short by shutdown still ends in exit 0; stderr: ${proc.err()}`);
    assert.match(proc.out(), /^Exiting\.\.\.$/m);
    assert.match(proc.out(), /Job build completed with result: Canceled/, 'the listener prints Canceled');
    assert.deepEqual(broker.completions, [{ jobId: job.jobId, result: 'Failed', exitCode: 102 }], 'the worker records Failed');
    const signals = (await readFile(path.join(out, 'signals'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    assert.deepEqual(
      signals.map((x) => x[0]),
      ['INT', 'TERM'],
      'SIGINT, then SIGTERM, to the step process',
    );
    const gapMs = (Number(signals[1]?.[1]) - Number(signals[0]?.[1])) / 1e6;
    assert.ok(gapMs >= 7_000 && gapMs < 9_500, `SIGTERM comes 7.5 s after SIGINT, came after ${gapMs} ms`);
    assert.ok(took >= 9_500, `the step ignoring both is killed 10 s after the cancel and the listener waits for it: ${took} ms`);
    assert.equal(existsSync(path.join(out, 'completed.ran')), false, 'no job-completed hook after a shutdown');
    assert.equal(existsSync(path.join(out, 'after.ran')), false, 'later steps are skipped');
    const stepPid = Number((await readFile(path.join(out, 'step.pid'), 'utf8')).trim());
    const orphanPid = Number((await readFile(path.join(out, 'orphan.pid'), 'utf8')).trim());
    assert.ok(processGone(stepPid), 'the step is gone');
    assert.ok(processGone(orphanPid), 'its background child is killed by the orphan sweep of Complete job');
    const workerLog = await readDiag(root, 'Worker');
    assert.match(
      workerLog,
      /##\[error\]The runner has received a shutdown signal\. This can happen when the runner service is stopped, or a manually started runner is canceled\./,
    );
    assert.match(workerLog, /Skip evaluate condition on runner shutdown: 'Complete runner' is skipped/);
    assert.match(workerLog, /Job result after all job steps finish: Failed/);
    assert.ok(existsSync(path.join(root, '.runner')), 'a job cut short by shutdown does not count as the completed single job');
  } finally {
    await rl.dispose();
  }
});

test('SIGTERM during a job that ignores SIGINT is bounded by the unload timeout', async () => {
  const rl = await createRunnerLab();
  try {
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, RUNNER_SIM_EXIT_ON_UNLOAD_TIMEOUT_SECONDS: '1' });
    await proc.waitFor(/Listening for Jobs/);
    const marker = path.join(rl.out, 'stubborn.started');
    rl.broker.enqueueJob({ steps: [{ name: 'Stubborn', run: `trap '' INT\ntouch ${marker}\nsleep 60` }] });
    await waitForFile(marker); // the trap is in place before the signal
    const t0 = Date.now();
    proc.child.kill('SIGTERM');
    const { code } = await proc.exited;
    const took = Date.now() - t0;
    assert.equal(code, 143, 'the simulator exits 143 when the SIGTERM deadline passes');
    assert.ok(took >= 900 && took < 10_000, `the exit should come at the 1 s deadline, took ${took} ms`);
  } finally {
    await rl.dispose();
  }
});

test('a job cancelled on the server (renew 404) ends Canceled without the shutdown annotation', async () => {
  const rl = await createRunnerLab();
  try {
    const { out, broker, root } = rl;
    const { encoded } = broker.jitRunner({ ephemeral: false });
    const completed = path.join(rl.hooks, 'completed.sh');
    await writeFile(completed, `#!/bin/bash\ntouch ${out}/completed.ran\n`, { mode: 0o755 });
    const proc = rl.start(['run', '--once'], {
      ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
      ACTIONS_RUNNER_HOOK_JOB_COMPLETED: completed,
      RUNNER_SIM_JOB_RENEW_INTERVAL_SECONDS: '0.2',
      RUNNER_SIM_STEP_SIGINT_TIMEOUT_SECONDS: '0.5',
    });
    await proc.waitFor(/Listening for Jobs/);
    assert.match(proc.out(), /Warning: '--once' is going to be deprecated in the future/);
    const job = broker.enqueueJob({ steps: [{ name: 'Long', run: `echo $$ > ${out}/step.pid\nsleep 30` }] });
    await waitForFile(path.join(out, 'step.pid'));
    broker.cancelJob(job.jobId);
    const { code } = await proc.exited;
    assert.equal(code, 0, '--once exits 0 after its job');
    assert.deepEqual(
      broker.completions.map((c) => c.result),
      ['Canceled'],
    );
    assert.doesNotMatch(await readDiag(root, 'Worker'), /received a shutdown signal/);
    assert.ok(existsSync(path.join(out, 'completed.ran')), 'a cancel from the server still runs the always() completed hook');
    assert.ok(existsSync(path.join(root, '.runner')), '--once on a non-ephemeral registration keeps its files');
  } finally {
    await rl.dispose();
  }
});

test('a job whose first renewal fails is Abandoned without starting a worker', async () => {
  const rl = await createRunnerLab();
  try {
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await proc.waitFor(/Listening for Jobs/);
    const job = rl.broker.enqueueJob();
    rl.broker.cancelJob(job.jobId);
    const { code } = await proc.exited;
    assert.equal(code, 0);
    assert.match(proc.out(), /Running job: build\n.*Job build completed with result: Abandoned/);
    assert.equal(await readDiag(rl.root, 'Worker'), '', 'no worker should have started');
  } finally {
    await rl.dispose();
  }
});
