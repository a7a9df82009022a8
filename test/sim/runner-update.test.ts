import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import { createRunnerLab, TS } from './runner-harness.js';

async function waitForFile(file: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} did not appear within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const UPDATE_LINES = [
  'Runner update in progress, do not shutdown runner.',
  'Downloading 2.337.0 runner',
  'Waiting for current job finish running.',
  'Generate and execute update script.',
  'Runner will exit shortly for update, should be back online within 10 seconds.',
  'Runner update process finished.',
];

test('an ephemeral runner told to update exits 4, the script swaps bin and touches update.finished, and the restart takes the job', async () => {
  const rl = await createRunnerLab();
  try {
    const { root, broker } = rl;
    const { agentId, encoded } = broker.jitRunner();
    broker.pushMessage(agentId, { type: 'update', version: '2.337.0' });
    const first = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    const { code } = await first.exited;
    assert.equal(code, 4, `single-job mode updates exit with RunOnceRunnerUpdating; stderr: ${first.err()}`);
    const out = first.out();
    let at = 0;
    for (const l of UPDATE_LINES) {
      const idx = out.indexOf(`${l}\n`, at);
      assert.ok(idx >= 0, `stdout should contain "${l}" in order:\n${out}`);
      at = idx;
    }
    assert.ok(existsSync(path.join(root, '_work', '_update.sh')), 'the update script is written to _work/_update.sh');
    await waitForFile(path.join(root, 'update.finished'));
    assert.equal(await readlink(path.join(root, 'bin')), path.join(root, 'bin.2.337.0'), 'bin points at the new version');
    assert.ok(existsSync(path.join(root, 'bin.2.336.0', 'Runner.Listener')), 'the old bin is kept as bin.<old>');
    const diag = await readdir(path.join(root, '_diag'));
    assert.ok(diag.some((n) => /^SelfUpdate-\d{8}-\d{6}\.log\.succeed$/.test(n)), `the update log should end .succeed: ${diag.join(', ')}`);
    await rm(path.join(root, 'update.finished')); // what run-helper.sh does

    const second = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await second.waitFor(/Current runner version: '2\.337\.0'/);
    broker.enqueueJob();
    assert.equal((await second.exited).code, 0, 'the restarted runner takes its one job');
    assert.match(second.out(), new RegExp(`${TS}: Job build completed with result: Succeeded`));
  } finally {
    await rl.dispose();
  }
});

test('a persistent runner told to update exits 3', async () => {
  const rl = await createRunnerLab();
  try {
    const { agentId, encoded } = rl.broker.jitRunner({ ephemeral: false });
    rl.broker.pushMessage(agentId, { type: 'update', version: '2.337.0' });
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    assert.equal((await proc.exited).code, 3, 'RunnerUpdating');
    await waitForFile(path.join(rl.root, 'update.finished'));
  } finally {
    await rl.dispose();
  }
});

test('run.sh restarts the listener after an update and exits 0 once the job is done', async () => {
  const rl = await createRunnerLab();
  try {
    const { agentId, encoded } = rl.broker.jitRunner();
    rl.broker.pushMessage(agentId, { type: 'update', version: '2.337.0' });
    const proc = rl.start([], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded }, 'run.sh');
    await proc.waitFor(/Current runner version: '2\.337\.0'/, 15_000);
    rl.broker.enqueueJob();
    const { code } = await proc.exited;
    assert.equal(code, 0);
    const out = proc.out();
    for (const l of [
      'Runner listener exit because of updating, re-launch ephemeral runner after successful update',
      'Update finished successfully.',
      'Restarting runner...',
      'Runner listener exit with 0 return code, stop the service, no retry needed.',
      'Exiting runner...',
    ]) {
      assert.ok(out.includes(`${l}\n`), `run.sh/run-helper.sh should print "${l}":\n${out}`);
    }
    assert.equal(existsSync(path.join(rl.root, 'update.finished')), false, 'run-helper deletes update.finished');
    assert.equal(existsSync(path.join(rl.root, '.runner')), false, 'the ephemeral runner removed its config after the job');
  } finally {
    await rl.dispose();
  }
});
