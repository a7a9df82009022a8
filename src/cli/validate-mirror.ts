/**
 * `validate` on a host config: can the team policy's image cache cap (`docker.mirrorCapGiB`) work
 * on this host? Only for a loopback `docker.mirror` (this host's own cache, the one the agent
 * prunes), and only when this host has the config's runner user, as for the engine's checks:
 * validate run elsewhere (a workstation) would measure the wrong disks. Each finding names the policy file that set the field (or the team's file when the
 * value is the default), the field, what was found and what was expected; errors make the host
 * config invalid (validate puts the host config's name before each line), warnings are printed. A policy that cannot be loaded is reported by the
 * policy's own check, not here.
 */
import path from 'node:path';
import { silentLogger } from '../lib/log.js';
import { lookupUser } from '../lib/users.js';
import type { HostConfig } from '../policy/types.js';
import { PolicyStore } from '../policy/watch.js';
import { loadPolicy } from '../policy/load.js';
import { mirrorDebugAddress } from '../engine/mirror-metrics.js';
import { DEFAULT_MIRROR_STORAGE, gibToBytes } from '../engine/mirror-checks.js';
import { mirrorCapProblems } from '../engine/mirror-cap.js';

/** What validate prints: `errors` make the file invalid, `warnings` only inform. */
export interface MirrorCapFitness {
  errors: string[];
  warnings: string[];
}

/** The cap's findings for `config`'s team policy; `storage` is the cache's store (default the packaged one). */
export async function mirrorCapFitness(config: HostConfig, o: { storage?: string; passwdFile?: string } = {}): Promise<MirrorCapFitness> {
  const out: MirrorCapFitness = { errors: [], warnings: [] };
  if (!(await lookupUser(config.runner.user, o.passwdFile))) return out;
  const store = new PolicyStore({ dir: config.policyDir, team: config.team, log: silentLogger() });
  try {
    await store.load();
  } catch {
    return out;
  }
  const policy = store.current();
  if (!mirrorDebugAddress(policy.docker.mirror)) return out;
  const teamFile = store.status().file;
  const sources = teamFile
    ? (await loadPolicy(teamFile, { policyDir: config.policyDir, team: config.team }).catch(() => undefined))?.sources
    : undefined;
  const fileOf = (field: string): string =>
    sources?.get(field) ?? `${teamFile ?? path.join(config.policyDir, `${config.team}.yaml`)} (default value)`;
  const findings = await mirrorCapProblems({
    capBytes: gibToBytes(policy.docker.mirrorCapGiB),
    storage: o.storage ?? DEFAULT_MIRROR_STORAGE,
    workDir: path.join(config.runner.root, '_work'),
    minFreeDiskPercent: policy.limits.minFreeDiskPercent,
  });
  for (const f of findings) {
    const line = `${fileOf(f.field)}: ${f.field}: expected ${f.expected}, got ${policy.docker.mirrorCapGiB}: ${f.what}`;
    (f.severity === 'error' ? out.errors : out.warnings).push(line);
  }
  return out;
}
