/** The agent itself killed with SIGKILL in the middle of a job, then restarted. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createWorld, jobRecords, until } from './agent-world.js';
import { waitForChild } from '../../../src/lib/process.js';
import { processesOfUid } from '../../../src/cleanup/proc.js';
import { agentLockDir, cliCommand } from '../../helpers/agent-process.js';

function startAgent(configFile: string): ChildProcess {
  return spawn(process.execPath, [...cliCommand(), 'run', '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      RUNNER_WARDEN_LOG_LEVEL: 'info',
      // The runner-user locks inside the test's root (a SIGKILLed agent leaves its file), never the host's /run.
      RUNNER_WARDEN_LOCK_DIR: agentLockDir(configFile),
    },
  });
}

async function persistedState(stateDir: string): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(path.join(stateDir, 'state.json'), 'utf8')) as { state: string }).state;
  } catch {
    return undefined;
  }
}

test('an agent killed mid-job cleans the host before registering again, journals the job and leaves no ghost', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  // The image step: baseline of the runner user's home (the agent refuses to call a host clean without one).
  const rt = await w.runtime();
  await rt.close();

  w.fake.enqueueJob({
    repository: 'octo/app',
    runId: 1,
    steps: [{ name: 'long', run: 'bash -c "exec -a job-one-marker sleep 300" & sleep 300' }],
  });
  const first = startAgent(w.configFile);
  let out1 = '';
  first.stdout?.on('data', (d: Buffer) => (out1 += d.toString()));
  first.stderr?.on('data', (d: Buffer) => (out1 += d.toString()));
  await until(async () => (await persistedState(w.stateDir)) === 'job-running', 'the first job to run', 30_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${out1.slice(-3000)}`);
  });
  await until(async () => (await processesOfUid(w.lab.user.uid)).some((p) => /sleep/.test(p.comm)), 'the job step to run');
  first.kill('SIGKILL');
  await waitForChild(first);
  // The listener lives on in its own process group, as it would after a real agent crash.
  assert.ok((await processesOfUid(w.lab.user.uid)).length > 0, 'the orphaned listener and job should still run');

  w.fake.enqueueJob({
    repository: 'octo/app',
    runId: 2,
    steps: [{ name: 'after', run: `ps -u $(id -u) -o args= > ${w.dropDir}/seen.txt; echo ok` }],
  });
  const second = startAgent(w.configFile);
  let out2 = '';
  second.stdout?.on('data', (d: Buffer) => (out2 += d.toString()));
  second.stderr?.on('data', (d: Buffer) => (out2 += d.toString()));
  let timer: NodeJS.Timeout | undefined;
  const done = await Promise.race([waitForChild(second), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 60_000)))]);
  clearTimeout(timer);
  if (!done) second.kill('SIGKILL');
  if (process.env.RW_TEST_LOG) process.stderr.write(out2);
  assert.equal(done?.code, 0, `the restarted agent should stop after its job:\n${out2.slice(-3000)}`);

  const records = await w.journal();
  const jobs = jobRecords(records);
  assert.deepEqual(
    jobs.map((j) => j.result),
    ['interrupted', 'Succeeded'],
    'the interrupted job must be journaled before the next one',
  );
  assert.equal(jobs[0]?.cleanup.clean, true, `recovery cleanup: ${JSON.stringify(jobs[0]?.cleanup.verify.problems)}`);
  // Recovery ran before any registration of the second agent.
  const lines = out2
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; to?: string });
  const firstClean = lines.findIndex((l) => l.msg === 'state' && l.to === 'cleaning');
  const firstRegister = lines.findIndex((l) => l.msg === 'runner registered');
  assert.ok(firstClean >= 0 && firstClean < firstRegister, 'the restarted agent must clean before registering');
  const seen = await readFile(path.join(w.dropDir, 'seen.txt'), 'utf8');
  assert.equal(seen.includes('job-one-marker'), false, `the second job saw the first job's processes: ${seen}`);
  await until(() => w.fake.runners().length === 0, 'every registration to be gone (no ghost)', 20_000);
});
