import { rm, writeFile } from 'node:fs/promises';
import { systemClock } from '../lib/clock.js';
import { createLogger } from '../lib/log.js';
import { ConfigError, PolicyError, RunnerInstallError, describeError } from '../lib/errors.js';
import { loadHostConfig } from '../policy/load.js';
import { EXIT, parseOptions, type CliIO } from './io.js';
import { statePaths, wire } from './wire.js';

/** Default host config path (design.md). */
export const DEFAULT_CONFIG = '/etc/runner-warden/config.yaml';

/** Prints a configuration error with every problem, for exit 78. */
export function printConfigError(err: unknown, io: CliIO): boolean {
  if (err instanceof ConfigError || err instanceof PolicyError) {
    io.stderr.write(`runner-warden: ${err.message}\n`);
    for (const p of err.problems) io.stderr.write(`  ${p}\n`);
    return true;
  }
  if (err instanceof RunnerInstallError) {
    io.stderr.write(`runner-warden: ${err.message}\n`);
    return true;
  }
  return false;
}

/** `runner-warden run [--config FILE]`: the daemon. Exit 0 stopped, 78 bad config, recycle exit code. */
export async function runCommand(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { opts, unknown } = parseOptions(args, { values: ['config', 'log-level'] });
  if (unknown.length > 0) {
    io.stderr.write(`runner-warden run: unknown option ${unknown.join(', ')}\n`);
    return EXIT.usage;
  }
  const configFile = String(opts.config ?? env.RUNNER_WARDEN_CONFIG ?? DEFAULT_CONFIG);
  const log = createLogger({ level: String(opts['log-level'] ?? env.RUNNER_WARDEN_LOG_LEVEL ?? 'info') });
  let runtime;
  try {
    const config = await loadHostConfig(configFile, env);
    runtime = await wire(config, { configFile, env, log, clock: systemClock });
  } catch (err) {
    if (printConfigError(err, io)) return EXIT.config;
    throw err;
  }
  const pidFile = statePaths(runtime.slot.stateDir).pidFile;
  await writeFile(pidFile, `${process.pid}\n`, { mode: 0o644 });
  const shutdown = new AbortController();
  const onTerm = (sig: NodeJS.Signals) => (): void => {
    log.info({ signal: sig }, 'signal received');
    shutdown.abort();
  };
  // `runner-warden drain` (SIGUSR2): finish or cancel the job, clean, then recycle the host.
  const onDrain = (): void => runtime.agent.drain('drain requested (runner-warden drain)', { recycle: true });
  const handlers: [NodeJS.Signals, () => void][] = [
    ['SIGTERM', onTerm('SIGTERM')],
    ['SIGINT', onTerm('SIGINT')],
    ['SIGUSR2', onDrain],
  ];
  for (const [sig, h] of handlers) process.on(sig, h);
  try {
    const exit = await runtime.agent.run(shutdown.signal);
    return exit.code;
  } catch (err) {
    log.error({ err: describeError(err) }, 'agent failed');
    if (printConfigError(err, io)) return EXIT.config;
    return EXIT.tempfail;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
    await runtime.close();
    await rm(pidFile, { force: true });
    log.flush();
  }
}
