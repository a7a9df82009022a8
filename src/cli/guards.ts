/**
 * The job guards the agent runs around every listener, in order: the per-job container engine
 * (policy docker.mode), then the host guards (the sudo grant, the whole-host integrity check).
 */
import type { Logger } from '../lib/log.js';
import type { JobGuard } from '../lib/job-guard.js';
import type { Policy } from '../policy/types.js';
import type { Slot } from '../cleanup/types.js';
import { EngineGuard } from '../engine/engine-guard.js';
import { createHostGuards } from '../integrity/host-guards.js';
import { slotCgroupParent } from './process-containers.js';

/** The guards, and the engine guard alone (asked for the docker mode /status shows). */
export interface Guards {
  guards: JobGuard<Policy>[];
  engineGuard: EngineGuard;
}

/** Builds the guard list; a first boot records the system baseline as it records the home baseline. */
export async function buildGuards(o: {
  slot: Slot;
  policy: Policy;
  firstBoot: boolean;
  log: Logger;
  integrityRoot?: string;
  /** Directories the agent is deleting in the background now: left out of the integrity check. */
  transientExcluded?: () => readonly string[];
}): Promise<Guards> {
  const { slot } = o;
  const engineGuard = new EngineGuard({
    runnerUser: slot.user,
    cgroupParent: slotCgroupParent(slot.stateDir),
    stateDir: slot.stateDir,
    jobRoot: slot.jobRoot,
    runnerRoot: slot.runnerRoot,
  });
  const hostGuards = await createHostGuards({
    slot,
    policy: o.policy,
    firstBoot: o.firstBoot,
    agentPid: process.pid,
    log: o.log.child({ component: 'integrity' }),
    ...(o.integrityRoot ? { root: o.integrityRoot } : {}),
    ...(o.transientExcluded ? { transientExcluded: o.transientExcluded } : {}),
  });
  return { guards: [engineGuard, ...hostGuards], engineGuard };
}
