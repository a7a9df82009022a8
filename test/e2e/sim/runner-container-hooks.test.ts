import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createRunnerLab, readDiag, type RunnerLab } from './runner-harness.js';

interface Recorded {
  command: string;
  responseFile: string;
  responseFileWasEmpty: boolean;
  args: Record<string, unknown>;
  state: Record<string, unknown> | null;
}

/**
 * A stub hooks script: records each input it reads on stdin, prints a line into the job log,
 * answers with a state that counts the calls, and exits 3 on the command named by HOOK_FAIL_ON
 * or sleeps on the one named by HOOK_SLOW_ON.
 */
async function stubHook(rl: RunnerLab): Promise<string> {
  const script = path.join(rl.hooks, 'hooks.js');
  await writeFile(
    script,
    `const fs = require('fs');
const input = JSON.parse(fs.readFileSync(0, 'utf8').trim().split('\\n').pop());
const dir = ${JSON.stringify(rl.out)};
const n = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).length;
const responseFileWasEmpty = fs.existsSync(input.responseFile) && fs.readFileSync(input.responseFile, 'utf8') === '';
fs.writeFileSync(dir + '/' + n + '-' + input.command + '.json', JSON.stringify({ ...input, responseFileWasEmpty }));
const step = ((input.state && input.state.step) || 0) + 1;
console.log('hook says: ' + input.command + ' call ' + step);
if (process.env.HOOK_SLOW_ON === input.command) { fs.writeFileSync(dir + '/slow.started', ''); setTimeout(() => {}, 60000); return; }
if (process.env.HOOK_FAIL_ON === input.command) process.exit(3);
if (input.command === 'prepare_job') {
  fs.writeFileSync(input.responseFile, JSON.stringify({ state: { step, network: 'net-x' },
    context: { container: { id: 'c1', network: 'net-x' }, services: [{ id: 's1', network: 'net-x', ports: { '5432': '49152' } }] },
    isAlpine: false }) + '\\n');
} else if (input.command !== 'cleanup_job') {
  fs.writeFileSync(input.responseFile, JSON.stringify({ state: { step, network: 'net-x' } }));
}
`,
    { mode: 0o644 },
  );
  return script;
}

async function recorded(rl: RunnerLab): Promise<Recorded[]> {
  const names = (await readdir(rl.out)).filter((f) => /^\d+-.*\.json$/.test(f));
  names.sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  return Promise.all(names.map(async (n) => JSON.parse(await readFile(path.join(rl.out, n), 'utf8')) as Recorded));
}

const CONTAINER_JOB = {
  container: { image: 'node:20', env: { NODE_ENV: 'test' }, options: '--cpus 1', volumes: ['cache:/cache'] },
  services: { db: { image: 'postgres:16', ports: ['5432'], env: { POSTGRES_PASSWORD: 'pw' } } },
};

test("container hooks: prepare_job, run_script_step, run_container_step and cleanup_job get the runner's input on stdin, the state threads through, the output reaches the job log; the in-container refusal does not apply", async () => {
  const rl = await createRunnerLab();
  try {
    const hook = await stubHook(rl);
    const cgroup = path.join(rl.hooks, 'cgroup');
    await writeFile(cgroup, '12:memory:/docker/0123abcd\n0::/\n');
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], {
      ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
      ACTIONS_RUNNER_CONTAINER_HOOKS: hook,
      RUNNER_SIM_PROC1_CGROUP: cgroup,
    });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob({
      ...CONTAINER_JOB,
      steps: [
        { name: 'Build', run: `touch ${rl.out}/ran-on-host`, env: { STEP_VAR: 'x' } },
        { name: 'Docker', run: '', uses: 'docker://alpine:3.20', with: { args: 'hello world' } },
      ],
    });
    assert.equal((await proc.exited).code, 0, proc.err());
    assert.deepEqual(
      rl.broker.completions.map((c) => c.result),
      ['Succeeded'],
    );
    const calls = await recorded(rl);
    assert.deepEqual(
      calls.map((c) => c.command),
      ['prepare_job', 'run_script_step', 'run_container_step', 'cleanup_job'],
    );
    assert.deepEqual(
      calls.map((c) => (c.state as { step?: number } | null)?.step ?? null),
      [null, 1, 2, 3],
      'each call carries the latest returned state',
    );
    for (const c of calls) {
      assert.match(c.responseFile, new RegExp(`^${path.join(rl.root, '_work', '_temp', '_runner_hook_responses')}/[0-9a-f-]{36}\\.json$`));
      assert.ok(c.responseFileWasEmpty, 'the response file exists, empty, before the hook runs');
    }

    const [prepare, script, docker] = calls as [Recorded, Recorded, Recorded];
    const job = prepare.args.container as Record<string, unknown>;
    assert.equal(job.image, 'node:20');
    assert.equal(job.workingDirectory, '/__w/app/app');
    assert.equal(job.createOptions, '--cpus 1');
    assert.deepEqual(job.environmentVariables, { NODE_ENV: 'test', HOME: '/github/home' });
    assert.deepEqual(job.userMountVolumes, [
      { userProvidedValue: 'cache:/cache', sourceVolumePath: 'cache', targetVolumePath: '/cache', readOnly: false },
    ]);
    const mounts = job.systemMountVolumes as Array<{ sourceVolumePath: string; targetVolumePath: string; readOnly: boolean }>;
    assert.deepEqual(mounts.map((m) => [m.sourceVolumePath, m.targetVolumePath, m.readOnly]).slice(0, 2), [
      [path.join(rl.root, '_work'), '/__w', false],
      [path.join(rl.root, 'externals'), '/__e', true],
    ]);
    const services = prepare.args.services as Array<Record<string, unknown>>;
    assert.equal(services.length, 1);
    assert.equal(services[0]?.image, 'postgres:16');
    assert.deepEqual(services[0]?.portMappings, ['5432']);
    assert.equal('contextName' in (services[0] ?? {}), false, 'the runner sends no contextName: services match by index');

    assert.equal(script.args.entryPoint, 'sh');
    const scriptArgs = script.args.entryPointArgs as string[];
    assert.equal(scriptArgs[0], '-e');
    assert.match(scriptArgs[1] ?? '', /^\/__w\/_temp\/[0-9a-f-]{36}\.sh$/);
    assert.equal(script.args.workingDirectory, '/__w/app/app');
    const env = script.args.environmentVariables as Record<string, string>;
    assert.equal(env.GITHUB_WORKSPACE, '/__w/app/app');
    assert.equal(env.RUNNER_TEMP, '/__w/_temp');
    assert.equal(env.STEP_VAR, 'x');
    assert.equal(env.ACTIONS_RUNNER_CONTAINER_HOOKS, undefined, 'only the declared environment goes into the container');
    assert.equal(existsSync(path.join(rl.out, 'ran-on-host')), false, "the script is the hook's to run, not the host's");

    assert.equal(docker.args.image, 'alpine:3.20');
    assert.deepEqual(docker.args.entryPointArgs, ['hello', 'world']);
    assert.equal(docker.args.workingDirectory, '/github/workspace');

    const log = await readDiag(rl.root, 'Worker');
    for (const c of ['prepare_job call 1', 'run_script_step call 2', 'run_container_step call 3', 'cleanup_job call 4']) {
      assert.match(log, new RegExp(`hook says: ${c}`), `the hook's output is in the job log: ${c}`);
    }
    assert.match(log, /Job container id: c1/);
  } finally {
    await rl.dispose();
  }
});

test('without container hooks, a runner inside a container refuses container jobs as the real one does', async () => {
  const rl = await createRunnerLab();
  try {
    const cgroup = path.join(rl.hooks, 'cgroup');
    await writeFile(cgroup, '12:memory:/docker/0123abcd\n');
    const { encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, RUNNER_SIM_PROC1_CGROUP: cgroup });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob({ ...CONTAINER_JOB, steps: [{ name: 'Never', run: `touch ${rl.out}/never` }] });
    assert.equal((await proc.exited).code, 0);
    assert.deepEqual(
      rl.broker.completions.map((c) => c.result),
      ['Failed'],
    );
    assert.match(
      await readDiag(rl.root, 'Worker'),
      /##\[error\]Container feature is not supported when runner is already running inside container\./,
    );
    assert.equal(existsSync(path.join(rl.out, 'never')), false, 'the steps are skipped');
  } finally {
    await rl.dispose();
  }
});

test("a failing hook fails the job with the runner's message and cleanup_job still runs; a shutdown skips cleanup_job", async () => {
  const rl = await createRunnerLab();
  try {
    const hook = await stubHook(rl);
    const { encoded } = rl.broker.jitRunner({ ephemeral: false });
    const proc = rl.start(['run'], {
      ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
      ACTIONS_RUNNER_CONTAINER_HOOKS: hook,
      HOOK_FAIL_ON: 'run_script_step',
    });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob({
      ...CONTAINER_JOB,
      steps: [
        { name: 'Build', run: 'true' },
        { name: 'Next', run: 'true' },
      ],
    });
    await proc.waitFor(/Job build completed with result: Failed/, 30_000);
    assert.deepEqual(
      (await recorded(rl)).map((c) => c.command),
      ['prepare_job', 'run_script_step', 'cleanup_job'],
      'Stop containers is always()',
    );
    const log = await readDiag(rl.root, 'Worker');
    assert.match(
      log,
      /##\[error\]Executing the custom container implementation failed\. Please contact your self hosted runner administrator\./,
    );
    assert.match(
      log,
      new RegExp(`##\\[error\\]The hook script at '${hook}' running command 'run_script_step' did not execute successfully`),
    );
    proc.child.kill('SIGINT');
    await proc.exited;

    const rl2 = await createRunnerLab();
    try {
      const hook2 = await stubHook(rl2);
      const second = rl2.broker.jitRunner();
      const p2 = rl2.start(['run'], {
        ACTIONS_RUNNER_INPUT_JITCONFIG: second.encoded,
        ACTIONS_RUNNER_CONTAINER_HOOKS: hook2,
        HOOK_SLOW_ON: 'run_script_step',
        RUNNER_SIM_STEP_SIGINT_TIMEOUT_SECONDS: '0.5',
        RUNNER_SIM_STEP_SIGTERM_TIMEOUT_SECONDS: '0.5',
      });
      await p2.waitFor(/Listening for Jobs/);
      rl2.broker.enqueueJob({ ...CONTAINER_JOB, steps: [{ name: 'Build', run: 'true' }] });
      const deadline = Date.now() + 20_000;
      while (!existsSync(path.join(rl2.out, 'slow.started'))) {
        assert.ok(Date.now() < deadline, 'the slow hook should start');
        await new Promise((r) => setTimeout(r, 50));
      }
      p2.child.kill('SIGINT');
      assert.equal((await p2.exited).code, 0);
      assert.deepEqual(
        (await recorded(rl2)).map((c) => c.command),
        ['prepare_job', 'run_script_step'],
        'no cleanup_job after a shutdown',
      );
      assert.deepEqual(
        rl2.broker.completions.map((c) => c.result),
        ['Failed'],
      );
    } finally {
      await rl2.dispose();
    }
  } finally {
    await rl.dispose();
  }
});
