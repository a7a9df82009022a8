/**
 * Calling the container hooks script, as the real worker does (actions/runner
 * `src/Runner.Worker/Container/ContainerHooks/ContainerHookManager.cs`, `HookResponse.cs`):
 *
 * 1. check the script: it must exist and end in `.js`, `.sh` or `.ps1`;
 * 2. create an empty response file `_work/_temp/_runner_hook_responses/<guid>.json`;
 * 3. run the script as a step, on the host, the input JSON on its stdin, its output in the job log;
 * 4. a non-zero exit fails: "The hook script at '<path>' running command '<cmd>' did not execute
 *    successfully";
 * 5. read the response file (missing or empty: no response, an error only for a `prepare_job`
 *    with a job container), delete it, validate it (`isAlpine` is required when a job container
 *    was given), and keep its `state` (when present) for every later call.
 * Every failure is wrapped, as the runner wraps it, in "Executing the custom container
 * implementation failed. Please contact your self hosted runner administrator."
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { HookCommand, HookInput, PrepareJobArgs } from './hook-input.js';

/** The env var that names the hooks script (Constants.Hooks.ContainerHooksPath). */
export const CONTAINER_HOOKS_ENV = 'ACTIONS_RUNNER_CONTAINER_HOOKS';

/** The error the job log shows for any hook failure (ContainerHookManager.ExecuteHookScript). */
export const HOOK_FAILED_MESSAGE =
  'Executing the custom container implementation failed. Please contact your self hosted runner administrator.';

/** A hook call failed; `message` is the runner's outer text, `detail` the inner cause. */
export class ContainerHookError extends Error {
  override name = 'ContainerHookError';
  constructor(readonly detail: string) {
    super(HOOK_FAILED_MESSAGE);
  }
}

/** A response's `context` part, as the runner reads it. */
export interface HookResponseContext {
  container?: { id?: string; network?: string; ports?: Record<string, string> };
  services: Array<{ id?: string; network?: string; ports?: Record<string, string> }>;
}

/** A parsed response; null fields were absent. */
export interface HookResponse {
  state: Record<string, unknown> | null;
  context: HookResponseContext | null;
  isAlpine: boolean | null;
}

/** Runs the hook script with `stdin` as a step; resolves with its exit code. */
export type HookRunner = (script: string, stdin: string) => Promise<number | null>;

const EXTENSIONS = ['.js', '.sh', '.ps1'];

/** Newtonsoft matches property names case-insensitively; so does this. */
function prop(obj: unknown, name: string): unknown {
  if (obj === null || typeof obj !== 'object') return undefined;
  for (const [k, v] of Object.entries(obj)) if (k.toLowerCase() === name.toLowerCase()) return v;
  return undefined;
}

function asRecord(v: unknown): Record<string, unknown> | null {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function parseContainer(v: unknown): HookResponseContext['services'][number] {
  const id = prop(v, 'id');
  const network = prop(v, 'network');
  const ports = asRecord(prop(v, 'ports'));
  return {
    ...(typeof id === 'string' ? { id } : {}),
    ...(typeof network === 'string' ? { network } : {}),
    ...(ports ? { ports: Object.fromEntries(Object.entries(ports).map(([k, x]) => [k, String(x)])) } : {}),
  };
}

/** Parses a response file's text; null for an empty file (Newtonsoft's LoadObject of "" is null). */
export function parseHookResponse(text: string): HookResponse | null {
  if (text.trim() === '') return null;
  const raw: unknown = JSON.parse(text);
  if (raw === null || typeof raw !== 'object') return null;
  const ctx = asRecord(prop(raw, 'context'));
  const services = prop(ctx, 'services');
  const isAlpine = prop(raw, 'isAlpine');
  return {
    state: asRecord(prop(raw, 'state')),
    context: ctx
      ? {
          ...(asRecord(prop(ctx, 'container')) ? { container: parseContainer(prop(ctx, 'container')) } : {}),
          services: Array.isArray(services) ? services.map(parseContainer) : [],
        }
      : null,
    isAlpine: typeof isAlpine === 'boolean' ? isAlpine : null,
  };
}

/** One job's conversation with its hooks script; the state threads through every call. */
export class ContainerHookClient {
  /** The state of the latest response that had one (context.Global.ContainerHookState). */
  state: Record<string, unknown> | null = null;

  constructor(
    readonly script: string,
    private readonly responseDir: string,
    private readonly run: HookRunner,
    private readonly trace: (line: string) => void,
  ) {}

  /** Throws unless the script exists and has a supported extension (ValidateHookExecutable). */
  private validate(): void {
    if (!existsSync(this.script)) {
      throw new Error(`File not found at '${this.script}'. Set ${CONTAINER_HOOKS_ENV} to the path of an existing file.`);
    }
    if (!EXTENSIONS.some((e) => this.script.endsWith(e))) {
      throw new Error(
        `Invalid file extension at '${this.script}'. ${CONTAINER_HOOKS_ENV} must be a path to a file with one of the following extensions: ${EXTENSIONS.join(', ')}`,
      );
    }
  }

  /** Runs one command; returns its response (null when there was none). Throws ContainerHookError. */
  async call(command: HookCommand, args: HookInput['args']): Promise<HookResponse | null> {
    const responseFile = path.join(this.responseDir, `${randomUUID()}.json`);
    // prepare_job is the first call: the runner sends no state with it
    const input: HookInput = { command, responseFile, args, state: command === 'prepare_job' ? null : this.state };
    let response: HookResponse | null;
    try {
      this.validate();
      await mkdir(this.responseDir, { recursive: true });
      await writeFile(responseFile, '');
      const code = await this.run(this.script, `${JSON.stringify(input)}\n`);
      if (code !== 0) {
        throw new Error(`The hook script at '${this.script}' running command '${command}' did not execute successfully`);
      }
      response = await this.readResponse(input);
    } catch (err) {
      throw new ContainerHookError((err as Error).message);
    }
    if (response?.state) {
      this.state = response.state;
      this.trace(
        `Global variable 'ContainerHookState' updated successfully for '${command}' with data found in 'state' property of the response file.`,
      );
    }
    return response;
  }

  private async readResponse(input: HookInput): Promise<HookResponse | null> {
    const needsAlpine = input.command === 'prepare_job' && (input.args as PrepareJobArgs).container !== null;
    if (!existsSync(input.responseFile)) {
      if (needsAlpine) {
        throw new Error(
          `Response file is required but not found for the hook script at '${this.script}' running command '${input.command}'`,
        );
      }
      return null;
    }
    const response = parseHookResponse(await readFile(input.responseFile, 'utf8'));
    await rm(input.responseFile, { force: true });
    if (response === null && needsAlpine) {
      throw new Error(`Response file could not be read at '${this.script}' running command '${input.command}'`);
    }
    if (response !== null && needsAlpine && response.isAlpine === null) {
      throw new Error("The property 'isAlpine' is required but was not found in the response file.");
    }
    return response;
  }
}
