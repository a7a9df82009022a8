/**
 * What the simulated Runner.Worker does with one job (runner-contract.md §3, §4.3):
 *
 *   Set up job      delete _work/_actions, empty _work/_temp, create the workspace,
 *                   _PipelineMapping/<owner>/<repo>/PipelineFolder.json, _temp/_github_workflow/event.json
 *   Set up runner   ACTIONS_RUNNER_HOOK_JOB_STARTED (if set; a failure fails the job)
 *   <steps>         each `bash -e <script>` in GITHUB_WORKSPACE; after a failure or a cancel the rest is skipped
 *   Complete runner ACTIONS_RUNNER_HOOK_JOB_COMPLETED (if set; always runs; a failure makes the job Failed)
 *   Complete job    kill orphans by RUNNER_TRACKING_ID, empty _work/_temp
 *
 * Every process gets the worker env plus the GITHUB_* allow-list, RUNNER_* of the runner context,
 * CI=true and RUNNER_TRACKING_ID. Step and hook processes run in their own process group so a cancel
 * can signal the whole tree: SIGINT, then SIGKILL after STEP_CANCEL_GRACE_MS.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { signalGroup, waitForChild } from '../../lib/process.js';
import type { SimJob } from './broker.js';
import type { Trace } from './diag.js';
import type { RunnerSettings } from './files.js';
import { killOrphans } from './orphans.js';
import { mergeResults, type TaskResult } from './results.js';
import type { CancelReason } from './worker-channel.js';

/**
 * How long a cancelled step's process group has between SIGINT and SIGKILL. The real
 * ProcessInvoker waits 7.5 s after SIGINT (then SIGTERM 2.5 s); one grace keeps it simple.
 */
export const STEP_CANCEL_GRACE_MS = 7_500;

/** The annotation the worker logs when the runner is shut down during a job (contract §2.4). */
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
  now?: () => number;
}

/** The job's directories, derived from the work folder and the repository (contract §4.3). */
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

/** Finds an executable on PATH; undefined when absent. */
export function which(cmd: string, envPath: string | undefined): string | undefined {
  for (const dir of (envPath ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const full = path.join(dir, cmd);
    try {
      const st = statSync(full);
      if (st.isFile() && (st.mode & 0o111) !== 0) return full;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Runs a step or hook process in its own group; resolves with its exit code (null when signalled). */
function runProcess(
  cmd: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; cancel: AbortSignal; onLine: (l: string) => void },
): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const pending: Record<'out' | 'err', string> = { out: '', err: '' };
    const feed = (which: 'out' | 'err', d: Buffer): void => {
      pending[which] += d.toString('utf8');
      const lines = pending[which].split('\n');
      pending[which] = lines.pop() ?? '';
      for (const l of lines) opts.onLine(l.replace(/\r$/, ''));
    };
    child.stdout.on('data', (d: Buffer) => feed('out', d));
    child.stderr.on('data', (d: Buffer) => feed('err', d));
    let killTimer: NodeJS.Timeout | undefined;
    const onCancel = (): void => {
      if (child.pid === undefined) return;
      signalGroup(child.pid, 'SIGINT');
      killTimer = setTimeout(() => {
        if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
      }, STEP_CANCEL_GRACE_MS);
    };
    if (opts.cancel.aborted) queueMicrotask(onCancel);
    else opts.cancel.addEventListener('abort', onCancel, { once: true });
    let failed = false;
    child.once('error', (err) => {
      failed = true;
      opts.onLine(`##[error]${err.message}`);
      opts.cancel.removeEventListener('abort', onCancel);
      resolve(127);
    });
    void waitForChild(child).then(({ code }) => {
      if (killTimer) clearTimeout(killTimer);
      opts.cancel.removeEventListener('abort', onCancel);
      for (const w of ['out', 'err'] as const) if (pending[w]) opts.onLine(pending[w]);
      if (!failed) resolve(code);
    });
  });
}

/** Applies GITHUB_ENV / GITHUB_PATH files (KEY=VALUE and KEY<<DELIM heredocs). */
async function applyFileCommands(envFile: string, pathFile: string, jobEnv: Record<string, string>): Promise<void> {
  const envText = await readFile(envFile, 'utf8').catch(() => '');
  const lines = envText.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const heredoc = /^([^=<]+)<<(.+)$/.exec(line);
    if (heredoc?.[1] && heredoc[2]) {
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== heredoc[2]; i++) body.push(lines[i] ?? '');
      jobEnv[heredoc[1]] = body.join('\n');
      continue;
    }
    const eq = line.indexOf('=');
    if (eq > 0) jobEnv[line.slice(0, eq)] = line.slice(eq + 1);
  }
  const added = (await readFile(pathFile, 'utf8').catch(() => ''))
    .split(/\r?\n/)
    .filter((l) => l !== '')
    .reverse();
  if (added.length > 0) jobEnv.PATH = [...added, jobEnv.PATH ?? ''].join(':');
}

/** The per-process file-command files and the env vars that point at them. */
async function fileCommandEnv(p: JobPaths): Promise<{ vars: Record<string, string>; envFile: string; pathFile: string }> {
  await mkdir(p.fileCommands, { recursive: true });
  const id = randomUUID();
  const f = (kind: string): string => path.join(p.fileCommands, `${kind}_${id}`);
  const vars = {
    GITHUB_ENV: f('set_env'),
    GITHUB_PATH: f('add_path'),
    GITHUB_OUTPUT: f('set_output'),
    GITHUB_STATE: f('save_state'),
    GITHUB_STEP_SUMMARY: f('step_summary'),
  };
  for (const file of Object.values(vars)) await writeFile(file, '');
  return { vars, envFile: vars.GITHUB_ENV, pathFile: vars.GITHUB_PATH };
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
  let shutdownAnnotated = false;

  const noteCancel = (): void => {
    result = mergeResults(result, 'Canceled');
    if (ctx.cancelReason() === 'shutdown' && !shutdownAnnotated) {
      shutdownAnnotated = true;
      stepLog(`##[error]${SHUTDOWN_ANNOTATION}`);
    }
  };
  ctx.cancel.addEventListener('abort', noteCancel, { once: true });
  if (ctx.cancel.aborted) noteCancel();

  log('Worker', `Job ID ${job.jobId}`);
  log('StepsRunner', "Processing step: DisplayName='Set up job'");
  await rm(p.actions, { recursive: true, force: true });
  await emptyDir(p.temp);
  await mkdir(p.workspace, { recursive: true });
  await mkdir(path.join(p.temp, '_github_home'), { recursive: true });
  await mkdir(path.join(p.temp, '_runner_hook_responses'), { recursive: true });
  await mkdir(path.dirname(p.mapping), { recursive: true });
  const stamp = new Date(now()).toISOString();
  const [, repoName = ''] = job.repository.split('/');
  await writeFile(
    p.mapping,
    JSON.stringify(
      {
        repositoryName: job.repository,
        pipelineDirectory: repoName,
        workspaceDirectory: path.join(repoName, repoName),
        repositories: { [job.repository]: { repositoryPath: path.join(repoName, repoName), lastRunOn: stamp } },
        lastRunOn: stamp,
      },
      null,
      2,
    ),
  );
  await mkdir(path.dirname(p.eventFile), { recursive: true });
  const [owner = ''] = job.repository.split('/');
  await writeFile(
    p.eventFile,
    JSON.stringify(
      {
        ref: job.ref,
        after: job.sha,
        repository: { full_name: job.repository, name: repoName, owner: { login: owner } },
        sender: { login: job.actor },
      },
      null,
      2,
    ),
  );

  const jobEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(ctx.baseEnv)) if (v !== undefined) jobEnv[k] = v;
  Object.assign(jobEnv, jobVariables(ctx, p, trackingId));

  /** Runs a process as a step; returns its step result. */
  const runAsStep = async (cmd: string, args: string[], cancel: AbortSignal): Promise<TaskResult> => {
    const files = await fileCommandEnv(p);
    const code = await runProcess(cmd, args, {
      cwd: p.workspace,
      env: { ...jobEnv, ...files.vars },
      cancel,
      onLine: stepLog,
    });
    await applyFileCommands(files.envFile, files.pathFile, jobEnv);
    if (cancel.aborted) {
      stepLog('##[error]The operation was canceled.');
      return 'Canceled';
    }
    if (code !== 0) {
      stepLog(`##[error]Process completed with exit code ${code ?? 1}.`);
      return 'Failed';
    }
    return 'Succeeded';
  };

  /** The hooks' shell choice by extension (HostContext.GetDefaultShellForScript). */
  const runHook = async (kind: 'started' | 'completed', script: string, cancel: AbortSignal): Promise<TaskResult> => {
    stepLog(`A job ${kind} hook has been configured by the self-hosted runner administrator`);
    stepLog(`Run '${script}'`);
    if (!existsSync(script)) {
      stepLog(`##[error]File doesn't exist: '${script}'`);
      return 'Failed';
    }
    const ext = path.extname(script).toLowerCase();
    if (ext === '.sh') {
      const shell = which('bash', jobEnv.PATH) ?? which('sh', jobEnv.PATH) ?? '/bin/sh';
      return runAsStep(shell, ['-e', script], cancel);
    }
    if (ext === '.js') {
      return runAsStep(path.join(ctx.root, 'externals', 'node20', 'bin', 'node'), [script], cancel);
    }
    if (ext === '.ps1') {
      const pwsh = which('pwsh', jobEnv.PATH) ?? which('powershell', jobEnv.PATH);
      if (!pwsh) {
        stepLog("##[error]File not found: 'pwsh'");
        return 'Failed';
      }
      return runAsStep(pwsh, ['-command', `. '${script}'`], cancel);
    }
    stepLog(`##[error]${script} is not a valid path to a script. Make sure it ends in '.sh', '.ps1' or '.js'.`);
    return 'Failed';
  };

  const step = async (name: string, body: () => Promise<TaskResult>): Promise<void> => {
    log('StepsRunner', `Processing step: DisplayName='${name}'`);
    const started = now();
    const r = await body();
    log('StepsRunner', `Step result: ${r} (${((now() - started) / 1000).toFixed(1)} s)`);
    result = mergeResults(result, r);
  };

  const startedHook = ctx.baseEnv.ACTIONS_RUNNER_HOOK_JOB_STARTED ?? '';
  const completedHook = ctx.baseEnv.ACTIONS_RUNNER_HOOK_JOB_COMPLETED ?? '';

  if (startedHook !== '' && !ctx.cancel.aborted) {
    await step('Set up runner', () => runHook('started', startedHook, ctx.cancel));
  }
  for (const s of job.steps) {
    if (result !== 'Succeeded' || ctx.cancel.aborted) {
      log('StepsRunner', `Skipping step '${s.name}' due to the job result ${result}.`);
      continue;
    }
    await step(s.name, async () => {
      stepLog(`##[group]Run ${s.run.split('\n')[0] ?? ''}`);
      stepLog('##[endgroup]');
      const script = path.join(p.temp, `${randomUUID()}.sh`);
      await writeFile(script, s.run.endsWith('\n') ? s.run : `${s.run}\n`);
      const shell = which('bash', jobEnv.PATH) ?? '/bin/sh';
      return runAsStep(shell, ['-e', script], ctx.cancel);
    });
  }
  if (completedHook !== '') {
    // always(): runs after failures and cancels, on a signal of its own
    await step('Complete runner', () => runHook('completed', completedHook, new AbortController().signal));
  }

  log('StepsRunner', "Processing step: DisplayName='Complete job'");
  await killOrphans(trackingId, ctx.uid, [process.pid], (l) => log('ProcessInvokerWrapper', l));
  await emptyDir(p.temp).catch(() => undefined);
  log('Worker', `Job result after all job steps finish: ${result}`);
  return result;
}
