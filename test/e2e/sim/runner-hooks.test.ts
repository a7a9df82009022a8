import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createRunnerLab, readDiag } from './runner-harness.js';

test('a .js hook runs on the bundled node and a hook with another extension fails the job', async () => {
  const rl = await createRunnerLab();
  try {
    const started = path.join(rl.hooks, 'started.js');
    const completed = path.join(rl.hooks, 'completed.txt');
    await writeFile(
      started,
      `require('fs').writeFileSync(${JSON.stringify(path.join(rl.out, 'js.ran'))}, process.cwd() + '\\n' + process.env.GITHUB_REPOSITORY);\n`,
    );
    await writeFile(completed, 'echo never\n');
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], {
      ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
      ACTIONS_RUNNER_HOOK_JOB_STARTED: started,
      ACTIONS_RUNNER_HOOK_JOB_COMPLETED: completed,
    });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob();
    assert.equal((await proc.exited).code, 0);
    assert.match(proc.out(), /Job build completed with result: Failed/, 'a failing completed hook turns the result into Failed');
    const [cwd, repo] = (await readFile(path.join(rl.out, 'js.ran'), 'utf8')).split('\n');
    assert.equal(cwd, path.join(rl.root, '_work', 'app', 'app'));
    assert.equal(repo, 'octo/app');
    assert.match(
      await readDiag(rl.root, 'Worker'),
      new RegExp(
        `##\\[error\\]${completed.replace(/[.]/g, '\\.')} is not a valid path to a script\\. Make sure it ends in '\\.sh', '\\.ps1' or '\\.js'\\.`,
      ),
    );
  } finally {
    await rl.dispose();
  }
});

test('a started hook whose file is missing fails the job and the steps are skipped', async () => {
  const rl = await createRunnerLab();
  try {
    const missing = path.join(rl.hooks, 'missing.sh');
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, ACTIONS_RUNNER_HOOK_JOB_STARTED: missing });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob({ steps: [{ name: 'Never', run: `touch ${rl.out}/never` }] });
    assert.equal((await proc.exited).code, 0);
    assert.deepEqual(
      rl.broker.completions.map((c) => c.result),
      ['Failed'],
    );
    assert.equal(existsSync(path.join(rl.out, 'never')), false);
    assert.match(await readDiag(rl.root, 'Worker'), /##\[error\]File doesn't exist: /);
  } finally {
    await rl.dispose();
  }
});
