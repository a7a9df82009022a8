/**
 * Every command's usage text, in one place: `main` prints it for `<command> --help` (or `-h`)
 * before the command's module is loaded, so asking for help never reads a config, opens a socket
 * or changes anything. The commands print the same text with their usage errors.
 */

/** Default host config path. */
export const DEFAULT_CONFIG = '/etc/runner-warden/config.yaml';

const CONFIG_LINE = `  --config FILE  host config (default ${DEFAULT_CONFIG}, or RUNNER_WARDEN_CONFIG)\n`;

export const RUN_USAGE = `usage: runner-warden run [--config FILE] [--log-level LEVEL]
  the agent daemon: registers a single-use runner, supervises it for one job, cleans and verifies
  the host, then reuses or recycles it; one agent per state directory and per runner root
${CONFIG_LINE}  --log-level LEVEL  pino level (default info, or RUNNER_WARDEN_LOG_LEVEL)
exit: 0 stopped, 78 configuration error, 75 temporary failure (another agent holds the slot),
or the recycle provider's exit code
`;

export const VALIDATE_USAGE = `usage: runner-warden validate [--kind host|policy] [--policy-dir DIR] [--quiet] FILE...
       runner-warden validate --print-effective [--policy-dir DIR] FILE

Checks host configs and team policies (YAML or JSON); the kind is detected from the keys unless
--kind says it. Exit 0 when every file is valid, 1 otherwise. For a host config whose runner user
exists here, also checks that this host can give the team policy's docker.mode, with each fix.
  --print-effective  print the merged policy, each value with the file it came from
  --policy-dir DIR   directory that extends must stay in (default: the file's directory)
  --quiet            print nothing for valid files
`;

export const CLEANUP_USAGE = `usage: runner-warden cleanup [--config FILE] [--dry-run] [--json]
  one cleanup pass by hand (the agent must not be running)
${CONFIG_LINE}  --dry-run   print what each step would remove; remove nothing
  --json      print the cleanup report as JSON
`;

export const BASELINE_USAGE = `usage: runner-warden baseline [--config FILE] [--home] [--install]
  record the runner user's home and the runner installation as they are now (image build)
${CONFIG_LINE}  --home      record the runner user's home only
  --install   record the runner installation only
`;

export const STATUS_USAGE = `usage: runner-warden status [--config FILE] [--json] [--url URL]
${CONFIG_LINE}  --json      print the agent's /status JSON as is
  --url URL   the agent's health address (default from the host config)
`;

/** Jobs `journal` shows when -n is not given: one screenful. */
export const JOURNAL_DEFAULT_COUNT = 20;

export const JOURNAL_USAGE = `usage: runner-warden journal [--config FILE] [--json] [--all] [-n N]
${CONFIG_LINE}  -n N      show the last N jobs (default ${JOURNAL_DEFAULT_COUNT})
  --json    print the records as JSON
  --all     include lifecycle events (boot, recovery, drain...), not only jobs
`;

export const DRAIN_USAGE = `usage: runner-warden drain [--config FILE]
       runner-warden drain --url URL [--token-file FILE]
  asks the running agent to drain: idle, it deregisters and stops; busy, the job runs until the
  drain grace period, then it is cancelled; the host is cleaned and recycled
${CONFIG_LINE}      (the agent's root-only control socket in the state directory)
  --url URL          the agent's health address instead (POST /drain; needs the health token)
  --token-file FILE  the health token (default health.tokenFile of the host config)
exit: 0 requested, 75 no agent answered, 78 configuration error
`;

export const DEMO_USAGE = `usage: runner-warden demo [--jobs N] [--keep]
  the whole lifecycle on this machine with the bundled runner simulator and fake GitHub API
  (run as root: it creates a throwaway runner user)
  --jobs N   jobs to run, 1 to 3 (default 3)
  --keep     keep the demo's directory afterwards
`;

export const UNQUARANTINE_USAGE = `usage: runner-warden unquarantine --reason TEXT [--config FILE]
  ends the host's quarantine (an operator decision, journaled with who and why); the agent then
  cleans and verifies the host before it serves again. Run as root on the host.
`;

export const VERSION_USAGE = `usage: runner-warden version
  print the version
`;

/** The usage of each command, by name. */
export const COMMAND_USAGE: Readonly<Record<string, string>> = {
  run: RUN_USAGE,
  validate: VALIDATE_USAGE,
  cleanup: CLEANUP_USAGE,
  baseline: BASELINE_USAGE,
  status: STATUS_USAGE,
  journal: JOURNAL_USAGE,
  drain: DRAIN_USAGE,
  demo: DEMO_USAGE,
  unquarantine: UNQUARANTINE_USAGE,
  version: VERSION_USAGE,
};

/** True when the arguments ask for help (before a `--` that ends the options). */
export function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}
