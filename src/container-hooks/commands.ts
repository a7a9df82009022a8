/**
 * The four hook commands on the job's engine:
 *
 * ```
 *  prepare_job         network → pull + create + start the job container and services → wait
 *                      healthy → response {state, context, isAlpine}
 *  run_script_step     docker exec in the job container (output to the job log)
 *  run_container_step  pull or build, then docker run --rm (docker:// steps and container actions)
 *  cleanup_job         remove every container and network with the job's label
 * ```
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DockerCli } from './docker-cli.js';
import { containerArgs, containerName, enforcePolicy, JOB_LABEL, type JobScope } from './create-args.js';
import {
  contextPorts,
  type ContainerInfo,
  type ContextContainer,
  type HookState,
  type PrepareJobArgs,
  type PrepareJobResponse,
  type Registry,
  type ScriptStepArgs,
} from './protocol.js';

/**
 * How long a service may report "starting" before the job fails: databases in CI take seconds to
 * a minute; the reference implementation gives up after about the same.
 */
const HEALTH_TIMEOUT_MS = 300_000;
/** Poll interval of the health status. */
const HEALTH_POLL_MS = 1_000;

/** Everything a command needs. */
export interface HookEnv {
  docker: DockerCli;
  scope: JobScope;
  /** A directory for one-off docker configs (registry logins), deleted after use: RUNNER_TEMP. */
  tempDir: string;
  /** Prints a line to the job log. */
  print(line: string): void;
  /**
   * missing: pull only images the engine lacks (isolated mode: a fresh engine holds only what this
   * job itself pulled or built); always: pull every time (a shared engine's tags may be stale).
   */
  pull: 'always' | 'missing';
}

const unique = (): string => randomBytes(8).toString('hex');

/** Pulls `image`, logging in to its registry with a throwaway config when credentials are given. */
async function pull(env: HookEnv, image: string, registry: Registry | null | undefined): Promise<void> {
  if (
    env.pull === 'missing' &&
    (await env.docker.capture(['image', 'inspect', '--format', '{{.Id}}', image]).then(
      () => true,
      () => false,
    ))
  )
    return;
  let config: string | undefined;
  try {
    if (registry?.username && registry.password) {
      config = await fsp.mkdtemp(path.join(env.tempDir || os.tmpdir(), '.docker_'));
      await env.docker.capture(['--config', config, 'login', '-u', registry.username, '--password-stdin', registry.serverUrl ?? ''], {
        input: registry.password,
      });
    }
    await env.docker.capture([...(config ? ['--config', config] : []), 'pull', image]);
  } finally {
    if (config) await fsp.rm(config, { recursive: true, force: true });
  }
}

/** Waits while a container with a health check reports "starting". */
async function waitHealthy(env: HookEnv, id: string, image: string): Promise<void> {
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  for (;;) {
    const status = await env.docker.capture(['inspect', '--format', '{{if .Config.Healthcheck}}{{.State.Health.Status}}{{end}}', id]);
    if (status === '' || status === 'healthy') return;
    if (status !== 'starting' || Date.now() > deadline) throw new Error(`container ${image} is ${status}`);
    await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
  }
}

/** Creates and starts one container; returns its context entry. */
async function startContainer(env: HookEnv, info: ContainerInfo, network: string, isJob: boolean): Promise<ContextContainer> {
  const image = info.image ?? '';
  // The job container idles while steps are exec'd into it, as the runner's own does.
  const idle = isJob ? { entryPoint: 'tail', args: ['-f', '/dev/null'] } : undefined;
  const { args, env: vars } = containerArgs(info, image, containerName(image, unique()), network, env.scope, idle);
  await pull(env, image, info.registry);
  const id = await env.docker.capture(['create', ...args], { env: vars });
  await env.docker.capture(['start', id]);
  const ports = contextPorts((await env.docker.capture(['port', id])).split('\n'));
  return { id, network, image, ports, ...(info.contextName ? { contextName: info.contextName } : {}) };
}

/** prepare_job: the network, the job container and the services; returns the response. */
export async function prepareJob(env: HookEnv, args: PrepareJobArgs): Promise<PrepareJobResponse | undefined> {
  const job = args.container?.image ? args.container : undefined;
  const services = (args.services ?? []).filter((s) => s?.image);
  if (!job && services.length === 0) {
    env.print('No containers exist, skipping hook invocation');
    return undefined;
  }
  // Every container's asks are checked before the engine is touched: a refused job leaves nothing.
  for (const c of [job, ...services]) if (c) enforcePolicy(c, env.scope);
  await cleanupJob(env);
  const network = `github_network_${unique()}`;
  await env.docker.capture([
    'network',
    'create',
    `--label=${JOB_LABEL}=${env.scope.runner}`,
    `--label=${Buffer.from(env.scope.runner).toString('hex')}`,
    network,
  ]);
  const state: HookState = { network };
  const response: PrepareJobResponse = { state, context: { services: [] }, isAlpine: false };
  if (job) {
    const c = await startContainer(env, job, network, true);
    state.container = c.id;
    response.context.container = c;
    const osRelease = await env.docker.capture(['exec', c.id, 'cat', '/etc/os-release']).catch(() => '');
    response.isAlpine = /^ID=("?)alpine\1$/m.test(osRelease);
  }
  for (const s of services) {
    const c = await startContainer(env, s, network, false);
    (state.services ??= []).push(c.id);
    response.context.services.push(c);
  }
  const all = [response.context.container, ...response.context.services].filter((c): c is ContextContainer => c !== undefined);
  await Promise.all(all.map((c) => waitHealthy(env, c.id, c.image)));
  return response;
}

/** run_script_step: the step's script, exec'd in the job container; resolves with its exit code. */
export async function runScriptStep(env: HookEnv, args: ScriptStepArgs, state: HookState | null | undefined): Promise<number> {
  if (!state?.container) throw new Error('run_script_step: state.container: expected the job container from prepare_job');
  const vars: Record<string, string> = { ...(args.environmentVariables ?? {}) };
  const dockerArgs = ['exec', '-i', `--workdir=${args.workingDirectory}`];
  for (const k of Object.keys(vars)) dockerArgs.push('-e', k);
  if (args.prependPath?.length) {
    const envList = JSON.parse(await env.docker.capture(['inspect', '--format', '{{json .Config.Env}}', state.container])) as
      string[] | null;
    const base =
      (envList ?? []).find((e) => e.startsWith('PATH='))?.slice(5) ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
    vars.PATH = [...[...args.prependPath].reverse(), base].join(':');
    if (!dockerArgs.includes('PATH')) dockerArgs.push('-e', 'PATH');
  }
  dockerArgs.push(state.container, args.entryPoint, ...(args.entryPointArgs ?? []));
  return env.docker.stream(dockerArgs, { env: vars });
}

/** run_container_step: a docker:// image or a Dockerfile action, run to completion; its exit code. */
export async function runContainerStep(env: HookEnv, args: ContainerInfo, state: HookState | null | undefined): Promise<number> {
  let image = args.image ?? '';
  if (image) await pull(env, image, args.registry);
  else if (args.dockerfile) {
    image = `${Buffer.from(env.scope.runner).toString('hex')}:${unique().slice(0, 6)}`;
    await env.docker.capture([
      'build',
      `--label=${JOB_LABEL}=${env.scope.runner}`,
      '-t',
      image,
      '-f',
      args.dockerfile,
      path.dirname(args.dockerfile),
    ]);
  } else throw new Error('run_container_step: expected args.image or args.dockerfile');
  const { args: runArgs, env: vars } = containerArgs(args, image, containerName(image, unique()), state?.network, env.scope);
  return env.docker.stream(['run', '--rm', ...runArgs], { env: vars });
}

/** cleanup_job: every container (running or not) and network with the job's label. */
export async function cleanupJob(env: HookEnv): Promise<void> {
  const filter = `label=${JOB_LABEL}=${env.scope.runner}`;
  const ids = (await env.docker.capture(['ps', '--all', '--quiet', '--no-trunc', '--filter', filter])).split('\n').filter(Boolean);
  if (ids.length > 0) await env.docker.capture(['rm', '--force', '--volumes', ...ids]);
  const nets = (await env.docker.capture(['network', 'ls', '--quiet', '--filter', filter])).split('\n').filter(Boolean);
  if (nets.length > 0) await env.docker.capture(['network', 'rm', ...nets]);
}
