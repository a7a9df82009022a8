/**
 * The container hooks, driven with the JSON the runner sends, run as the runner user against the
 * job's own rootless engine: a `container:` job with one service, a script step in the job
 * container, a docker:// step, a refused `options: --privileged`, and cleanup; then the same
 * through the runner simulator on a host where the runner itself runs in a container. One engine
 * serves the whole file: every test ends with the engine empty (cleanup_job), as a job leaves it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Lab } from '../../helpers/lab.js';
import { createRunnerLab, readDiag, type RunnerLab } from '../sim/runner-harness.js';
import { main as hooksMain } from '../../../src/container-hooks/main.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { engineLayout } from '../../../src/engine/rootless-engine.js';
import { bundledHooks, dockerCli, dockerPolicy, guardCtx, HOOKS_SH, importBusybox, makeJob, openTun } from './fixture.js';
import type { GuardJob } from '../../../src/lib/job-guard.js';

let rl: RunnerLab;
let lab: Lab;
let restoreTun: () => Promise<void>;
let job: GuardJob;
let env: Record<string, string>;
let work: string;
let guard: EngineGuard;
/** The hooks as a built package runs them (bundle); the checkout's tsx path is run once below. */
let HOOKS: string;

/** Runs the hooks as the runner would: as the runner user, its environment, the JSON on stdin. */
async function hook(input: Record<string, unknown>, script = HOOKS): Promise<{ code: number | null; out: string }> {
  // Its own temp dir in the lab: tsx (the checkout's path) keeps a cache under $TMPDIR, never the host's /tmp.
  const tmp = path.join(lab.root, 'hook-tmp');
  await fsp.mkdir(tmp, { recursive: true, mode: 0o700 });
  await fsp.chown(tmp, lab.user.uid, lab.user.gid);
  return new Promise((resolve) => {
    const child = spawn(script, [], {
      uid: lab.user.uid,
      gid: lab.user.gid,
      env: { ...env, TMPDIR: tmp },
      cwd: work,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
    child.stdin.end(`${JSON.stringify(input)}\n`);
  });
}

const mount = (source: string, target: string) => ({
  userProvidedValue: null,
  sourceVolumePath: source,
  targetVolumePath: target,
  readOnly: false,
});
const container = (over: Record<string, unknown>) => ({
  image: 'busybox:1',
  dockerfile: null,
  entryPointArgs: [],
  entryPoint: null,
  workingDirectory: '/__w/repo/repo',
  createOptions: null,
  registry: null,
  environmentVariables: {},
  portMappings: [],
  systemMountVolumes: [mount(work, '/__w'), mount('/var/run/docker.sock', '/var/run/docker.sock')],
  userMountVolumes: [],
  ...over,
});

before(async () => {
  rl = await createRunnerLab();
  lab = rl.lab;
  HOOKS = await bundledHooks(lab.root);
  guard = new EngineGuard({ cgroupParent: 'rw-test-engine', containerHooks: HOOKS });
  restoreTun = await openTun();
  job = await makeJob(lab);
  const prepared = await guard.prepare(job, dockerPolicy({ mode: 'isolated' }), guardCtx());
  await importBusybox(dockerCli(lab, engineLayout(job.dir).socket), lab.root, 'busybox:1');
  work = path.join(lab.root, 'runner', '_work');
  await fsp.mkdir(path.join(work, 'repo', 'repo'), { recursive: true });
  await fsp.mkdir(path.join(work, '_temp', '_runner_hook_responses'), { recursive: true });
  for (const d of [
    path.join(lab.root, 'runner'),
    work,
    path.join(work, 'repo'),
    path.join(work, 'repo', 'repo'),
    path.join(work, '_temp'),
    path.join(work, '_temp', '_runner_hook_responses'),
  ]) {
    await fsp.chown(d, lab.user.uid, lab.user.gid);
  }
  env = {
    ...(prepared.env ?? {}),
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: lab.user.home,
    RUNNER_NAME: 'rw-test-runner',
    RUNNER_TEMP: path.join(work, '_temp'),
    RUNNER_WORKSPACE: path.join(work, 'repo'),
    GITHUB_WORKSPACE: path.join(work, 'repo', 'repo'),
  };
});

after(async () => {
  await guard.release(job, dockerPolicy({ mode: 'isolated' }), guardCtx());
  await guard.drain();
  await restoreTun();
  await rl.dispose();
  for (const ctrl of await fsp.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    await fsp.rmdir(path.join('/sys/fs/cgroup', ctrl, 'rw-test-engine')).catch(() => undefined);
  }
});

test('a container job with one service runs through the hooks on the job engine, its output in the job log', async () => {
  assert.equal(env.ACTIONS_RUNNER_CONTAINER_HOOKS, HOOKS, 'the guard points the runner at the hooks');
  const responseFile = path.join(work, '_temp', '_runner_hook_responses', 'prepare.json');
  await fsp.writeFile(responseFile, '');
  await fsp.chown(responseFile, lab.user.uid, lab.user.gid);
  const service = container({ workingDirectory: null, entryPoint: 'sleep', entryPointArgs: ['600'], systemMountVolumes: [] });
  const prep = await hook({ command: 'prepare_job', responseFile, args: { container: container({}), services: [service] }, state: null });
  assert.equal(prep.code, 0, prep.out);
  const response = JSON.parse(await fsp.readFile(responseFile, 'utf8')) as {
    state: { network: string; container: string; services: string[] };
    context: { container: { id: string }; services: Array<{ id: string }> };
    isAlpine: boolean;
  };
  assert.equal(response.isAlpine, false);
  assert.equal(response.context.container.id, response.state.container);
  assert.equal(response.state.services.length, 1);

  await fsp.writeFile(path.join(work, '_temp', 'step.sh'), 'echo "step says $GREETING from $(pwd)"; ls /var/run/docker.sock\n');
  const step = await hook({
    command: 'run_script_step',
    responseFile: null,
    args: {
      entryPointArgs: ['-e', '/__w/_temp/step.sh'],
      entryPoint: 'sh',
      environmentVariables: { GREETING: 'hello' },
      prependPath: ['/__w/_temp/bin'],
      workingDirectory: '/__w/repo/repo',
    },
    state: response.state,
  });
  assert.equal(step.code, 0, step.out);
  assert.match(step.out, /step says hello from \/__w\/repo\/repo/);
  assert.match(step.out, /\/var\/run\/docker\.sock/, "the job container gets the job's own engine socket");

  const docker = await hook({
    command: 'run_container_step',
    responseFile: null,
    args: container({ entryPoint: 'echo', entryPointArgs: ['from', 'a', 'docker', 'step'] }),
    state: response.state,
  });
  assert.equal(docker.code, 0, docker.out);
  assert.match(docker.out, /from a docker step/);

  const engine = dockerCli(lab, engineLayout(job.dir).socket);
  const labelled = await engine('ps', '-aq', '--filter', 'label=runner-warden.job=rw-test-runner');
  assert.equal(labelled.split('\n').length, 2, 'job container and service are labelled');
  const cleanup = await hook({ command: 'cleanup_job', responseFile: null, args: {}, state: response.state });
  assert.equal(cleanup.code, 0, cleanup.out);
  assert.equal(await engine('ps', '-aq'), '', 'cleanup_job left containers');
  assert.equal(await engine('network', 'ls', '-q', '--filter', 'label=runner-warden.job'), '', 'cleanup_job left networks');
});

test('create options the policy does not allow are refused, and the job log names the key', async () => {
  const responseFile = path.join(work, '_temp', '_runner_hook_responses', 'refused.json');
  await fsp.writeFile(responseFile, '');
  await fsp.chown(responseFile, lab.user.uid, lab.user.gid);
  // Once through the checkout's hooks.sh as the runner user (its tsx path, used when no bundle is built).
  const viaTsx = await hook(
    { command: 'prepare_job', responseFile, args: { container: container({ createOptions: '--privileged' }), services: [] }, state: null },
    HOOKS_SH,
  );
  assert.equal(viaTsx.code, 1, viaTsx.out);
  assert.ok(viaTsx.out.includes('docker.allow.privileged'), viaTsx.out);
  // In process (the first test ran the same entry point as the runner user): the refusal comes
  // before any container exists, and a node start per case would cost seconds on a loaded host.
  for (const [options, key] of [
    ['--privileged', 'docker.allow.privileged'],
    ['--pid=host', 'docker.allow.hostNamespaces'],
    ['-v /etc:/host-etc', 'docker.allow.hostPaths: [/etc]'],
  ] as const) {
    let out = '';
    const input = {
      command: 'prepare_job',
      responseFile,
      args: { container: container({ createOptions: options }), services: [] },
      state: null,
    };
    const code = await hooksMain(env, JSON.stringify(input), (line) => (out += `${line}\n`));
    assert.equal(code, 1, `${options} was accepted: ${out}`);
    assert.ok(out.includes(key), `the refusal of ${options} does not name ${key}: ${out}`);
  }
  const engine = dockerCli(lab, engineLayout(job.dir).socket);
  assert.equal(await engine('ps', '-aq'), '', 'a refused container was created anyway');
  assert.equal(await engine('network', 'ls', '-q', '--filter', 'label=runner-warden.job'), '', 'a refused job left a network');
});

test('a container job with a service runs through the hooks on the job engine when the runner is in a container', async () => {
  const engine = dockerCli(lab, engineLayout(job.dir).socket);
  const cgroup = path.join(rl.hooks, 'cgroup');
  writeFileSync(cgroup, '12:memory:/docker/0123abcd\n0::/\n');
  const { encoded } = rl.broker.jitRunner();
  const { ACTIONS_RUNNER_CONTAINER_HOOKS, CONTAINER_HOOKS_DOCKER_POLICY, DOCKER_HOST } = env;
  const proc = rl.start(['run'], {
    ACTIONS_RUNNER_CONTAINER_HOOKS,
    CONTAINER_HOOKS_DOCKER_POLICY,
    DOCKER_HOST,
    ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
    RUNNER_SIM_PROC1_CGROUP: cgroup,
  } as Record<string, string>);
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
  assert.deepEqual(
    rl.broker.completions.map((c) => c.result),
    ['Succeeded'],
    log.slice(-3000),
  );
  assert.match(log, /job container says hello from \/__w\//);
  assert.match(log, /docker step ran/);
  assert.equal(await engine('ps', '-aq'), '', 'cleanup_job removed the job and service containers');
});
