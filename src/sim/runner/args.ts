/**
 * The simulated runner's command line, parsed the way Runner.Listener parses it
 * (docs/runner-contract.md §1, `CommandLineParser.cs` + `CommandSettings.cs`):
 *
 *   cmd1 cmd2 --arg1 val1 --flag --arg2 val2
 *
 * - bare words before the first `--x` are commands;
 * - `--name value` is an arg, `--name` with no value a flag; `--name=value` is a flag called `name=value`;
 * - the first value of an arg wins; a second value for the same arg is dropped and, as in the real
 *   parser, leaves the arg "in scope" so a following `--x` turns it into a flag as well;
 * - values starting with `-` are ignored; names are case-insensitive; `/?` means help;
 * - `ACTIONS_RUNNER_INPUT_<NAME>` env vars supply args and flags (command line wins) and are removed
 *   from the environment by the caller.
 * Unknown options are not fatal: `unknownOptions()` lists them for the warning.
 */

/** Args whose values are masked in logs (`Constants.Runner.CommandLine.Args.Secrets`). */
export const SECRET_ARGS = ['token', 'pat', 'windowslogonpassword', 'jitconfig'] as const;

/** The env prefix that supplies args and flags. */
export const INPUT_ENV_PREFIX = 'ACTIONS_RUNNER_INPUT_';

const VALID_COMMANDS = ['configure', 'remove', 'run', 'warmup'];
const GENERIC_FLAGS = ['help', 'version', 'commit', 'check'];

/** Options each command accepts (docs/runner-contract.md §1), lower case; flags and args together. */
const OPTIONS_BY_COMMAND: Record<string, string[]> = {
  configure: [
    'disableupdate',
    'ephemeral',
    'generateserviceconfig',
    'replace',
    'runasservice',
    'unattended',
    'no-default-labels',
    'auth',
    'labels',
    'monitorsocketaddress',
    'name',
    'pat',
    'runnergroup',
    'token',
    'url',
    'username',
    'windowslogonaccount',
    'windowslogonpassword',
    'work',
  ],
  remove: ['token', 'pat', 'local'],
  run: ['once', 'jitconfig', 'startuptype'],
  warmup: [],
};

/** The raw result of parsing argv (names keep the case they were typed in). */
export interface ParsedArgs {
  commands: string[];
  /** Insertion-ordered; keys as typed, lookups case-insensitive through the helpers below. */
  args: Map<string, string>;
  flags: string[];
}

/** Parses argv exactly like `CommandLineParser.Parse`. */
export function parseArgv(argv: readonly string[]): ParsedArgs {
  const commands: string[] = [];
  const args = new Map<string, string>();
  const flags: string[] = [];
  const addFlag = (name: string): void => {
    if (!flags.some((f) => f.toLowerCase() === name.toLowerCase())) flags.push(name);
  };
  const hasArg = (name: string): boolean => [...args.keys()].some((k) => k.toLowerCase() === name.toLowerCase());
  let hasArgs = false;
  let scope: string | undefined;
  for (const arg of argv) {
    hasArgs = hasArgs || arg.startsWith('--');
    if (arg === '/?') {
      addFlag('help');
    } else if (!hasArgs) {
      commands.push(arg.trim());
    } else if (arg.startsWith('--') && arg.length > 2) {
      // two --names in a row: the previous one was a flag
      if (scope !== undefined) addFlag(scope.trim());
      scope = arg.slice(2);
    } else if (!arg.startsWith('-')) {
      if (scope !== undefined) {
        scope = scope.trim();
        if (!hasArg(scope)) {
          args.set(scope, arg);
          scope = undefined;
        }
        // else: a duplicate arg; the real parser keeps it in scope (first value wins)
      }
    }
    // else: `-x`, `-` or `--` are ignored
  }
  if (scope !== undefined) addFlag(scope);
  return { commands, args, flags };
}

/** Case-insensitive view over argv plus the `ACTIONS_RUNNER_INPUT_*` values. */
export class CommandSettings {
  readonly parsed: ParsedArgs;
  private readonly envArgs = new Map<string, string>();
  /** Env var names that carried inputs; the caller removes them from its environment. */
  readonly consumedEnv: string[] = [];

  /**
   * `env` is read for `ACTIONS_RUNNER_INPUT_*`; the names found are returned by `consumedEnv` so the
   * composition root can delete them from its own environment (the real runner does).
   */
  constructor(argv: readonly string[], env: Record<string, string | undefined>) {
    this.parsed = parseArgv(argv);
    for (const [key, raw] of Object.entries(env)) {
      if (!key.toUpperCase().startsWith(INPUT_ENV_PREFIX)) continue;
      this.consumedEnv.push(key);
      const val = (raw ?? '').trim();
      if (val !== '') this.envArgs.set(key.slice(INPUT_ENV_PREFIX.length).toLowerCase(), val);
    }
  }

  /** The first command, lower case, when it is a known one; '' otherwise. */
  get commandName(): string {
    const first = this.parsed.commands[0]?.toLowerCase() ?? '';
    return VALID_COMMANDS.includes(first) ? first : '';
  }

  /** True when the first command is `name`. */
  isCommand(name: string): boolean {
    return (this.parsed.commands[0] ?? '').toLowerCase() === name;
  }

  /** An arg from argv, else from the env inputs; undefined when absent or empty. */
  arg(name: string): string | undefined {
    for (const [k, v] of this.parsed.args) if (k.toLowerCase() === name) return v;
    const env = this.envArgs.get(name);
    return env === undefined || env === '' ? undefined : env;
  }

  /** A flag from argv, else an env input that parses as the bool `true` (case-insensitive). */
  flag(name: string): boolean {
    if (this.parsed.flags.some((f) => f.toLowerCase() === name)) return true;
    return (this.envArgs.get(name) ?? '').trim().toLowerCase() === 'true';
  }

  /** Every value of a secret arg (from argv or env), for masking in logs. */
  secretValues(): string[] {
    const out: string[] = [];
    for (const s of SECRET_ARGS) {
      const v = this.arg(s);
      if (v) out.push(v);
    }
    return out;
  }

  /**
   * Commands, flags and args the current command does not accept, in that order and as typed.
   * Generic flags are accepted everywhere; with no known command every option is checked against
   * the generic flags only.
   */
  unknownOptions(): string[] {
    const cmd = this.commandName;
    const allowed = new Set([...GENERIC_FLAGS, ...(OPTIONS_BY_COMMAND[cmd] ?? [])]);
    const unknown: string[] = [];
    for (const c of this.parsed.commands) {
      if (!VALID_COMMANDS.includes(c.toLowerCase())) unknown.push(c);
    }
    for (const f of this.parsed.flags) if (!allowed.has(f.toLowerCase())) unknown.push(f);
    for (const a of this.parsed.args.keys()) if (!allowed.has(a.toLowerCase())) unknown.push(a);
    return unknown;
  }

  /** The warning the real runner writes to stderr for unknown options; undefined when none. */
  unknownOptionsWarning(): string | undefined {
    const unknown = this.unknownOptions();
    if (unknown.length === 0) return undefined;
    const list = unknown.join(', ');
    const usage = 'For usage refer to: .\\config.cmd --help or ./config.sh --help';
    return this.commandName === ''
      ? `This command does not recognize the command-line input arguments: '${list}'. ${usage}`
      : `Unrecognized command-line input arguments for command ${this.commandName}: '${list}'. ${usage}`;
  }
}
