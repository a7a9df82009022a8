/**
 * Step "runner-install": compares the runner installation with the manifest taken at boot
 * (install-manifest.ts). It repairs nothing: a changed or added file (attack 11) means the job
 * reached the code the next job runs, so the host is dirty and must not be reused. The one thing it
 * removes is the agent's own: a `.env`/`.path` temporary a kill left before its rename.
 */
import { loadInstallManifest, diffInstall, describeInstallDiff, removeStaleEnvTemps, strayQuarantineCopy } from '../install-manifest.js';
import { capLines } from '../report.js';
import type { CleanupContext, CleanupStep, Removed, StepReport } from '../types.js';

/** The runner-install step. */
export function runnerInstallStep(): CleanupStep {
  return {
    name: 'runner-install',
    async run(ctx: CleanupContext): Promise<Omit<StepReport, 'name' | 'durationMs'>> {
      if (!ctx.policy.runnerInstall.enabled) return { outcome: 'skipped', removed: {}, reason: 'disabled by policy' };
      const m = await loadInstallManifest(ctx.slot);
      if (!m) return { outcome: 'dirty', removed: {}, reason: 'no runner installation manifest (taken at boot)' };
      const stale = ctx.dryRun ? undefined : await removeStaleEnvTemps(ctx.slot);
      const removed: Record<string, Removed> = stale && stale.count > 0 ? { 'agent-temp': stale } : {};
      const lines = describeInstallDiff(ctx.slot, await diffInstall(ctx.slot, m, ctx.clock));
      const stray = await strayQuarantineCopy(ctx.slot);
      if (stray) lines.unshift(stray);
      if (lines.length === 0) return { outcome: 'ok', removed };
      return { outcome: 'dirty', removed, reason: capLines(lines, 5).join('; '), ...(ctx.dryRun ? { plan: capLines(lines) } : {}) };
    },
  };
}
