import type { CliIO } from './io.js';
import { reportStartupError } from './startup-errors.js';
import { loadForCommand, takeConfigArg } from './config-args.js';
import { cleanupCommand } from './cleanup.js';
import { baselineCommand } from './baseline.js';
import { takeHostLocks, type HostLocks } from './host-lock.js';

/**
 * `runner-warden cleanup [--config FILE] [--dry-run] [--json]`. A real pass takes the slot's locks
 * (exit 75 naming the agent's pid while one runs: a cleanup would kill its job); a dry run only reads.
 */
export async function cleanupCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { configFile, rest } = takeConfigArg(args, env);
  let locks: HostLocks | undefined;
  try {
    const { config, slot, policy, log } = await loadForCommand(configFile, env);
    if (!rest.includes('--dry-run')) locks = await takeHostLocks(config.stateDir, config.runner.root, configFile);
    return await cleanupCommand(rest, io, { slot, policy, log });
  } catch (err) {
    return reportStartupError(err, io, configFile);
  } finally {
    await locks?.release();
  }
}

/** `runner-warden baseline [--config FILE] [--home] [--install]`; takes the slot's locks, like cleanup. */
export async function baselineCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { configFile, rest } = takeConfigArg(args, env);
  let locks: HostLocks | undefined;
  try {
    const { config, slot, policy, log } = await loadForCommand(configFile, env);
    locks = await takeHostLocks(config.stateDir, config.runner.root, configFile);
    return await baselineCommand(rest, io, { slot, policy, log });
  } catch (err) {
    return reportStartupError(err, io, configFile);
  } finally {
    await locks?.release();
  }
}
