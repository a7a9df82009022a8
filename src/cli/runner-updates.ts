/** In-place runner updates (host config runner.updates, docs/fleet-scale.md) as the agent's port. */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { HostConfig } from '../policy/types.js';
import type { Slot } from '../cleanup/types.js';
import type { RunnerUpdatesPort } from '../agent/deps.js';
import { takeInstallManifest } from '../cleanup/install-manifest.js';
import { recoverRunnerUpdate, updateRunner } from '../runner/update.js';

/** The updates port for `config.runner.updates`, or undefined when updates are off. */
export function buildRunnerUpdates(config: HostConfig, slot: Slot, o: { clock: Clock; log: Logger }): RunnerUpdatesPort | undefined {
  const updates = config.runner.updates;
  if (!updates) return undefined;
  const log = o.log.child({ component: 'runner-update' });
  return {
    recover: async () => {
      await recoverRunnerUpdate(slot.runnerRoot, log);
    },
    update: () =>
      updateRunner({
        root: slot.runnerRoot,
        source: updates.source,
        apiUrl: config.github.apiUrl,
        platform: updates.platform,
        clock: o.clock,
        log,
        // A new runner version is the new installation to compare against.
        retakeManifest: () => takeInstallManifest(slot, o.clock),
      }),
    checkEveryMs: updates.checkEveryMinutes * 60_000,
  };
}
