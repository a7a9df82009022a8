/**
 * Running a configured admin command for the `shutdown` and `command` providers: argv arrays run
 * as given, a string runs through /bin/sh -c (the form the cleanup's admin commands use).
 */
import { runCommand, type CommandResult } from '../lib/process.js';
import { describeError } from '../lib/errors.js';

/** PATH given to admin commands; the agent's own environment (with its secrets) is never passed. */
export const ADMIN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Output kept from an admin command for the result detail. */
const DETAIL_OUTPUT_CHARS = 200;

/** argv for a configured command: an array as is, a string via /bin/sh -c. */
export function toArgv(command: string[] | string): [string, ...string[]] {
  if (typeof command === 'string') return ['/bin/sh', '-c', command];
  const [cmd, ...args] = command;
  if (cmd === undefined) throw new Error('empty command');
  return [cmd, ...args];
}

/** Outcome of one admin command run. */
export interface AdminRun {
  ok: boolean;
  detail: string;
  result?: CommandResult;
}

/**
 * Runs `command` in its own process group with exactly `env`, killing the group after `timeoutMs`
 * or on abort. Rejects only with the signal's reason when `signal` aborted.
 */
export async function runAdmin(
  command: string[] | string,
  env: Record<string, string>,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<AdminRun> {
  const [cmd, ...args] = toArgv(command);
  let result: CommandResult;
  try {
    result = await runCommand(cmd, args, { env, timeoutMs, signal, cwd: '/' });
  } catch (err) {
    return { ok: false, detail: `${cmd} could not start: ${describeError(err)}` };
  }
  if (signal.aborted) throw signal.reason;
  if (result.timedOut) return { ok: false, detail: `${cmd} timed out after ${timeoutMs} ms`, result };
  if (result.code === 0) return { ok: true, detail: `${cmd} exited 0`, result };
  const tail = (result.stderr.trim() || result.stdout.trim()).slice(-DETAIL_OUTPUT_CHARS);
  const how = result.signal ? `was killed by ${result.signal}` : `exited ${result.code}`;
  return { ok: false, detail: `${cmd} ${how}${tail ? `: ${tail}` : ''}`, result };
}
