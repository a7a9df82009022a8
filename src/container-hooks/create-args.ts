/**
 * `docker create`/`docker run` arguments for a job, service or step container: labelled, on the
 * job's network, with the runner's mounts (the host engine's socket replaced by the job's own
 * engine), the environment by name only, and the create options checked against the policy.
 */
import { askFromCliArgs, checkCreate, describeRefusals, type DockerAllow } from '../engine/create-policy.js';
import type { ContainerInfo, Mount } from './protocol.js';

/** Label on everything the hooks create; its value is the runner's name. */
export const JOB_LABEL = 'runner-warden.job';

/** What every create needs to know about the job. */
export interface JobScope {
  /** The runner's name (RUNNER_NAME): the label value. */
  runner: string;
  allow: DockerAllow;
  /** Host directories every container may mount (the job's _work, temp, tools, externals). */
  workspaceRoots: string[];
  /** The job engine's unix socket path, mounted where the runner mounts the host's socket. */
  engineSocket?: string;
}

/** The create options a job's `options:` asked for were refused by the policy. */
export class CreateRefusedError extends Error {
  override readonly name = 'CreateRefusedError';
}

/** Splits `options:` the way the runner does (at spaces), dropping empties. */
export function splitOptions(text: string | null | undefined): string[] {
  return (text ?? '').split(' ').filter((a) => a !== '');
}

/** The labels of the job, as arguments. */
export function labelArgs(scope: JobScope): string[] {
  return [`--label=${JOB_LABEL}=${scope.runner}`, `--label=${Buffer.from(scope.runner).toString('hex')}`];
}

/** One mount as a -v argument; the host engine's socket becomes the job engine's. */
function volumeArg(m: Mount, scope: JobScope): string[] {
  const target = m.targetVolumePath ?? '';
  if (target === '') return [];
  let source = m.sourceVolumePath ?? '';
  if (/^\/(var\/)?run\/docker\.sock$/.test(source)) {
    if (!scope.engineSocket) return [];
    source = scope.engineSocket;
  }
  const ro = m.readOnly ? ':ro' : '';
  return source ? [`-v=${source}:${target}${ro}`] : [`-v=${target}${ro}`];
}

/**
 * Checks the user-controlled parts (options, user volumes) against the policy; throws
 * CreateRefusedError naming each refused ask and the key that would allow it.
 */
export function enforcePolicy(info: ContainerInfo, scope: JobScope): void {
  const userArgs = [...splitOptions(info.createOptions), ...(info.userMountVolumes ?? []).flatMap((m) => volumeArg(m, scope))];
  const refusals = checkCreate(askFromCliArgs(userArgs), scope.allow, scope.workspaceRoots);
  if (refusals.length > 0) throw new CreateRefusedError(describeRefusals(refusals));
}

/**
 * Arguments after `docker create` / `docker run`, up to and including the image and its args.
 * `env` gets the values of the variables named with `-e NAME`.
 */
export function containerArgs(
  info: ContainerInfo,
  image: string,
  name: string,
  network: string | undefined,
  scope: JobScope,
  defaultEntry?: { entryPoint: string; args: string[] },
): { args: string[]; env: Record<string, string> } {
  enforcePolicy(info, scope);
  const args = [...labelArgs(scope), '--name', name];
  if (network) args.push(`--network=${network}`);
  if (network && info.contextName) args.push(`--network-alias=${info.contextName}`);
  for (const p of info.portMappings ?? []) args.push('-p', p);
  args.push(...splitOptions(info.createOptions));
  const env: Record<string, string> = { ...(info.environmentVariables ?? {}) };
  for (const k of Object.keys(env)) args.push('-e', k);
  args.push('-e', 'GITHUB_ACTIONS=true');
  if (!('CI' in env)) args.push('-e', 'CI=true');
  for (const m of [...(info.userMountVolumes ?? []), ...(info.systemMountVolumes ?? [])]) args.push(...volumeArg(m, scope));
  if (info.workingDirectory) args.push(`--workdir=${info.workingDirectory}`);
  const entryPoint = info.entryPoint || defaultEntry?.entryPoint;
  const entryArgs = info.entryPoint ? (info.entryPointArgs ?? []) : (defaultEntry?.args ?? info.entryPointArgs ?? []);
  if (entryPoint) args.push('--entrypoint', entryPoint);
  args.push(image, ...entryArgs);
  return { args, env };
}

/** A container name the runner would pick: unique, from the image's name. */
export function containerName(image: string, unique: string): string {
  const base = image.replace(/[^a-zA-Z0-9_.-]/g, '_').slice(0, 40);
  return `${unique}_${base}`;
}
