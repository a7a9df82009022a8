import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chown, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createRunnerLab, DIAG_LINE, processGone, readDiag, TS } from './runner-harness.js';

async function writeHook(file: string, body: string): Promise<void> {
  await writeFile(file, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
}

test('an ephemeral JIT runner takes one job, runs hooks and steps as the runner user, kills orphans and removes its config', async () => {
  const rl = await createRunnerLab();
  try {
    const { root, out, hooks, broker, lab } = rl;
    const started = path.join(hooks, 'started.sh');
    const completed = path.join(hooks, 'completed.sh');
    await writeHook(
      started,
      [
        `pwd > ${out}/started.pwd`,
        `env > ${out}/started.env`,
        `nohup sleep 300 >/dev/null 2>&1 &`,
        `echo $! > ${out}/hook-orphan.pid`,
      ].join('\n'),
    );
    await writeHook(completed, [`pwd > ${out}/completed.pwd`, `env > ${out}/completed.env`].join('\n'));
    // the started hook comes from .env, the completed one from the process env
    await writeFile(path.join(root, '.env'), `ACTIONS_RUNNER_HOOK_JOB_STARTED=${started}\n`);
    // leftovers the worker must clean at job start
    for (const d of ['_work/_actions/actions/checkout', '_work/_temp/old']) {
      await mkdir(path.join(root, d), { recursive: true });
    }
    for (const d of ['_work/_actions', '_work/_actions/actions', '_work/_actions/actions/checkout', '_work/_temp', '_work/_temp/old']) {
      await chown(path.join(root, d), lab.user.uid, lab.user.gid);
    }

    const { agentId, encoded } = broker.jitRunner({ name: 'jit-1' });
    const proc = rl.start(['run'], {
      ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
      ACTIONS_RUNNER_HOOK_JOB_COMPLETED: completed,
    });
    await proc.waitFor(/Listening for Jobs/);
    const rsa = await stat(path.join(root, '.credentials_rsaparams'));
    assert.equal(rsa.mode & 0o777, 0o600, '.credentials_rsaparams should be written with mode 600');
    assert.equal(rsa.uid, lab.user.uid, 'the JIT files should be written by the runner user');

    const job = broker.enqueueJob({
      steps: [
        {
          name: 'Build',
          run: [
            `id -u > ${out}/step.uid`,
            `echo "$RUNNER_TRACKING_ID" > ${out}/step.tracking`,
            `pwd > ${out}/step.pwd`,
            `nohup sleep 300 >/dev/null 2>&1 &`,
            `echo $! > ${out}/step-orphan.pid`,
            'echo step-output-line',
          ].join('\n'),
        },
      ],
    });
    const { code } = await proc.exited;
    assert.equal(code, 0, `an ephemeral runner should exit 0 after its job; stderr: ${proc.err()}`);

    const lines = proc.out().split('\n');
    const expected = [
      /^√ Connected to GitHub$/,
      /^Current runner version: '2\.336\.0'$/,
      new RegExp(`^${TS}: Listening for Jobs$`),
      new RegExp(`^${TS}: Running job: build$`),
      new RegExp(`^${TS}: Job build completed with result: Succeeded$`),
      /^√ Removed \.credentials$/,
      /^√ Removed \.runner$/,
    ];
    let at = 0;
    for (const re of expected) {
      const idx = lines.findIndex((l, i) => i >= at && re.test(l));
      assert.ok(idx >= 0, `stdout should contain ${re} after line ${at}:\n${proc.out()}`);
      at = idx + 1;
    }
    for (const f of ['.runner', '.credentials', '.credentials_rsaparams']) {
      assert.equal(existsSync(path.join(root, f)), false, `${f} should be deleted after the ephemeral job`);
    }
    assert.deepEqual(broker.completions, [{ jobId: job.jobId, result: 'Succeeded', exitCode: 100 }]);
    assert.equal(broker.openSessions(), 0, 'the listener should delete its session before exiting');
    assert.equal(broker.agentNames().includes('jit-1'), false, 'the stub removes an ephemeral registration after its job');
    void agentId;

    const runnerLog = await readDiag(root, 'Runner');
    for (const l of runnerLog.trimEnd().split('\n')) assert.match(l, DIAG_LINE, 'every _diag line should have the runner format');
    assert.match(runnerLog, /INFO Terminal\] WRITE LINE: Current runner version: '2\.336\.0'/);
    assert.match(runnerLog, new RegExp(`Job request ${job.requestId} for plan ${job.planId} job ${job.jobId} received\\.`));
    assert.match(runnerLog, new RegExp(`Worker finished for job ${job.jobId}\\. Code: 100`));
    assert.match(runnerLog, /Runner execution has finished with return code 0/);
    assert.doesNotMatch(runnerLog, /√/, 'success lines belong to stdout only');
    assert.equal(runnerLog.includes(encoded), false, 'the jitconfig must never reach the log');

    const workerLog = await readDiag(root, 'Worker');
    // The job message is one event over several lines: its JSON follows `Job message:` bare (a multi-line .NET trace message).
    assert.match(workerLog, new RegExp(`INFO Worker\\] Job message:\\n \\{\\n[^]*"jobId": "${job.jobId}"`));
    const traceLines = workerLog.replace(/(\] Job message:)\n(?:(?!\[\d{4}-).*\n)*/, '$1\n');
    for (const l of traceLines.trimEnd().split('\n')) assert.match(l, DIAG_LINE, 'worker log lines should have the runner format');
    assert.match(workerLog, new RegExp(`Job ID ${job.jobId}`));
    assert.match(workerLog, /A job started hook has been configured by the self-hosted runner administrator/);
    assert.match(workerLog, new RegExp(`Run '${started}'`));
    assert.match(workerLog, /A job completed hook has been configured by the self-hosted runner administrator/);
    assert.match(workerLog, /step-output-line/);
    assert.match(workerLog, /Terminate orphan process: pid \(\d+\) \(sleep\)/);
    assert.match(workerLog, /Job result after all job steps finish: Succeeded/);
    assert.ok(
      workerLog.indexOf("DisplayName='Set up runner'") < workerLog.indexOf("DisplayName='Build'") &&
        workerLog.indexOf("DisplayName='Build'") < workerLog.indexOf("DisplayName='Complete runner'"),
      'hooks should wrap the user steps',
    );

    const workspace = path.join(root, '_work', 'app', 'app');
    assert.equal((await readFile(path.join(out, 'started.pwd'), 'utf8')).trim(), workspace, 'hooks run in GITHUB_WORKSPACE');
    assert.equal((await readFile(path.join(out, 'completed.pwd'), 'utf8')).trim(), workspace);
    assert.equal((await readFile(path.join(out, 'step.pwd'), 'utf8')).trim(), workspace, 'steps run in GITHUB_WORKSPACE');
    const env = await readFile(path.join(out, 'started.env'), 'utf8');
    for (const kv of [
      `GITHUB_WORKSPACE=${workspace}`,
      'GITHUB_REPOSITORY=octo/app',
      `GITHUB_RUN_ID=${job.runId}`,
      `GITHUB_SHA=${job.sha}`,
      `GITHUB_EVENT_PATH=${path.join(root, '_work', '_temp', '_github_workflow', 'event.json')}`,
      `RUNNER_TEMP=${path.join(root, '_work', '_temp')}`,
      `RUNNER_WORKSPACE=${path.join(root, '_work', 'app')}`,
      'RUNNER_NAME=jit-1',
      'RUNNER_OS=Linux',
      'CI=true',
      `ACTIONS_RUNNER_HOOK_JOB_COMPLETED=${completed}`,
    ]) {
      assert.ok(env.split('\n').includes(kv), `the started hook should see ${kv}`);
    }
    assert.doesNotMatch(env, /ACTIONS_RUNNER_INPUT_|RUNNER_SIM_ROOT|TSX_DISABLE_CACHE/, 'inputs and simulator vars must not reach jobs');
    const tracking = /^RUNNER_TRACKING_ID=(github_[0-9a-f-]{36})$/m.exec(env)?.[1];
    assert.ok(tracking, 'hooks should see RUNNER_TRACKING_ID=github_<guid>');
    assert.equal((await readFile(path.join(out, 'step.tracking'), 'utf8')).trim(), tracking, 'steps share the job tracking id');
    assert.equal((await readFile(path.join(out, 'step.uid'), 'utf8')).trim(), String(lab.user.uid), 'steps run as the runner user');

    for (const f of ['hook-orphan.pid', 'step-orphan.pid']) {
      const pid = Number((await readFile(path.join(out, f), 'utf8')).trim());
      assert.ok(processGone(pid), `the orphan from ${f} (pid ${pid}) should have been killed at Complete job`);
    }
    assert.equal(existsSync(path.join(root, '_work', '_actions')), false, '_actions is deleted at job start');
    assert.deepEqual(await readdir(path.join(root, '_work', '_temp')), [], '_temp is emptied at job end');
    const mapping = JSON.parse(
      await readFile(path.join(root, '_work', '_PipelineMapping', 'octo', 'app', 'PipelineFolder.json'), 'utf8'),
    ) as { repositoryName: string };
    assert.equal(mapping.repositoryName, 'octo/app');
  } finally {
    await rl.dispose();
  }
});

test('a failing step or started hook fails the job, skips later steps and still runs the completed hook', async () => {
  const rl = await createRunnerLab();
  try {
    const { root, out, hooks, broker } = rl;
    const started = path.join(hooks, 'started.sh');
    const completed = path.join(hooks, 'completed.sh');
    await writeHook(started, `if [ -e ${out}/fail-started ]; then echo failing-started; exit 4; fi`);
    await writeHook(completed, `echo ran >> ${out}/completed.count`);
    const { encoded } = broker.jitRunner({ name: 'persistent', ephemeral: false });
    const proc = rl.start(['run'], {
      ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
      ACTIONS_RUNNER_HOOK_JOB_STARTED: started,
      ACTIONS_RUNNER_HOOK_JOB_COMPLETED: completed,
    });
    await proc.waitFor(/Listening for Jobs/);

    broker.enqueueJob({
      displayName: 'failing-step',
      steps: [
        { name: 'Fail', run: 'echo about-to-fail; exit 3' },
        { name: 'Never', run: `touch ${out}/never-ran` },
      ],
    });
    await proc.waitFor(/Job failing-step completed with result: Failed/);

    await writeFile(path.join(out, 'fail-started'), '');
    broker.enqueueJob({ displayName: 'failing-hook', steps: [{ name: 'Never2', run: `touch ${out}/never-ran-2` }] });
    await proc.waitFor(/Job failing-hook completed with result: Failed/);

    proc.child.kill('SIGTERM');
    const { code } = await proc.exited;
    assert.equal(code, 0, 'SIGTERM while idle should exit 0');
    assert.equal(existsSync(path.join(out, 'never-ran')), false, 'a step after a failed step is skipped');
    assert.equal(existsSync(path.join(out, 'never-ran-2')), false, 'user steps are skipped after a failed started hook');
    assert.equal(
      (await readFile(path.join(out, 'completed.count'), 'utf8')).trim().split('\n').length,
      2,
      'the completed hook runs after every job, failed or not',
    );
    assert.deepEqual(
      broker.completions.map((c) => [c.result, c.exitCode]),
      [
        ['Failed', 102],
        ['Failed', 102],
      ],
    );
    const workerLog = await readDiag(root, 'Worker');
    assert.match(workerLog, /##\[error\]Process completed with exit code 3\./);
    assert.match(workerLog, /##\[error\]Process completed with exit code 4\./);
    assert.ok(existsSync(path.join(root, '.runner')), 'a non-ephemeral runner keeps its config on shutdown');
    assert.equal(broker.openSessions(), 0, 'the session is deleted on shutdown');
  } finally {
    await rl.dispose();
  }
});

test('with ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT=1 the trace and the step output reach the listener stdout', async () => {
  const rl = await createRunnerLab();
  try {
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT: '1' });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob({ steps: [{ name: 'Say', run: 'echo mirrored-step-line' }] });
    assert.equal((await proc.exited).code, 0);
    assert.match(proc.out(), /^\[\S+ \S+ INFO Step\] mirrored-step-line$/m, 'worker trace lines are mirrored');
    assert.match(proc.out(), /^\[\S+ \S+ INFO Terminal\] WRITE LINE: .*Listening for Jobs$/m, 'listener trace lines are mirrored');
  } finally {
    await rl.dispose();
  }
});

test('without the mirror the step output stays out of the listener stdout', async () => {
  const rl = await createRunnerLab();
  try {
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob({ steps: [{ name: 'Say', run: 'echo quiet-step-line' }] });
    assert.equal((await proc.exited).code, 0);
    assert.doesNotMatch(proc.out(), /quiet-step-line/);
    assert.match(await readDiag(rl.root, 'Worker'), /quiet-step-line/);
  } finally {
    await rl.dispose();
  }
});
