import { createLogger, type Logger } from '../lib/log.js';
import type { HostConfig, Policy } from '../policy/types.js';
import { loadHostConfig } from '../policy/load.js';
import { PolicyStore } from '../policy/watch.js';
import type { Slot } from '../cleanup/types.js';
import { DEFAULT_CONFIG } from './run.js';
import { buildSlot } from './wire.js';

/** Takes `--config FILE` (or `--config=FILE`) out of args; the rest goes to the command. */
export function takeConfigArg(args: string[], env: NodeJS.ProcessEnv): { configFile: string; rest: string[] } {
  const rest: string[] = [];
  let configFile = env.RUNNER_WARDEN_CONFIG ?? DEFAULT_CONFIG;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--config') configFile = args[++i] ?? configFile;
    else if (a.startsWith('--config=')) configFile = a.slice('--config='.length);
    else rest.push(a);
  }
  return { configFile, rest };
}

/** Loads the host config, the slot and the team policy for a one-shot command. */
export async function loadForCommand(
  configFile: string,
  env: NodeJS.ProcessEnv,
): Promise<{ config: HostConfig; slot: Slot; policy: Policy; log: Logger }> {
  const log = createLogger({ level: env.RUNNER_WARDEN_LOG_LEVEL ?? 'warn' });
  const config = await loadHostConfig(configFile, env);
  const slot = await buildSlot(config, configFile);
  const store = new PolicyStore({ dir: config.policyDir, team: config.team, log });
  await store.load();
  return { config, slot, policy: store.current(), log };
}
