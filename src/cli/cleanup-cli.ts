import type { CliIO } from './io.js';
import { reportStartupError } from './startup-errors.js';
import { loadForCommand, takeConfigArg } from './config-args.js';
import { cleanupCommand } from './cleanup.js';
import { baselineCommand } from './baseline.js';
import { HOST_LOCK_DIR, takeHostLocks, type HostLocks } from './host-lock.js';
import type { Slot } from '../cleanup/types.js';

/** The runner user's host-wide lock: a cleanup kills that user's processes, whichever agent's job they are. */
function userLock(slot: Slot, env: NodeJS.ProcessEnv): { uid: number; lockDir: string } {
  return { uid: slot.user.uid, lockDir: env.RUNNER_WARDEN_LOCK_DIR ?? HOST_LOCK_DIR };
}

/**
 * `runner-warden cleanup [--config FILE] [--dry-run] [--json]`. A real pass takes the slot's locks
 * (exit 75 naming the agent's pid while one runs: a cleanup would kill its job); a dry run only reads.
 */
export async function cleanupCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { configFile, rest } = takeConfigArg(args, env);
  let locks: HostLocks | undefined;
  try {
    const { config, slot, policy, log } = await loadForCommand(configFile, env);
    if (!rest.includes('--dry-run')) locks = await takeHostLocks(config.stateDir, config.runner.root, configFile, userLock(slot, env));
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
    locks = await takeHostLocks(config.stateDir, config.runner.root, configFile, userLock(slot, env));
    return await baselineCommand(rest, io, { slot, policy, log });
  } catch (err) {
    return reportStartupError(err, io, configFile);
  } finally {
    await locks?.release();
  }
}
