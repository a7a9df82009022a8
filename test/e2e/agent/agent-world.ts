/**
 * test/e2e/agent's worlds: the shared test world and policy without a per-job container engine
 * (docker.mode none). These tests are about the agent's lifecycle, restarts and records; starting
 * and stopping a rootless engine around every job costs seconds of CPU each on a shared machine
 * and proves nothing here (the engine has its own tests). A test that needs an engine names its
 * mode in the policy it writes.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { createWorld as createSharedWorld, testPolicy, type World, type WorldOptions } from '../../helpers/world.js';
import type { Lab } from '../../helpers/lab.js';

export { jobRecords, until, SIM_ENV, type World, type WorldOptions } from '../../helpers/world.js';

/** testPolicy with docker.mode none; `over` may set another mode. */
export function agentPolicy(lab: Lab, over: Record<string, unknown> = {}): Record<string, unknown> {
  return testPolicy(lab, { docker: { mode: 'none' }, ...over });
}

/** createWorld with agentPolicy (unless `o.policy` names one). */
export async function createWorld(o: WorldOptions = {}): Promise<World> {
  const w = await createSharedWorld(o);
  if (!o.policy) await writeFile(path.join(w.policyDir, 'test.yaml'), stringify(agentPolicy(w.lab)));
  return w;
}
