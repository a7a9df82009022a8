/**
 * `runner.user` must be an unprivileged account: the job runs as it, and the whole design (a root
 * agent cleaning after an untrusted job) assumes the job cannot act as root. Refused: uid 0, the
 * root group, and membership of a group that reaches root, unless the team's policy grants that
 * reach on purpose (runner.sudo allow/recycle for the sudo groups, docker.mode host for docker).
 * A field the policy does not have counts as deny.
 */
import { ConfigError } from '../lib/errors.js';
import { groupsOfUser, lookupUser, type UserInfo } from '../lib/users.js';
import type { HostConfig } from '../policy/types.js';
import { PolicyStore } from '../policy/watch.js';
import { silentLogger } from '../lib/log.js';

/** Groups whose members may run anything as root through sudo (Debian, RHEL, old Ubuntu). */
export const SUDO_GROUPS: readonly string[] = ['sudo', 'wheel', 'admin'];
/** Groups whose members reach root through the host's container engine socket. */
export const ENGINE_GROUPS: readonly string[] = ['docker'];
/**
 * Groups that reach root whatever the policy says: raw block devices (disk), the root group's
 * writable files, and engines that start privileged guests (lxd, incus, libvirt).
 */
export const ROOT_EQUIVALENT_GROUPS: readonly string[] = ['root', 'disk', 'lxd', 'incus-admin', 'libvirt'];

/** What the team's policy allows the runner user (absent fields deny). */
export interface RunnerGrants {
  sudo?: string;
  dockerMode?: string;
}

/** Reads the grants from the team's policy; a policy that cannot be loaded grants nothing. */
export async function policyGrants(config: HostConfig): Promise<RunnerGrants> {
  try {
    const store = new PolicyStore({ dir: config.policyDir, team: config.team, log: silentLogger() });
    await store.load();
    const p = store.current() as { runner?: { sudo?: string }; docker?: { mode?: string } };
    return { ...(p.runner?.sudo ? { sudo: p.runner.sudo } : {}), ...(p.docker?.mode ? { dockerMode: p.docker.mode } : {}) };
  } catch {
    return {};
  }
}

/** The reasons `user` is too privileged to run jobs under `grants`; [] when it is fine. */
export async function privilegeProblems(user: UserInfo, grants: RunnerGrants, groupFile?: string): Promise<string[]> {
  const problems: string[] = [];
  if (user.uid === 0) problems.push(`uid 0 (root)`);
  for (const g of await groupsOfUser(user, groupFile)) {
    if (g.gid === 0 || ROOT_EQUIVALENT_GROUPS.includes(g.name)) problems.push(`member of group "${g.name}", which reaches root`);
    else if (SUDO_GROUPS.includes(g.name) && grants.sudo !== 'allow' && grants.sudo !== 'recycle') {
      problems.push(`member of group "${g.name}" (sudo to root) while the policy's runner.sudo is ${grants.sudo ?? 'deny (absent)'}`);
    } else if (ENGINE_GROUPS.includes(g.name) && grants.dockerMode !== 'host') {
      problems.push(
        `member of group "${g.name}" (root through the engine socket) while the policy's docker.mode is ${grants.dockerMode ?? 'absent'}, not host`,
      );
    }
  }
  return problems;
}

/**
 * Throws ConfigError naming the file and `runner.user` when the configured user is privileged.
 * A user this host does not have is left to the caller (run refuses it; validate may run elsewhere).
 */
export async function checkRunnerUser(
  config: HostConfig,
  configFile: string,
  o: { passwdFile?: string; groupFile?: string } = {},
): Promise<void> {
  const user = await lookupUser(config.runner.user, o.passwdFile);
  if (!user) return;
  const problems = await privilegeProblems(user, await policyGrants(config), o.groupFile);
  if (problems.length === 0) return;
  throw new ConfigError(`runner.user "${config.runner.user}" is privileged`, configFile, [
    `${configFile}: runner.user: expected an unprivileged user, got "${config.runner.user}" (${problems.join('; ')})`,
  ]);
}
