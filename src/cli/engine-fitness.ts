/**
 * `validate` on a host config: can this host give the team policy's `docker.mode` to the
 * configured runner user? The same checks the engine guard runs at preflight and before every
 * job (binaries, setuid id mappers, subordinate ids, user namespaces, /dev/net/tun, no reach to a
 * root engine), run at image-build time so a bad image fails its pipeline, not its first boot.
 * Only when this host has the runner user (validate may run elsewhere); a policy that cannot be
 * loaded is reported by the policy's own check, not here.
 */
import { lookupUser } from '../lib/users.js';
import { silentLogger } from '../lib/log.js';
import type { HostConfig, Policy } from '../policy/types.js';
import { PolicyStore } from '../policy/watch.js';
import {
  DEFAULT_ENGINE_HOST_PATHS,
  engineInstalled,
  isolatedHostProblems,
  rootEngineReach,
  type EngineHostPaths,
} from '../engine/host-checks.js';

/** What validate prints: `errors` make the file invalid, `notes` only inform. */
export interface EngineFitness {
  errors: string[];
  notes: string[];
}

/** The engine's host checks for `config`'s runner user under its team's policy; paths are injectable for tests. */
export async function engineFitness(
  config: HostConfig,
  configFile: string,
  o: { paths?: EngineHostPaths; passwdFile?: string } = {},
): Promise<EngineFitness> {
  const out: EngineFitness = { errors: [], notes: [] };
  const user = await lookupUser(config.runner.user, o.passwdFile);
  if (!user) return out;
  let policy: Policy;
  try {
    const store = new PolicyStore({ dir: config.policyDir, team: config.team, log: silentLogger() });
    await store.load();
    policy = store.current();
  } catch {
    return out;
  }
  const base = o.paths ?? DEFAULT_ENGINE_HOST_PATHS;
  const paths = { ...base, hostSockets: [...base.hostSockets, policy.cleanup.containers.socket] };
  const mode = policy.docker.mode;
  const line = (what: string, fix: string): string => `${configFile}: docker.mode ${mode}: ${what} (fix: ${fix})`;
  if (mode === 'isolated') {
    for (const p of await isolatedHostProblems(user, paths)) out.errors.push(line(p.what, p.fix));
  } else if (mode === 'none') {
    for (const p of await rootEngineReach(user, paths)) out.errors.push(line(p.what, p.fix));
  } else if (mode === 'auto' && (await engineInstalled(paths))) {
    // auto never fails a host: it gives jobs no engine, and says why.
    for (const p of await isolatedHostProblems(user, paths))
      out.notes.push(`${line(p.what, p.fix)}; until fixed, jobs on this host get no engine`);
  }
  return out;
}
