/**
 * What the simulated Runner.Worker does with one job (actions/runner `Runner.Worker/JobRunner.cs`,
 * `JobExtension.cs`, `StepsRunner.cs`):
 *
 *   Set up job            delete _work/_actions, empty _work/_temp, create the workspace,
 *                         _PipelineMapping/<owner>/<repo>/PipelineFolder.json, _temp/_github_workflow/event.json
 *   Set up runner         ACTIONS_RUNNER_HOOK_JOB_STARTED (if set; a failure fails the job)
 *   Initialize containers a job with `container:`/`services:` (container-steps.ts)
 *   <steps>               `bash -e <script>` in GITHUB_WORKSPACE (in the job container through the
 *                         hooks when there is one), or a `docker://` step through the hooks
 *   Stop containers       post step, when "Initialize containers" ran
 *   Complete runner       ACTIONS_RUNNER_HOOK_JOB_COMPLETED (post step, if set)
 *   Complete job          kill orphans by RUNNER_TRACKING_ID, empty _work/_temp (always, as FinalizeJob)
 *
 * Conditions: main steps need success(); the hooks and "Stop containers" are always(). A failed
 * step makes the job Failed. A cancel from the server makes the job Canceled: main steps are
 * skipped, always() steps still run. A runner shutdown makes the job Failed, and no remaining
 * step runs at all, post steps included (StepsRunner skips condition evaluation on shutdown): no
 * "Stop containers", no completed hook. The step running when a cancel arrives gets SIGINT, then
 * SIGTERM 7.5 s later, then SIGKILL 2.5 s later (step-process.ts).
 *
 * Host processes get the worker env plus the GITHUB_* allow-list, RUNNER_* of the runner context,
 * CI=true and RUNNER_TRACKING_ID; container steps get only the declared part, host paths translated.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JobStep } from '../protocol.js';
import type { SimJob } from './broker.js';
import { JobContainers } from './container-steps.js';
import type { Trace } from './diag.js';
import { readFileCommands, stepFiles } from './file-commands.js';
import type { RunnerSettings } from './files.js';
import { killOrphans } from './orphans.js';
import { mergeResults, type TaskResult } from './results.js';
import { runStepProcess, which, type StepCancelTimings } from './step-process.js';
import type { CancelReason } from './worker-channel.js';

/** The annotation the worker logs when the runner is shut down during a job (docs/runner-contract.md §4). */
export const SHUTDOWN_ANNOTATION =
  'The runner has received a shutdown signal. This can happen when the runner service is stopped, or a manually started runner is canceled.';

/** Everything runJob needs; the worker's main builds it. */
export interface JobContext {
  root: string;
  settings: RunnerSettings;
  job: SimJob;
  /** The worker's own environment (the listener's, with `.env` applied). */
  baseEnv: NodeJS.ProcessEnv;
  trace: Trace;
  /** Aborts when the job is cancelled; `cancelReason()` says why. */
  cancel: AbortSignal;
  cancelReason(): CancelReason | undefined;
  /** The runner user's uid (the worker runs as it). */
  uid: number;
  /** The waits between SIGINT, SIGTERM and SIGKILL of a cancelled step (REAL_STEP_CANCEL). */
  stepCancel: StepCancelTimings;
  /** The file of the in-container check (PROC1_CGROUP unless a test points elsewhere). */
  proc1Cgroup: string;
  now?: () => number;
}

/** The job's directories, derived from the work folder and the repository (docs/runner-contract.md §7). */
export interface JobPaths {
  work: string;
  temp: string;
  actions: string;
  tool: string;
  pipeline: string;
  workspace: string;
  mapping: string;
  eventFile: string;
  fileCommands: string;
}

/** Computes the job's paths under `<root>/<workFolder>`. */
export function jobPaths(root: string, settings: RunnerSettings, repository: string, env: NodeJS.ProcessEnv): JobPaths {
  const work = path.resolve(root, settings.workFolder || '_work');
  const [owner = 'owner', repo = 'repo'] = repository.split('/');
  const temp = path.join(work, '_temp');
  return {
    work,
    temp,
    actions: path.join(work, '_actions'),
    tool: env.RUNNER_TOOL_CACHE || env.RUNNER_TOOLSDIRECTORY || env.AGENT_TOOLSDIRECTORY || path.join(work, '_tool'),
    pipeline: path.join(work, repo),
    workspace: path.join(work, repo, repo),
    mapping: path.join(work, '_PipelineMapping', owner, repo, 'PipelineFolder.json'),
    eventFile: path.join(temp, '_github_workflow', 'event.json'),
    fileCommands: path.join(temp, '_runner_file_commands'),
  };
}

async function emptyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const e of await readdir(dir)) await rm(path.join(dir, e), { recursive: true, force: true });
}

function runnerArch(): string {
  switch (process.arch) {
    case 'arm64':
      return 'ARM64';
    case 'arm':
      return 'ARM';
    case 'ia32':
      return 'X86';
    default:
      return 'X64';
  }
}

/** The GITHUB_* and RUNNER_* variables of the job (the github-context allow-list of §3). */
export function jobVariables(ctx: JobContext, p: JobPaths, trackingId: string): Record<string, string> {
  const { job, settings } = ctx;
  const [owner = ''] = job.repository.split('/');
  const refName = job.ref.replace(/^refs\/(heads|tags)\//, '');
  const server = 'https://github.com';
  return {
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    GITHUB_ACTOR: job.actor,
    GITHUB_ACTOR_ID: '1',
    GITHUB_API_URL: 'https://api.github.com',
    GITHUB_BASE_REF: '',
    GITHUB_EVENT_NAME: job.eventName,
    GITHUB_EVENT_PATH: p.eventFile,
    GITHUB_GRAPHQL_URL: 'https://api.github.com/graphql',
    GITHUB_HEAD_REF: '',
    GITHUB_JOB: job.displayName,
    GITHUB_REF: job.ref,
    GITHUB_REF_NAME: refName,
    GITHUB_REF_PROTECTED: 'false',
    GITHUB_REF_TYPE: job.ref.startsWith('refs/tags/') ? 'tag' : 'branch',
    GITHUB_REPOSITORY: job.repository,
    GITHUB_REPOSITORY_ID: '1',
    GITHUB_REPOSITORY_OWNER: owner,
    GITHUB_REPOSITORY_OWNER_ID: '1',
    GITHUB_RETENTION_DAYS: '90',
    GITHUB_RUN_ATTEMPT: job.runAttempt,
    GITHUB_RUN_ID: job.runId,
    GITHUB_RUN_NUMBER: job.runNumber,
    GITHUB_SERVER_URL: server,
    GITHUB_SHA: job.sha,
    GITHUB_TRIGGERING_ACTOR: job.actor,
    GITHUB_WORKFLOW: job.workflow,
    GITHUB_WORKFLOW_REF: `${job.repository}/.github/workflows/${job.workflow.toLowerCase()}.yml@${job.ref}`,
    GITHUB_WORKFLOW_SHA: job.sha,
    GITHUB_WORKSPACE: p.workspace,
    RUNNER_NAME: settings.agentName,
    RUNNER_OS: 'Linux',
    RUNNER_ARCH: runnerArch(),
    RUNNER_TEMP: p.temp,
    RUNNER_TOOL_CACHE: p.tool,
    RUNNER_WORKSPACE: p.pipeline,
    RUNNER_ENVIRONMENT: 'self-hosted',
    RUNNER_TRACKING_ID: trackingId,
  };
}

/** Writes the workspace mapping and the event file of "Set up job". */
async function setUpJob(job: SimJob, p: JobPaths, stamp: string): Promise<void> {
  await rm(p.actions, { recursive: true, force: true });
  await emptyDir(p.temp);
  await mkdir(p.workspace, { recursive: true });
  await mkdir(path.join(p.temp, '_github_home'), { recursive: true });
  await mkdir(path.join(p.temp, '_runner_hook_responses'), { recursive: true });
  await mkdir(path.dirname(p.mapping), { recursive: true });
  const [owner = '', repoName = ''] = job.repository.split('/');
  const mapping = {
    repositoryName: job.repository,
    pipelineDirectory: repoName,
    workspaceDirectory: path.join(repoName, repoName),
    repositories: { [job.repository]: { repositoryPath: path.join(repoName, repoName), lastRunOn: stamp } },
    lastRunOn: stamp,
  };
  await writeFile(p.mapping, JSON.stringify(mapping, null, 2));
  await mkdir(path.dirname(p.eventFile), { recursive: true });
  const event = {
    ref: job.ref,
    after: job.sha,
    repository: { full_name: job.repository, name: repoName, owner: { login: owner } },
    sender: { login: job.actor },
  };
  await writeFile(p.eventFile, JSON.stringify(event, null, 2));
}

/** Runs one job to its end and returns its result. Never throws for job-level failures. */
export async function runJob(ctx: JobContext): Promise<TaskResult> {
  const { trace, job } = ctx;
  const now = ctx.now ?? Date.now;
  const p = jobPaths(ctx.root, ctx.settings, job.repository, ctx.baseEnv);
  const trackingId = `github_${randomUUID()}`;
  const log = (component: string, line: string): void => trace.info(component, line);
  const stepLog = (line: string): void => log('Step', line);
  let result: TaskResult = 'Succeeded';
  const isShutdown = (): boolean => ctx.cancel.aborted && ctx.cancelReason() === 'shutdown';

  // Steps with always() are cancelled only by a shutdown; main steps by any cancel.
  const shutdownAc = new AbortController();
  const onCancel = (): void => {
    // StepsRunner: "Mark job as Cancelled or Failed depending on HostContext shutdown token's cancellation"
    if (ctx.cancelReason() === 'shutdown') {
      result = 'Failed';
      stepLog(`##[error]${SHUTDOWN_ANNOTATION}`);
      shutdownAc.abort();
    } else {
      result = 'Canceled';
    }
  };
  if (ctx.cancel.aborted) onCancel();
  else ctx.cancel.addEventListener('abort', onCancel, { once: true });
  /** The cancel signal of the step running now: any cancel for main steps, a shutdown for always() steps. */
  let stepCancel: AbortSignal = ctx.cancel;

  log('Worker', `Job ID ${job.jobId}`);
  log('StepsRunner', "Processing step: DisplayName='Set up job'");
  await setUpJob(job, p, new Date(now()).toISOString());

  const declared: Record<string, string> = jobVariables(ctx, p, trackingId);
  const prependPath: string[] = [];
  const hostEnv = (): Record<string, string> => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(ctx.baseEnv)) if (v !== undefined) env[k] = v;
    Object.assign(env, declared);
    if (prependPath.length > 0) env.PATH = [...prependPath, env.PATH ?? ''].join(':');
    return env;
  };

  /** Runs `body` with a fresh set of file-command files, then applies what the step wrote. */
  const withFiles = async (body: (fileVars: Record<string, string>) => Promise<TaskResult>): Promise<TaskResult> => {
    const files = await stepFiles(p.fileCommands);
    const r = await body(files.vars);
    const asked = await readFileCommands(files);
    Object.assign(declared, asked.env);
    prependPath.unshift(...asked.prependPath);
    return r;
  };

  /** Runs a host process as a step; returns its step result. */
  const runAsStep = (cmd: string, args: string[], cancel: AbortSignal, stepEnv: Record<string, string> = {}): Promise<TaskResult> =>
    withFiles(async (fileVars) => {
      const code = await runStepProcess(cmd, args, {
        cwd: p.workspace,
        env: { ...hostEnv(), ...stepEnv, ...fileVars },
        cancel,
        onLine: stepLog,
        timings: ctx.stepCancel,
      });
      if (cancel.aborted) {
        stepLog('##[error]The operation was canceled.');
        return 'Canceled';
      }
      if (code !== 0) {
        stepLog(`##[error]Process completed with exit code ${code ?? 1}.`);
        return 'Failed';
      }
      return 'Succeeded';
    });

  /** The command for a hook script by its extension (HostContext.GetDefaultShellForScript). */
  const scriptCommand = (script: string): { cmd: string; args: string[] } | string => {
    const envPath = hostEnv().PATH;
    const ext = path.extname(script).toLowerCase();
    if (ext === '.sh') return { cmd: which('bash', envPath) ?? which('sh', envPath) ?? '/bin/sh', args: ['-e', script] };
    if (ext === '.js') return { cmd: path.join(ctx.root, 'externals', 'node20', 'bin', 'node'), args: [script] };
    if (ext === '.ps1') {
      const pwsh = which('pwsh', envPath) ?? which('powershell', envPath);
      return pwsh ? { cmd: pwsh, args: ['-command', `. '${script}'`] } : "File not found: 'pwsh'";
    }
    return `${script} is not a valid path to a script. Make sure it ends in '.sh', '.ps1' or '.js'.`;
  };

  const runHook = async (kind: 'started' | 'completed', script: string): Promise<TaskResult> => {
    stepLog(`A job ${kind} hook has been configured by the self-hosted runner administrator`);
    stepLog(`Run '${script}'`);
    if (!existsSync(script)) {
      stepLog(`##[error]File doesn't exist: '${script}'`);
      return 'Failed';
    }
    const c = scriptCommand(script);
    if (typeof c === 'string') {
      stepLog(`##[error]${c}`);
      return 'Failed';
    }
    return runAsStep(c.cmd, c.args, stepCancel);
  };

  const containers = new JobContainers({
    root: ctx.root,
    paths: p,
    job,
    hooksScript: ctx.baseEnv.ACTIONS_RUNNER_CONTAINER_HOOKS ?? '',
    proc1Cgroup: ctx.proc1Cgroup,
    log: stepLog,
    trace: (l) => log('ContainerHookManager', l),
    runHook: async (script, stdin) => {
      const c = scriptCommand(script);
      if (typeof c === 'string') throw new Error(c);
      const code = await runStepProcess(c.cmd, c.args, {
        cwd: p.workspace,
        env: hostEnv(),
        cancel: stepCancel,
        onLine: stepLog,
        timings: ctx.stepCancel,
        stdin,
      });
      return code;
    },
  });

  /** Runs a step when its condition holds; a Failed step fails the job (StepsRunner). */
  const step = async (name: string, always: boolean, body: () => Promise<TaskResult>): Promise<void> => {
    log('StepsRunner', `Processing step: DisplayName='${name}'`);
    if (isShutdown()) {
      log('StepsRunner', `Skip evaluate condition on runner shutdown: '${name}' is skipped.`);
      return;
    }
    if (!always && (result !== 'Succeeded' || ctx.cancel.aborted)) {
      log('StepsRunner', `Skipping step '${name}' due to the job result ${result}.`);
      return;
    }
    const started = now();
    stepCancel = always ? shutdownAc.signal : ctx.cancel;
    const r = await body();
    log('StepsRunner', `Step result: ${r} (${((now() - started) / 1000).toFixed(1)} s)`);
    if (r === 'Failed') result = mergeResults(result, r);
  };

  const runStep = async (s: JobStep): Promise<TaskResult> => {
    const env = { ...declared, ...(s.env ?? {}) };
    if (s.uses !== undefined) {
      if (!s.uses.startsWith('docker://')) {
        stepLog(`##[error]The runner simulator does not run actions: '${s.uses}'.`);
        return 'Failed';
      }
      return withFiles((fileVars) => containers.runContainerStep(s, { ...env, ...fileVars }));
    }
    stepLog(`##[group]Run ${s.run.split('\n')[0] ?? ''}`);
    stepLog('##[endgroup]');
    const script = path.join(p.temp, `${randomUUID()}.sh`);
    await writeFile(script, s.run.endsWith('\n') ? s.run : `${s.run}\n`);
    if (containers.scriptsInContainer) {
      return withFiles((fileVars) => containers.runScript(script, { ...env, ...fileVars }, [...prependPath]));
    }
    const shell = which('bash', hostEnv().PATH) ?? '/bin/sh';
    return runAsStep(shell, ['-e', script], ctx.cancel, s.env ?? {});
  };

  const startedHook = ctx.baseEnv.ACTIONS_RUNNER_HOOK_JOB_STARTED ?? '';
  const completedHook = ctx.baseEnv.ACTIONS_RUNNER_HOOK_JOB_COMPLETED ?? '';
  if (startedHook !== '') await step('Set up runner', true, () => runHook('started', startedHook));
  let containersStarted = false;
  if (containers.declared) {
    await step('Initialize containers', false, () => {
      containersStarted = true;
      return containers.initialize();
    });
  }
  for (const s of job.steps) await step(s.name, false, () => runStep(s));
  // post steps run last-registered first: "Stop containers" before "Complete runner"
  if (containersStarted) await step('Stop containers', true, () => containers.stop());
  if (completedHook !== '') await step('Complete runner', true, () => runHook('completed', completedHook));

  log('StepsRunner', "Processing step: DisplayName='Complete job'");
  await killOrphans(trackingId, ctx.uid, [process.pid], (l) => log('ProcessInvokerWrapper', l));
  await emptyDir(p.temp).catch(() => undefined);
  log('Worker', `Job result after all job steps finish: ${result}`);
  return result;
}
