/**
 * The container hooks, driven with the JSON the runner sends, run as the runner user against the
 * job's own rootless engine: a `container:` job with one service, a script step in the job
 * container, a docker:// step, a refused `options: --privileged`, and cleanup.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLab, type Lab } from '../helpers/lab.js';
import { EngineGuard } from '../../src/engine/engine-guard.js';
import { engineLayout } from '../../src/engine/rootless-engine.js';
import { dockerCli, dockerPolicy, guardCtx, importBusybox, makeJob, openTun } from './fixture.js';
import type { GuardJob } from '../../src/lib/job-guard.js';

const HOOKS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/container-hooks/hooks.sh');

let lab: Lab;
let restoreTun: () => Promise<void>;
let job: GuardJob;
let env: Record<string, string>;
let work: string;
const guard = new EngineGuard({ cgroupParent: 'rw-test-engine', containerHooks: HOOKS });

/** Runs the hooks as the runner would: as the runner user, its environment, the JSON on stdin. */
function hook(input: Record<string, unknown>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(HOOKS, [], { uid: lab.user.uid, gid: lab.user.gid, env, cwd: work, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
    child.stdin.end(`${JSON.stringify(input)}\n`);
  });
}

const mount = (source: string, target: string) => ({ userProvidedValue: null, sourceVolumePath: source, targetVolumePath: target, readOnly: false });
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
  lab = await createLab('rw-hooks-');
  restoreTun = await openTun();
  job = await makeJob(lab);
  const prepared = await guard.prepare(job, dockerPolicy({ mode: 'isolated' }), guardCtx());
  await importBusybox(dockerCli(lab, engineLayout(job.dir).socket), lab.root, 'busybox:1');
  work = path.join(lab.root, 'runner', '_work');
  await fsp.mkdir(path.join(work, 'repo', 'repo'), { recursive: true });
  await fsp.mkdir(path.join(work, '_temp', '_runner_hook_responses'), { recursive: true });
  for (const d of [path.join(lab.root, 'runner'), work, path.join(work, 'repo'), path.join(work, 'repo', 'repo'), path.join(work, '_temp'), path.join(work, '_temp', '_runner_hook_responses')]) {
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
  await lab.dispose();
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
    args: { entryPointArgs: ['-e', '/__w/_temp/step.sh'], entryPoint: 'sh', environmentVariables: { GREETING: 'hello' }, prependPath: ['/__w/_temp/bin'], workingDirectory: '/__w/repo/repo' },
    state: response.state,
  });
  assert.equal(step.code, 0, step.out);
  assert.match(step.out, /step says hello from \/__w\/repo\/repo/);
  assert.match(step.out, /\/var\/run\/docker\.sock/, "the job container gets the job's own engine socket");

  const docker = await hook({ command: 'run_container_step', responseFile: null, args: container({ entryPoint: 'echo', entryPointArgs: ['from', 'a', 'docker', 'step'] }), state: response.state });
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
  for (const [options, key] of [
    ['--privileged', 'docker.allow.privileged'],
    ['--pid=host', 'docker.allow.hostNamespaces'],
    ['-v /etc:/host-etc', 'docker.allow.hostPaths: [/etc]'],
  ] as const) {
    const r = await hook({ command: 'prepare_job', responseFile, args: { container: container({ createOptions: options }), services: [] }, state: null });
    assert.equal(r.code, 1, `${options} was accepted: ${r.out}`);
    assert.ok(r.out.includes(key), `the refusal of ${options} does not name ${key}: ${r.out}`);
  }
  assert.equal(await dockerCli(lab, engineLayout(job.dir).socket)('ps', '-aq'), '', 'a refused container was created anyway');
});
