import type { ExitRecycleConfig } from './config.js';
import { RECYCLE_DEFAULTS } from './config.js';
import type { RecycleProvider } from './port.js';

/**
 * `exit`: signals nothing itself; the agent exits with the configured code (default 0) and the
 * container orchestrator (restart policy, Job, Deployment) replaces the container.
 */
export function exitProvider(config: ExitRecycleConfig): RecycleProvider {
  const exitCode = config.exitCode ?? RECYCLE_DEFAULTS.exit.exitCode;
  return {
    name: 'exit',
    async recycle() {
      return { provider: 'exit', ok: true, detail: `agent exits with code ${exitCode}`, exitCode };
    },
  };
}
