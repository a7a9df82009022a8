/**
 * A container job queued on the fake GitHub reaches the runner simulator whole (container,
 * services, the steps' uses/with/env), so the simulator's container-hooks path runs: a stub hooks
 * script records what the runner hands it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startFakeGitHub, DEFAULT_FAKE_TOKEN } from '../../../src/sim/github/server.js';
import { createRunnerLab } from './runner-harness.js';

test('a container job queued on the fake GitHub runs through the container hooks with its container, services and step fields', async (t) => {
  const rl = await createRunnerLab();
  const fake = await startFakeGitHub();
  t.after(async () => {
    await fake.close();
    await rl.dispose();
  });
  const hook = path.join(rl.hooks, 'hooks.js');
  await writeFile(
    hook,
    `const fs = require('fs');
const input = JSON.parse(fs.readFileSync(0, 'utf8').trim().split('\\n').pop());
const dir = ${JSON.stringify(rl.out)};
const n = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).length;
fs.writeFileSync(dir + '/' + n + '-' + input.command + '.json', JSON.stringify(input));
if (input.command === 'prepare_job') {
  fs.writeFileSync(input.responseFile, JSON.stringify({ state: {}, context: { container: { id: 'c1', network: 'n' }, services: [{ id: 's1', network: 'n' }] }, isAlpine: false }));
} else if (input.command !== 'cleanup_job') fs.writeFileSync(input.responseFile, JSON.stringify({ state: {} }));
`,
    { mode: 0o644 },
  );
  const cgroup = path.join(rl.hooks, 'cgroup');
  await writeFile(cgroup, '0::/\n');
  const res = await fetch(`${fake.url}/repos/octo/app/actions/runners/generate-jitconfig`, {
    method: 'POST',
    headers: { authorization: `Bearer ${DEFAULT_FAKE_TOKEN}`, 'content-type': 'application/json', accept: 'application/vnd.github+json' },
    body: JSON.stringify({ name: 'fake-container-1', runner_group_id: 1, labels: ['self-hosted'] }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const { encoded_jit_config: encoded } = (await res.json()) as { encoded_jit_config: string };
  const proc = rl.start(['run'], {
    ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
    ACTIONS_RUNNER_CONTAINER_HOOKS: hook,
    RUNNER_SIM_PROC1_CGROUP: cgroup,
  });
  await proc.waitFor(/Listening for Jobs/);
  const spec = {
    repository: 'octo/app',
    container: { image: 'node:20', env: { NODE_ENV: 'test' }, options: '--cpus 1' },
    services: { db: { image: 'postgres:16', ports: ['5432'] } },
    steps: [
      { name: 'In the container', run: `touch ${rl.out}/ran-on-host`, env: { STEP_VAR: 'x' } },
      { name: 'Docker step', run: '', uses: 'docker://alpine:3.20', with: { entrypoint: 'echo', args: 'hello world' } },
    ],
  };
  const jobId = fake.enqueueJob(spec);
  spec.container.image = 'changed-after-queueing';
  assert.equal((await proc.exited).code, 0, proc.err());
  assert.equal(fake.job(jobId)?.result, 'Succeeded');

  const files = (await readdir(rl.out))
    .filter((f) => /^\d+-.*\.json$/.test(f))
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10));
  const calls = await Promise.all(
    files.map(async (f) => JSON.parse(await readFile(path.join(rl.out, f), 'utf8')) as { command: string; args: Record<string, unknown> }),
  );
  assert.deepEqual(
    calls.map((c) => c.command),
    ['prepare_job', 'run_script_step', 'run_container_step', 'cleanup_job'],
    'the job took the container-hooks path',
  );
  const [prepare, script, docker] = calls as [(typeof calls)[0], (typeof calls)[0], (typeof calls)[0]];
  const container = prepare.args.container as Record<string, unknown>;
  assert.equal(container.image, 'node:20', 'the queued job changed after it was queued');
  assert.equal(container.createOptions, '--cpus 1');
  assert.deepEqual(container.environmentVariables, { NODE_ENV: 'test', HOME: '/github/home' });
  const services = prepare.args.services as Array<Record<string, unknown>>;
  assert.deepEqual(
    services.map((s) => [s.image, s.portMappings]),
    [['postgres:16', ['5432']]],
  );
  assert.equal((script.args.environmentVariables as Record<string, string>).STEP_VAR, 'x', "the step's env reached the runner");
  assert.equal(docker.args.image, 'alpine:3.20', "the step's uses reached the runner");
  assert.equal(docker.args.entryPoint, 'echo');
  assert.deepEqual(docker.args.entryPointArgs, ['hello', 'world'], "the step's with reached the runner");
});
