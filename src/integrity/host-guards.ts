/**
 * The guards of this feature as the composition root builds them: the sudo grant first (its
 * release removes the grant before any verification runs), then the integrity check. On a first
 * boot without a system baseline the baseline is recorded now, as the home baseline is: nothing
 * has run on the host yet. On any later boot a missing baseline is a finding (quarantine).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { JobGuard } from '../lib/job-guard.js';
import type { Logger } from '../lib/log.js';
import type { Policy } from '../policy/types.js';
import type { Slot } from '../cleanup/types.js';
import { integrityPaths } from './baseline-store.js';
import { IntegrityGuard } from './guard.js';
import { SudoGuard } from './sudo-guard.js';
import { agentExclusions, exceptionPatterns } from './surfaces.js';
import { takeSystemBaseline } from './system-baseline.js';
import { AgentRecords } from './agent-records.js';
import { baselineDir } from '../cleanup/baseline.js';
import { installManifestFile, onInstallManifestSaved } from '../cleanup/install-manifest.js';

/** What the composition root passes. */
export interface HostGuardsOptions {
  slot: Slot;
  policy: Policy;
  /** No persisted agent state yet: the host is as its image made it. */
  firstBoot: boolean;
  /** The agent's own pid (never a drift process). */
  agentPid: number;
  /**
   * Prefix of the file surfaces the integrity check reads (default '/'; tests and benches point it
   * at a built root). The sudo grant is always the real one: sudo reads the real /etc/sudoers.d.
   */
  root?: string;
  /** Directories the agent is deleting in the background now (IntegrityGuardOptions.transientExcluded). */
  transientExcluded?: () => readonly string[];
  log: Logger;
}

/** Builds [SudoGuard, IntegrityGuard]; records the system baseline on a first boot without one. */
export async function createHostGuards(o: HostGuardsOptions): Promise<JobGuard<Policy>[]> {
  const excluded = agentExclusions(o.slot);
  const p = o.policy.host.integrity;
  if (o.firstBoot && p.enabled && !existsSync(integrityPaths(o.slot.stateDir).baseline)) {
    o.log.info({ stateDir: o.slot.stateDir }, 'no system baseline: recording the host as it is on this first boot');
    await takeSystemBaseline({
      ...(o.root ? { root: o.root } : {}),
      stateDir: o.slot.stateDir,
      surfaces: p.surfaces,
      exceptions: exceptionPatterns(p),
      excluded,
      user: o.slot.user,
      skipPids: [o.agentPid],
    });
  }
  // The home baseline's manifest (src/cleanup/baseline.ts) and the runner install manifest.
  const manifest = installManifestFile(o.slot);
  const records = new AgentRecords([
    { label: 'home baseline', file: path.join(baselineDir(o.slot), 'manifest.json'), tree: o.slot.user.home },
    { label: 'runner install manifest', file: manifest, tree: o.slot.runnerRoot },
  ]);
  onInstallManifestSaved(manifest, (sha256) => records.announce(manifest, sha256));
  return [
    new SudoGuard({ user: o.slot.user }),
    new IntegrityGuard({
      records,
      ...(o.root ? { root: o.root } : {}),
      stateDir: o.slot.stateDir,
      excluded,
      ...(o.transientExcluded ? { transientExcluded: o.transientExcluded } : {}),
      user: o.slot.user,
      skipPids: [o.agentPid],
    }),
  ];
}
