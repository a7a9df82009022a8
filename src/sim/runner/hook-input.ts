/**
 * The input documents of the container hooks protocol, built as the real worker builds them
 * (actions/runner `src/Runner.Worker/Container/ContainerHooks/HookInput.cs`, `ContainerInfo.cs`,
 * `ContainerOperationProvider.cs` MountWellKnownDirectories, `Handlers/ContainerActionHandler.cs`).
 *
 * The runner serializes with Newtonsoft and camelCase names, nulls included: every field of
 * `HookContainer` is present, `null` when unset. The runner's HookContainer has no `contextName`
 * (runner-container-hooks' TypeScript types declare one; the runner never sends it): services are
 * matched to the response by index.
 */
import path from 'node:path';
import type { JobContainer } from '../protocol.js';
import type { JobPaths } from './job.js';

/** The four commands (HookCommand's EnumMember values). */
export type HookCommand = 'prepare_job' | 'run_script_step' | 'run_container_step' | 'cleanup_job';

/** A mount (ContainerInfo.MountVolume). */
export interface MountVolume {
  userProvidedValue: string | null;
  sourceVolumePath: string | null;
  targetVolumePath: string | null;
  readOnly: boolean;
}

/** A container description (HookInput.HookContainer), field order as the runner writes it. */
export interface HookContainer {
  image: string | null;
  dockerfile: string | null;
  entryPointArgs: string[];
  entryPoint: string | null;
  workingDirectory: string | null;
  createOptions: string | null;
  registry: { username: string; password: string; serverUrl: string } | null;
  environmentVariables: Record<string, string>;
  portMappings: string[];
  systemMountVolumes: MountVolume[];
  userMountVolumes: MountVolume[];
}

/** `prepare_job` args. */
export interface PrepareJobArgs {
  container: HookContainer | null;
  services: HookContainer[];
}

/** `run_script_step` args. */
export interface ScriptStepArgs {
  entryPointArgs: string[];
  entryPoint: string;
  environmentVariables: Record<string, string>;
  prependPath: string[];
  workingDirectory: string;
}

/** What the hook reads on stdin (one line of JSON). */
export interface HookInput {
  command: HookCommand;
  responseFile: string;
  args: PrepareJobArgs | ScriptStepArgs | HookContainer | Record<string, never>;
  state: Record<string, unknown> | null;
}

/** The container path of the job's work folder, externals and tools (ContainerInfo's path mappings). */
export const CONTAINER_WORK = '/__w';
const CONTAINER_EXTERNALS = '/__e';
const CONTAINER_TOOLS = '/__t';

function mount(source: string | null, target: string, readOnly = false): MountVolume {
  return { userProvidedValue: null, sourceVolumePath: source, targetVolumePath: target, readOnly };
}

/** `volumes:` entries as MountVolume.ParseVolumeString reads them (`src:dst:ro`, `dst:ro`, `src:dst`, `dst`). */
export function parseUserVolume(value: string): MountVolume {
  const parts = value.split(':');
  if (parts.length === 3) {
    return {
      userProvidedValue: value,
      sourceVolumePath: parts[0] ?? null,
      targetVolumePath: parts[1] ?? null,
      readOnly: parts[2]?.toLowerCase() === 'ro',
    };
  }
  if (parts.length === 2) {
    if (parts[1]?.toLowerCase() === 'ro')
      return { userProvidedValue: value, sourceVolumePath: null, targetVolumePath: parts[0] ?? null, readOnly: true };
    return { userProvidedValue: value, sourceVolumePath: parts[0] ?? null, targetVolumePath: parts[1] ?? null, readOnly: false };
  }
  return { userProvidedValue: value, sourceVolumePath: null, targetVolumePath: value, readOnly: false };
}

/** Splits entry point args the way the runner does: at single spaces, trimmed, empties dropped. */
export function splitArgs(text: string | undefined): string[] {
  return (text ?? '')
    .split(' ')
    .map((a) => a.trim())
    .filter((a) => a !== '');
}

/** Host paths of the job and the container paths they are mounted at (longest prefix first). */
export class ContainerPathMap {
  private readonly pairs: Array<[string, string]>;

  constructor(p: JobPaths, root: string) {
    this.pairs = [
      [path.join(p.temp, '_github_home'), '/github/home'],
      [path.join(p.temp, '_github_workflow'), '/github/workflow'],
      [p.work, CONTAINER_WORK],
      [p.tool, CONTAINER_TOOLS],
      [path.join(root, 'externals'), CONTAINER_EXTERNALS],
    ].sort((a, b) => (b[0] ?? '').length - (a[0] ?? '').length) as Array<[string, string]>;
  }

  /** The container path of a host path; unchanged when no mount covers it. */
  translate(hostPath: string): string {
    for (const [host, inside] of this.pairs) {
      if (hostPath === host) return inside;
      if (hostPath.startsWith(`${host}/`)) return inside + hostPath.slice(host.length);
    }
    return hostPath;
  }

  /** Every value that is a host path under a mount, translated (StepHost.TranslateToContainerPath). */
  translateEnv(env: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(env)) out[k] = this.translate(v);
    return out;
  }
}

function registryFor(c: JobContainer): HookContainer['registry'] {
  if (!c.credentials?.username) return null;
  const first = c.image.split('/')[0] ?? '';
  const host = c.image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : '';
  return { username: c.credentials.username, password: c.credentials.password, serverUrl: host };
}

function baseContainer(c: JobContainer): HookContainer {
  return {
    image: c.image,
    dockerfile: null,
    entryPointArgs: [],
    entryPoint: null,
    workingDirectory: null,
    createOptions: c.options ?? null,
    registry: registryFor(c),
    environmentVariables: { ...(c.env ?? {}) },
    portMappings: [...(c.ports ?? [])],
    systemMountVolumes: [],
    userMountVolumes: (c.volumes ?? []).map(parseUserVolume),
  };
}

/** The job container with the well-known mounts, HOME and the workspace as working directory. */
export function jobHookContainer(c: JobContainer, p: JobPaths, root: string): HookContainer {
  const map = new ContainerPathMap(p, root);
  const home = path.join(p.temp, '_github_home');
  const workflow = path.join(p.temp, '_github_workflow');
  const hc = baseContainer(c);
  hc.environmentVariables.HOME = '/github/home';
  hc.workingDirectory = map.translate(p.workspace);
  hc.systemMountVolumes = [
    mount(p.work, map.translate(p.work)),
    mount(path.join(root, 'externals'), map.translate(path.join(root, 'externals')), true),
    mount(p.temp, map.translate(p.temp)),
    mount(p.actions, map.translate(p.actions)),
    mount(p.tool, map.translate(p.tool)),
    mount(home, '/github/home'),
    mount(workflow, '/github/workflow'),
  ];
  return hc;
}

/** A service container: image, env, options, ports and volumes only. */
export function serviceHookContainer(c: JobContainer): HookContainer {
  return baseContainer(c);
}

/** A `docker://` step's container (ContainerActionHandler): its mounts and /github/workspace. */
export function containerStepArgs(
  image: string,
  entryPoint: string | undefined,
  args: string | undefined,
  env: Record<string, string>,
  p: JobPaths,
): HookContainer {
  return {
    image,
    dockerfile: null,
    entryPointArgs: splitArgs(args),
    entryPoint: entryPoint ?? null,
    workingDirectory: '/github/workspace',
    createOptions: null,
    registry: null,
    environmentVariables: env,
    portMappings: [],
    systemMountVolumes: [
      mount('/var/run/docker.sock', '/var/run/docker.sock'),
      mount(p.temp, '/github/runner_temp'),
      mount(path.join(p.temp, '_github_home'), '/github/home'),
      mount(path.join(p.temp, '_github_workflow'), '/github/workflow'),
      mount(p.fileCommands, '/github/file_commands'),
      mount(p.workspace, '/github/workspace'),
    ],
    userMountVolumes: [],
  };
}
