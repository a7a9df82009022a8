/**
 * Main of the simulated `bin/Runner.Listener` (docs/runner-contract.md §1, §4): the composition root
 * of the simulated runner process. Only this file reads argv and env, handles signals and exits.
 *
 * Order at start, as Program.cs: load `<root>/.env` into the environment, parse the command line
 * (taking and removing `ACTIONS_RUNNER_INPUT_*`), warn about unknown options, then run the command.
 *
 * Simulator-only environment (never read by the real runner; they may also come from `.env`):
 * - RUNNER_SIM_ROOT: the runner root; set by the bin/ wrappers, removed at start.
 * - RUNNER_SIM_API_URL: the API base for `configure`/`remove` (github.com is unreachable in the lab).
 * - RUNNER_SIM_SESSION_CONFLICT_RETRY_SECONDS (30) / RUNNER_SIM_SESSION_CONFLICT_TOTAL_SECONDS (240):
 *   the 409 retry cadence and limit.
 * - RUNNER_SIM_RECONNECT_DELAY_SECONDS (3): delay between attempts while the broker is unreachable.
 * - RUNNER_SIM_JOB_RENEW_INTERVAL_SECONDS (60): job-lock renewal cadence (server cancel detection).
 * - RUNNER_SIM_EXIT_ON_UNLOAD_TIMEOUT_SECONDS (30): the SIGTERM deadline (ExitOnUnloadTimeout).
 * - RUNNER_SIM_UPDATE_POLL_SECONDS (2) / RUNNER_SIM_UPDATE_SETTLE_SECONDS (1): update.sh's wait for
 *   the listener's exit and its extra sleep before it swaps `bin`.
 * - RUNNER_SIM_STEP_SIGINT_TIMEOUT_SECONDS, RUNNER_SIM_STEP_SIGTERM_TIMEOUT_SECONDS,
 *   RUNNER_SIM_PROC1_CGROUP: read by the worker (worker.ts).
 * Every RUNNER_SIM_* value may also come from `.env`, or be given a default when the simulator is
 * installed (InstallOptions.simEnv).
 *
 * The JIT configuration stays in this process's original environment, as in the real listener:
 * CommandSettings removes ACTIONS_RUNNER_INPUT_* from the managed environment only (what the worker
 * inherits), while /proc/<pid>/environ, readable by the runner user, still shows it.
 */
import path from 'node:path';
import { systemClock } from '../../lib/clock.js';
import { CommandSettings } from './args.js';
import { configure, ConfigureFailure, remove } from './configure.js';
import { Terminal, Trace } from './diag.js';
import { applyJitConfig, isConfigured, loadDotEnv, readRunnerSettings } from './files.js';
import { ReturnCode } from './results.js';
import { DEFAULT_TIMINGS, runListener, type RunTimings } from './run.js';
import { readInstalledVersion } from './version.js';
import { envTrue, WRAPPER_ENV } from './worker-channel.js';

/**
 * How long a SIGTERM'd listener may take to shut down (Constants.Runner.ExitOnUnloadTimeout). The
 * exit code after the cut-off is UNVERIFIED for the real runner; the simulator uses 143.
 */
const EXIT_ON_UNLOAD_TIMEOUT_MS = 30_000;

/** Exit code when SIGTERM's deadline passes, or SIGTERM arrives during configure/remove. */
const SIGTERM_EXIT_CODE = 143;

function seconds(env: NodeJS.ProcessEnv, name: string, fallbackMs: number): number {
  const v = Number.parseFloat(env[name] ?? '');
  return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : fallbackMs;
}

function timingsFrom(env: NodeJS.ProcessEnv): RunTimings {
  return {
    conflictRetryMs: seconds(env, 'RUNNER_SIM_SESSION_CONFLICT_RETRY_SECONDS', DEFAULT_TIMINGS.conflictRetryMs),
    conflictTotalMs: seconds(env, 'RUNNER_SIM_SESSION_CONFLICT_TOTAL_SECONDS', DEFAULT_TIMINGS.conflictTotalMs),
    reconnectDelayMs: seconds(env, 'RUNNER_SIM_RECONNECT_DELAY_SECONDS', DEFAULT_TIMINGS.reconnectDelayMs),
    renewIntervalMs: seconds(env, 'RUNNER_SIM_JOB_RENEW_INTERVAL_SECONDS', DEFAULT_TIMINGS.renewIntervalMs),
    updatePollMs: seconds(env, 'RUNNER_SIM_UPDATE_POLL_SECONDS', DEFAULT_TIMINGS.updatePollMs),
    updateSettleMs: seconds(env, 'RUNNER_SIM_UPDATE_SETTLE_SECONDS', DEFAULT_TIMINGS.updateSettleMs),
  };
}

const USAGE = `
Commands:
 ./config.sh         Configures the runner
 ./config.sh remove  Unconfigures the runner
 ./run.sh            Runs the runner interactively. Does not require any options.

Options:
 --help     Prints the help for each command
 --version  Prints the runner version
 --commit   Prints the runner commit
 --check    Check the runner's network connectivity with GitHub server

Config Options:
 --unattended           Disable interactive prompts for missing arguments. Defaults will be used for missing options
 --url string           Repository to add the runner to. Required if unattended
 --token string         Registration token. Required if unattended
 --name string          Name of the runner to configure (default ${'$'}HOSTNAME)
 --runnergroup string   Name of the runner group to add this runner to (defaults to the default runner group)
 --labels string        Custom labels that will be added to the runner. This option is mandatory if --no-default-labels is used.
 --no-default-labels    Disables adding the default labels: 'self-hosted,Linux,X64'
 --local                Removes the runner config files from your local machine. Used as an option to the remove command
 --work string          Relative runner work directory (default _work)
 --replace              Replace any existing runner with the same name (default false)
 --pat                  GitHub personal access token with repo scope. Used for checking network connectivity when executing \`./run.sh --check\`
 --disableupdate        Disable self-hosted runner automatic update to the latest released version\`
 --ephemeral            Configure the runner to only take one job and then let the service un-configure the runner after the job finishes (default false)
`;

async function main(term: Terminal, trace: Trace, root: string, cmd: CommandSettings): Promise<number> {
  const version = readInstalledVersion(root);
  trace.info('Runner.Listener', `Version: ${version}`);
  trace.info('Runner.Listener', `Runner root: ${root} (simulated)`);
  let inConfigStage = true;
  const shutdownAc = new AbortController();

  process.on('SIGINT', () => {
    term.writeLine('Exiting...');
    if (inConfigStage) process.exit(ReturnCode.TerminatedError);
    trace.info('Runner', 'Received Ctrl-C signal, stop Runner.Listener and Runner.Worker.');
    shutdownAc.abort();
  });
  process.on('SIGTERM', () => {
    if (inConfigStage) process.exit(SIGTERM_EXIT_CODE);
    if (shutdownAc.signal.aborted) return;
    trace.info('Runner', 'Received SIGTERM, shutting down (bounded by ExitOnUnloadTimeout).');
    shutdownAc.abort();
    const ms = seconds(process.env, 'RUNNER_SIM_EXIT_ON_UNLOAD_TIMEOUT_SECONDS', EXIT_ON_UNLOAD_TIMEOUT_MS);
    setTimeout(() => {
      trace.warn('Runner', 'ExitOnUnloadTimeout passed, the runtime ends the process.');
      process.exit(SIGTERM_EXIT_CODE);
    }, ms).unref();
  });

  const warning = cmd.unknownOptionsWarning();
  if (warning) term.writeError(warning);

  if (cmd.flag('help')) {
    term.writeLine(USAGE);
    return ReturnCode.Success;
  }
  if (cmd.flag('version')) {
    term.writeLine(version);
    return ReturnCode.Success;
  }
  if (cmd.flag('commit')) {
    term.writeLine('0000000000000000000000000000000000000000');
    return ReturnCode.Success;
  }
  if (cmd.flag('check')) {
    term.writeLine('The simulated runner has no connectivity checks.');
    return ReturnCode.Success;
  }
  if (cmd.isCommand('configure') || cmd.isCommand('remove')) {
    try {
      if (cmd.isCommand('configure')) await configure(root, cmd, term, process.env);
      else await remove(root, cmd, term, process.env);
      return ReturnCode.Success;
    } catch (err) {
      trace.error('Runner', (err as Error).stack ?? String(err));
      term.writeError(err instanceof ConfigureFailure ? err.message : (err as Error).message);
      return ReturnCode.TerminatedError;
    }
  }
  inConfigStage = false;
  if (cmd.isCommand('warmup')) return ReturnCode.Success;

  const jit = cmd.arg('jitconfig');
  if (jit) {
    try {
      const names = applyJitConfig(root, jit);
      trace.info('Runner', `Saved JIT configuration files: ${names.join(', ')}.`);
    } catch (err) {
      trace.error('Runner', (err as Error).message);
      term.writeError((err as Error).message);
      return ReturnCode.TerminatedError;
    }
  }

  if (!cmd.isCommand('run')) {
    term.writeLine(USAGE);
    return ReturnCode.Success;
  }
  if (!isConfigured(root)) {
    term.writeError('Runner is not configured.');
    term.writeLine(USAGE);
    return ReturnCode.TerminatedError;
  }
  const settings = readRunnerSettings(root);
  const runOnceFlag = cmd.flag('once');
  if (runOnceFlag) {
    term.writeLine(
      "Warning: '--once' is going to be deprecated in the future, please consider using '--ephemeral' during runner registration.",
    );
    term.writeLine(
      'https://docs.github.com/en/actions/hosting-your-own-runners/autoscaling-with-self-hosted-runners#using-ephemeral-runners-for-autoscaling',
    );
  }
  const hosted = envTrue(process.env.ACTIONS_RUNNER_RETURN_JOB_RESULT_FOR_HOSTED);
  return runListener({
    root,
    version,
    settings,
    runOnce: runOnceFlag || settings.ephemeral === true || hosted,
    returnJobResult: hosted,
    returnVersionDeprecated: envTrue(process.env.ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE),
    term,
    trace,
    clock: systemClock,
    timings: timingsFrom(process.env),
    shutdown: shutdownAc.signal,
    env: process.env,
  });
}

// .NET's console ignores EPIPE (ConsolePal.Unix): a real listener whose reader died (its
// supervisor killed) carries on polling and takes jobs. Without this, node would die at the next
// write and hide the orphaned-listener case from the agent's crash tests.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

const root = process.env.RUNNER_SIM_ROOT ? path.resolve(process.env.RUNNER_SIM_ROOT) : process.cwd();
for (const k of WRAPPER_ENV) delete process.env[k];
loadDotEnv(root, process.env);
const cmd = new CommandSettings(process.argv.slice(2), process.env);
for (const k of cmd.consumedEnv) delete process.env[k];
const trace = new Trace(path.join(root, '_diag'), 'Runner', {
  mirrorToStdout: envTrue(process.env.ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT),
});
for (const s of cmd.secretValues()) trace.addSecret(s);
const term = new Terminal(trace);

main(term, trace, root, cmd).then(
  (code) => {
    trace.info('Runner.Listener', `Runner execution has finished with return code ${code}`);
    process.exit(code);
  },
  (err: unknown) => {
    // an unhandled exception: Program.cs prints it and returns RetryableError
    term.writeError(`An error occurred: ${(err as Error)?.message ?? String(err)}`);
    trace.error('Runner.Listener', (err as Error)?.stack ?? String(err));
    process.exit(ReturnCode.RetryableError);
  },
);
