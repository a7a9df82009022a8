/**
 * runner-warden's container hooks (ACTIONS_RUNNER_CONTAINER_HOOKS): the runner executes this file
 * with node for each of `prepare_job`, `run_script_step`, `run_container_step` and `cleanup_job`,
 * the input JSON on stdin. Containers run on the job's own engine (DOCKER_HOST, set by the
 * agent's engine guard), so a runner that itself runs in a container can take `container:` and
 * `services:` jobs without a privileged sidecar.
 *
 * Like src/cli, this is an entry point: the only file here that reads the environment, stdin and
 * sets the exit code.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DockerAllow } from '../engine/create-policy.js';
import { cleanupJob, prepareJob, runContainerStep, runScriptStep, type HookEnv } from './commands.js';
import { CreateRefusedError, type JobScope } from './create-args.js';
import { dockerCli } from './docker-cli.js';
import { parseHookInput, type ContainerInfo, type PrepareJobArgs, type ScriptStepArgs } from './protocol.js';

const DENY_ALL: DockerAllow = { privileged: false, hostNamespaces: false, hostPaths: [], devices: [], capabilities: [] };

/** The policy the agent wrote for this job; only a root-owned, root-only-writable file counts. */
async function readAllow(file: string | undefined): Promise<{ mode: string; allow: DockerAllow }> {
  if (!file) return { mode: 'isolated', allow: DENY_ALL };
  const st = await fsp.stat(file).catch(() => undefined);
  if (!st || st.uid !== 0 || (st.mode & 0o022) !== 0) return { mode: 'isolated', allow: DENY_ALL };
  const doc = JSON.parse(await fsp.readFile(file, 'utf8')) as { mode?: string; allow?: DockerAllow };
  return { mode: doc.mode ?? 'isolated', allow: { ...DENY_ALL, ...(doc.allow ?? {}) } };
}

/** Runs one hook call; resolves with the process exit code. */
export async function main(env: NodeJS.ProcessEnv, stdin: string, print: (line: string) => void): Promise<number> {
  try {
    const input = parseHookInput(stdin);
    const { mode, allow } = await readAllow(env.CONTAINER_HOOKS_DOCKER_POLICY);
    if (mode === 'none') throw new CreateRefusedError('this runner gives jobs no container engine (docker.mode: none)');
    const workspace = env.RUNNER_WORKSPACE
      ? path.dirname(env.RUNNER_WORKSPACE)
      : env.GITHUB_WORKSPACE
        ? path.dirname(path.dirname(env.GITHUB_WORKSPACE))
        : undefined;
    const roots = [workspace, env.RUNNER_TEMP, env.RUNNER_TOOL_CACHE].filter((r): r is string => !!r);
    const dockerHost = env.DOCKER_HOST ?? '';
    const scope: JobScope = {
      runner: env.RUNNER_NAME || 'runner',
      allow,
      workspaceRoots: roots,
      ...(dockerHost.startsWith('unix://') ? { engineSocket: dockerHost.slice('unix://'.length) } : {}),
    };
    const cliEnv: Record<string, string> = { PATH: env.PATH ?? '/usr/local/bin:/usr/bin:/bin' };
    for (const k of ['DOCKER_HOST', 'DOCKER_CONFIG', 'HOME']) if (env[k]) cliEnv[k] = env[k];
    const hookEnv: HookEnv = {
      docker: dockerCli(cliEnv),
      scope,
      tempDir: env.RUNNER_TEMP ?? '',
      print,
      pull: mode === 'host' ? 'always' : 'missing',
    };
    switch (input.command) {
      case 'prepare_job': {
        const response = await prepareJob(hookEnv, (input.args ?? {}) as PrepareJobArgs);
        if (response && input.responseFile) await fsp.appendFile(input.responseFile, `${JSON.stringify(response)}\n`);
        return 0;
      }
      case 'run_script_step':
        return await runScriptStep(hookEnv, input.args as ScriptStepArgs, input.state);
      case 'run_container_step':
        return await runContainerStep(hookEnv, input.args as ContainerInfo, input.state);
      case 'cleanup_job':
        await cleanupJob(hookEnv);
        return 0;
    }
  } catch (err) {
    print(`::error::${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await main(process.env, await readStdin(), (line) => process.stdout.write(`${line}\n`));
}
