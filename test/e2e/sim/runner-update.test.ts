import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { lstat, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startFakeGitHub, DEFAULT_FAKE_TOKEN } from '../../../src/sim/github/server.js';
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
    // update.sh touches update.finished first, then renames its log
    const deadline = Date.now() + 10_000;
    let diag = await readdir(path.join(root, '_diag'));
    while (!diag.some((n) => /^SelfUpdate-\d{8}-\d{6}\.log\.succeed$/.test(n)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      diag = await readdir(path.join(root, '_diag'));
    }
    assert.ok(
      diag.some((n) => /^SelfUpdate-\d{8}-\d{6}\.log\.succeed$/.test(n)),
      `the update log should end .succeed: ${diag.join(', ')}`,
    );
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
      'Runner listener exit because of updating, re-launch runner after successful update',
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

test('a refresh during the single job: the updater waits for the job, exit 4 follows it with the config kept, and update.sh is still at work after the exit', async () => {
  const rl = await createRunnerLab();
  try {
    const { root, broker, out } = rl;
    const { agentId, encoded } = broker.jitRunner();
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await proc.waitFor(/Listening for Jobs/);
    assert.match(proc.out(), /Current runner version: '2\.336\.0'/, 'the console names the version the listener started from');
    const job = broker.enqueueJob({
      steps: [{ name: 'Wait', run: `touch ${out}/started\nwhile [ ! -f ${out}/go ]; do sleep 0.1; done` }],
    });
    await waitForFile(path.join(out, 'started'));
    const scriptsBefore = await Promise.all(['run.sh', 'config.sh', 'run-helper.sh.template'].map((f) => stat(path.join(root, f))));
    broker.pushMessage(agentId, { type: 'update', version: '2.337.0' });
    await proc.waitFor(/Waiting for current job finish running\./);
    assert.equal(broker.completions.length, 0, 'the job is still running while the updater waits');
    // SelfUpdaterV2.cs: DownloadLatestRunner (bin.<v>, externals.<v>, the package's root files
    // deleted and copied again) comes before WaitAsync: all of it is in place while the job runs.
    assert.ok(existsSync(path.join(root, 'bin.2.337.0', 'Runner.Listener')), 'bin.<v> is staged before the job ends');
    const scriptsNow = await Promise.all(['run.sh', 'config.sh', 'run-helper.sh.template'].map((f) => stat(path.join(root, f))));
    assert.deepEqual(
      // (the freed inode number may come back at once: the change time tells the new file)
      scriptsNow.map((st, i) => st.ctimeMs > (scriptsBefore[i]?.ctimeMs ?? Infinity)),
      [true, true, true],
      'the root scripts are replaced (new files) before the job ends',
    );
    await writeFile(path.join(out, 'go'), '');
    const { code } = await proc.exited;
    const exitedAt = Date.now();
    // right after the exit update.sh is still polling for the pid (2 s) and sleeping 1 s more
    const binIsDir = (await lstat(path.join(root, 'bin'))).isDirectory();
    const finishedEarly = existsSync(path.join(root, 'update.finished'));
    assert.equal(code, 4, `single-job mode exits RunOnceRunnerUpdating after its job; stderr: ${proc.err()}`);
    assert.deepEqual(
      broker.completions.map((c) => [c.jobId, c.result]),
      [[job.jobId, 'Succeeded']],
      'the job ran to its end',
    );
    const text = proc.out();
    const order = [
      'Runner update in progress',
      'Waiting for current job finish running.',
      'Job build completed with result: Succeeded',
      'Generate and execute update script.',
      'Runner update process finished.',
    ];
    let at = 0;
    for (const l of order) {
      const idx = text.indexOf(l, at);
      assert.ok(idx >= at, `"${l}" should follow in order:\n${text}`);
      at = idx;
    }
    assert.ok(
      existsSync(path.join(root, '.runner')) && existsSync(path.join(root, '.credentials')),
      'exit 4 keeps the local config, job or not',
    );
    assert.ok(binIsDir && !finishedEarly, 'bin is not yet replaced when the listener has exited');
    await waitForFile(path.join(root, 'update.finished'), 15_000);
    const tookMs = Date.now() - exitedAt;
    assert.ok(tookMs >= 900, `update.sh needs its poll and settle time after the exit: ${tookMs} ms`);
    assert.equal(await readlink(path.join(root, 'bin')), path.join(root, 'bin.2.337.0'));
    assert.equal((await readFile(path.join(root, 'bin', 'runner.version'), 'utf8')).trim(), '2.337.0');
  } finally {
    await rl.dispose();
  }
});

test('against the fake GitHub, which removes the spent registration and answers the pending poll 404 at once, a refresh during the job still ends in exit 4 with update.sh started', async () => {
  const rl = await createRunnerLab();
  const fake = await startFakeGitHub();
  try {
    const { root, out } = rl;
    const res = await fetch(`${fake.url}/repos/octo/app/actions/runners/generate-jitconfig`, {
      method: 'POST',
      headers: { authorization: `Bearer ${DEFAULT_FAKE_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'upd-during-job', runner_group_id: 1, labels: ['self-hosted'] }),
    });
    const { runner, encoded_jit_config: encoded } = (await res.json()) as { runner: { id: number }; encoded_jit_config: string };
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await proc.waitFor(/Listening for Jobs/);
    const jobId = fake.enqueueJob({
      repository: 'octo/app',
      steps: [{ name: 'Wait', run: `touch ${out}/started\nwhile [ ! -f ${out}/go ]; do sleep 0.1; done` }],
    });
    await waitForFile(path.join(out, 'started'));
    fake.requestUpdate(runner.id, '2.337.0');
    await proc.waitFor(/Waiting for current job finish running\./);
    await writeFile(path.join(out, 'go'), '');
    const { code } = await proc.exited;
    assert.equal(fake.job(jobId)?.result, 'Succeeded');
    assert.equal(
      fake.runners().some((r) => r.id === runner.id),
      false,
      'the service removed the spent registration',
    );
    assert.equal(code, 4, `exit 4, not the 404's exit 0; stderr: ${proc.err()}`);
    assert.match(proc.out(), /Generate and execute update script\./);
    assert.ok(existsSync(path.join(root, '.runner')), 'exit 4 keeps the local config');
    await waitForFile(path.join(root, 'update.finished'), 15_000);
    assert.equal(await readlink(path.join(root, 'bin')), path.join(root, 'bin.2.337.0'));
  } finally {
    await fake.close();
    await rl.dispose();
  }
});
