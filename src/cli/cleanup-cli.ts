import { EXIT, type CliIO } from './io.js';
import { printConfigError } from './startup-errors.js';
import { loadForCommand, takeConfigArg } from './config-args.js';
import { cleanupCommand } from './cleanup.js';
import { baselineCommand } from './baseline.js';

/** `runner-warden cleanup [--config FILE] [--dry-run] [--json]`. */
export async function cleanupCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { configFile, rest } = takeConfigArg(args, env);
  try {
    const { slot, policy, log } = await loadForCommand(configFile, env);
    return await cleanupCommand(rest, io, { slot, policy, log });
  } catch (err) {
    if (printConfigError(err, io)) return EXIT.config;
    throw err;
  }
}

/** `runner-warden baseline [--config FILE] [--home] [--install]`. */
export async function baselineCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { configFile, rest } = takeConfigArg(args, env);
  try {
    const { slot, policy, log } = await loadForCommand(configFile, env);
    return await baselineCommand(rest, io, { slot, policy, log });
  } catch (err) {
    if (printConfigError(err, io)) return EXIT.config;
    throw err;
  }
}
