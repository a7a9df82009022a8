/**
 * The container hooks protocol as the runner speaks it (actions/runner's ContainerHookManager;
 * types as in actions/runner-container-hooks' hooklib): one JSON document on stdin, a response
 * file the hook appends one JSON line to, a `state` object threaded through later calls. The
 * runner writes every field, null when unset, so every field here may be null.
 */

/** The four commands. */
export type HookCommand = 'prepare_job' | 'run_script_step' | 'run_container_step' | 'cleanup_job';

export const HOOK_COMMANDS: readonly HookCommand[] = ['prepare_job', 'run_script_step', 'run_container_step', 'cleanup_job'];

export interface Mount {
  sourceVolumePath?: string | null;
  targetVolumePath?: string | null;
  readOnly?: boolean | null;
}

export interface Registry {
  username?: string | null;
  password?: string | null;
  serverUrl?: string | null;
}

/** A job, service or step container. */
export interface ContainerInfo {
  image?: string | null;
  dockerfile?: string | null;
  entryPoint?: string | null;
  entryPointArgs?: string[] | null;
  workingDirectory?: string | null;
  createOptions?: string | null;
  environmentVariables?: Record<string, string> | null;
  userMountVolumes?: Mount[] | null;
  systemMountVolumes?: Mount[] | null;
  registry?: Registry | null;
  portMappings?: string[] | null;
  /** Sent by some runners for services; used as the network alias when present. */
  contextName?: string | null;
  prependPath?: string[] | null;
}

export interface PrepareJobArgs {
  container?: ContainerInfo | null;
  services?: ContainerInfo[] | null;
}

export interface ScriptStepArgs {
  entryPoint: string;
  entryPointArgs?: string[] | null;
  environmentVariables?: Record<string, string> | null;
  prependPath?: string[] | null;
  workingDirectory: string;
}

/** The state this implementation returns from prepare_job and reads back later. */
export interface HookState {
  network?: string;
  container?: string;
  services?: string[];
}

/** The document on stdin. */
export interface HookInput {
  command: HookCommand;
  responseFile?: string | null;
  args?: PrepareJobArgs | ScriptStepArgs | ContainerInfo | null;
  state?: HookState | null;
}

/** One container in the response's context. */
export interface ContextContainer {
  id: string;
  network: string;
  image: string;
  ports: Record<string, string>;
  contextName?: string;
}

/** prepare_job's response. */
export interface PrepareJobResponse {
  state: HookState;
  context: { container?: ContextContainer; services: ContextContainer[] };
  isAlpine: boolean;
}

/** A bad input document; the message names the field. */
export class HookInputError extends Error {
  override readonly name = 'HookInputError';
}

/** Parses stdin's text (the last non-empty line, as the reference implementation reads it). */
export function parseHookInput(text: string): HookInput {
  const line =
    text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .pop() ?? '';
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    throw new HookInputError(`stdin: expected one JSON document, got ${JSON.stringify(line.slice(0, 80))}`, { cause: err });
  }
  if (raw === null || typeof raw !== 'object') throw new HookInputError('stdin: expected a JSON object');
  const input = raw as HookInput;
  if (!HOOK_COMMANDS.includes(input.command)) {
    throw new HookInputError(`stdin: command: expected one of ${HOOK_COMMANDS.join(', ')}, got ${JSON.stringify(input.command)}`);
  }
  return input;
}

/** Converts `docker port` lines ("80/tcp -> 0.0.0.0:32768") to the context's { "80": "32768" }. */
export function contextPorts(lines: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of lines) {
    const m = /^(\d+)(\/\w+)? -> (.*):(\d+)$/.exec(l.trim());
    if (m) out[m[1] as string] = m[4] as string;
  }
  return out;
}
