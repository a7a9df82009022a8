/**
 * The container parts of a simulated job, as the real worker runs them
 * (actions/runner `src/Runner.Worker/ContainerOperationProvider.cs`, `Handlers/StepHost.cs`,
 * `Handlers/ContainerActionHandler.cs`, `FeatureManager.cs`):
 *
 * - "Initialize containers" (a job with `container:` and/or `services:`): with
 *   ACTIONS_RUNNER_CONTAINER_HOOKS set, `prepare_job`; without it, the runner's own docker path,
 *   which first refuses a runner that itself runs in a container (a line of `/proc/1/cgroup`
 *   containing `:/docker/`). The simulator has no docker path: it fails such a job with a line
 *   saying so.
 * - a `run:` step of a job with a job container: `run_script_step` (`sh -e <script>` inside);
 * - a `docker://` step: `run_container_step` (no in-container check, as in the real runner);
 * - "Stop containers" (a post step, registered when "Initialize containers" starts): `cleanup_job`.
 * The real runner also needs the service-side feature flag `DistributedTask.AllowRunnerContainerHooks`,
 * which github.com sets; the simulator treats it as set.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { JobStep } from '../protocol.js';
import type { SimJob } from './broker.js';
import { CONTAINER_HOOKS_ENV, ContainerHookClient, ContainerHookError, type HookRunner } from './container-hooks.js';
import { ContainerPathMap, containerStepArgs, jobHookContainer, serviceHookContainer, type ScriptStepArgs } from './hook-input.js';
import type { JobPaths } from './job.js';
import type { TaskResult } from './results.js';

/** The real runner's refusal when it runs in a container and no hooks are set. */
export const IN_CONTAINER_MESSAGE = 'Container feature is not supported when runner is already running inside container.';

/** Where the real runner looks for the Docker cgroup of pid 1. */
export const PROC1_CGROUP = '/proc/1/cgroup';

/** What the container steps need from the job. */
export interface ContainerStepDeps {
  root: string;
  paths: JobPaths;
  job: SimJob;
  /** The value of ACTIONS_RUNNER_CONTAINER_HOOKS in the worker's environment ('' when unset). */
  hooksScript: string;
  /** The file read for the in-container check (PROC1_CGROUP unless a test points elsewhere). */
  proc1Cgroup: string;
  /** Runs the hooks script as a step process with `stdin`, its output in the job log. */
  runHook: HookRunner;
  /** A line of the job log. */
  log: (line: string) => void;
  /** A line of the worker's trace only. */
  trace: (line: string) => void;
}

/** True when a line of pid 1's cgroup file contains `:/docker/` (AssertCompatibleOS). */
export function runsInDockerContainer(cgroupFile: string): boolean {
  try {
    return readFileSync(cgroupFile, 'utf8')
      .split('\n')
      .some((l) => l.toLowerCase().includes(':/docker/'));
  } catch {
    return false;
  }
}

/** The job's containers and its conversation with the hooks. */
export class JobContainers {
  private readonly client: ContainerHookClient | undefined;
  private readonly map: ContainerPathMap;

  constructor(private readonly d: ContainerStepDeps) {
    this.map = new ContainerPathMap(d.paths, d.root);
    this.client = d.hooksScript
      ? new ContainerHookClient(d.hooksScript, path.join(d.paths.temp, '_runner_hook_responses'), d.runHook, d.trace)
      : undefined;
  }

  /** The job declares `container:` or `services:` ("Initialize containers" and "Stop containers" run). */
  get declared(): boolean {
    return this.d.job.container !== undefined || Object.keys(this.d.job.services ?? {}).length > 0;
  }

  /** `run:` steps go to the job container through `run_script_step`. */
  get scriptsInContainer(): boolean {
    return this.client !== undefined && this.d.job.container !== undefined;
  }

  private fail(err: unknown): TaskResult {
    if (err instanceof ContainerHookError) {
      this.d.log(`##[error]${err.message}`);
      this.d.log(`##[error]${err.detail}`);
    } else {
      this.d.log(`##[error]${(err as Error).message}`);
    }
    return 'Failed';
  }

  /** "Initialize containers". */
  async initialize(): Promise<TaskResult> {
    const { job, paths, root } = this.d;
    if (!this.client) {
      if (runsInDockerContainer(this.d.proc1Cgroup)) return this.fail(new Error(IN_CONTAINER_MESSAGE));
      return this.fail(new Error(`The runner simulator runs containers only through container hooks: set ${CONTAINER_HOOKS_ENV}.`));
    }
    try {
      const response = await this.client.call('prepare_job', {
        container: job.container ? jobHookContainer(job.container, paths, root) : null,
        services: Object.values(job.services ?? {}).map(serviceHookContainer),
      });
      // PrepareJobAsync reads response.State unguarded: no response is a NullReferenceException
      if (response === null) return this.fail(new Error('Object reference not set to an instance of an object.'));
      const names = Object.keys(job.services ?? {});
      if (response.context?.container?.id) this.d.trace(`Job container id: ${response.context.container.id}`);
      response.context?.services.forEach((s, i) => this.d.trace(`Service ${names[i] ?? i} container id: ${s.id ?? ''}`));
      return 'Succeeded';
    } catch (err) {
      return this.fail(err);
    }
  }

  /** A `run:` step inside the job container; `env` is the step's declared environment. */
  async runScript(hostScript: string, env: Record<string, string>, prependPath: string[]): Promise<TaskResult> {
    if (!this.client) return this.fail(new Error('no container hooks'));
    const args: ScriptStepArgs = {
      entryPointArgs: ['-e', this.map.translate(hostScript)],
      entryPoint: 'sh',
      environmentVariables: this.map.translateEnv(env),
      prependPath,
      workingDirectory: this.map.translate(this.d.paths.workspace),
    };
    try {
      await this.client.call('run_script_step', args);
      return 'Succeeded';
    } catch (err) {
      return this.fail(err);
    }
  }

  /** A `uses: docker://<image>` step. */
  async runContainerStep(step: JobStep, env: Record<string, string>): Promise<TaskResult> {
    const image = (step.uses ?? '').replace(/^docker:\/\//, '');
    if (!this.client) {
      return this.fail(new Error(`The runner simulator runs docker:// steps only through container hooks: set ${CONTAINER_HOOKS_ENV}.`));
    }
    try {
      await this.client.call('run_container_step', containerStepArgs(image, step.with?.entrypoint, step.with?.args, env, this.d.paths));
      return 'Succeeded';
    } catch (err) {
      return this.fail(err);
    }
  }

  /** "Stop containers": `cleanup_job` with the latest state; nothing to do on the simulator's own path. */
  async stop(): Promise<TaskResult> {
    if (!this.client) return 'Succeeded';
    try {
      await this.client.call('cleanup_job', {});
      return 'Succeeded';
    } catch (err) {
      return this.fail(err);
    }
  }
}
