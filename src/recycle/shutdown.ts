import { ADMIN_PATH, runAdmin } from './argv.js';
import { RECYCLE_DEFAULTS, type ShutdownRecycleConfig } from './config.js';
import type { RecycleProvider } from './port.js';

/**
 * `shutdown`: runs the configured power-off command, for VMs launched to terminate on shutdown.
 * The command is required in config: this provider has no built-in action on the machine.
 */
export function shutdownProvider(config: ShutdownRecycleConfig): RecycleProvider {
  const timeoutMs = (config.timeoutSeconds ?? RECYCLE_DEFAULTS.shutdown.timeoutSeconds) * 1000;
  return {
    name: 'shutdown',
    async recycle(_event, signal) {
      const run = await runAdmin(config.command, { PATH: ADMIN_PATH }, timeoutMs, signal);
      return { provider: 'shutdown', ok: run.ok, detail: run.ok ? `shutdown requested (${run.detail})` : run.detail };
    },
  };
}
