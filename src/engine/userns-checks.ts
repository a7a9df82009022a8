/**
 * What the kernel and the id mappers must allow before the runner user can make the user
 * namespace a rootless engine lives in: unprivileged user namespaces (the sysctls Debian, Ubuntu
 * and every kernel have for them), and newuidmap/newgidmap able to write the subordinate id maps
 * (setuid root, as Debian's uidmap ships them, or given cap_setuid/cap_setgid).
 */
import { promises as fsp } from 'node:fs';
import { runCommand } from '../lib/process.js';
import type { HostProblem } from './host-checks.js';

/** The kernel's switches; a missing file means the kernel has no such switch (it allows). */
export interface UsernsSources {
  /** 0 forbids every new user namespace. */
  maxUserNamespaces: string;
  /** Debian's and older Ubuntu's switch for unprivileged users (0 forbids). */
  unprivilegedClone: string;
  /** Ubuntu 23.10+: 1 forbids unprivileged user namespaces to programs without an AppArmor profile. */
  apparmorRestrict: string;
}

export const DEFAULT_USERNS_SOURCES: UsernsSources = {
  maxUserNamespaces: '/proc/sys/user/max_user_namespaces',
  unprivilegedClone: '/proc/sys/kernel/unprivileged_userns_clone',
  apparmorRestrict: '/proc/sys/kernel/apparmor_restrict_unprivileged_userns',
};

/** getcap reads one file's capabilities; it does no I/O beyond that, a second is generous. */
const GETCAP_TIMEOUT_MS = 5_000;

async function readSwitch(file: string): Promise<string | undefined> {
  return (await fsp.readFile(file, 'utf8').catch(() => undefined))?.trim();
}

/** Why the runner user cannot create a user namespace on this kernel; [] when it can. */
export async function usernsProblems(src: UsernsSources = DEFAULT_USERNS_SOURCES): Promise<HostProblem[]> {
  const problems: HostProblem[] = [];
  if ((await readSwitch(src.maxUserNamespaces)) === '0') {
    problems.push({
      what: `user namespaces are disabled (${src.maxUserNamespaces} is 0): rootlesskit cannot start`,
      fix: 'sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)',
    });
  }
  if ((await readSwitch(src.unprivilegedClone)) === '0') {
    problems.push({
      what: `unprivileged user namespaces are disabled (${src.unprivilegedClone} is 0)`,
      fix: 'sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/)',
    });
  }
  if ((await readSwitch(src.apparmorRestrict)) === '1') {
    problems.push({
      what: `AppArmor restricts unprivileged user namespaces (${src.apparmorRestrict} is 1) and rootlesskit has no profile allowing them`,
      fix: 'add an AppArmor profile for /usr/bin/rootlesskit with "userns," (or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0)',
    });
  }
  return problems;
}

/**
 * Why `file` (newuidmap or newgidmap) cannot map the runner user's subordinate ids: it must be
 * setuid root or carry `cap` (cap_setuid / cap_setgid) as a file capability.
 */
export async function idMapperProblem(file: string, cap: 'cap_setuid' | 'cap_setgid'): Promise<HostProblem | undefined> {
  const st = await fsp.stat(file).catch(() => undefined);
  if (!st) return undefined;
  if (st.uid === 0 && (st.mode & 0o4000) !== 0) return undefined;
  const caps = await runCommand('getcap', [file], { timeoutMs: GETCAP_TIMEOUT_MS }).catch(() => undefined);
  if (caps?.code === 0 && caps.stdout.includes(cap)) return undefined;
  return {
    what: `${file} is neither setuid root nor given ${cap}: it cannot map the runner user's subordinate ids`,
    fix: `chown root ${file} && chmod u+s ${file} (Debian's uidmap ships it so), or setcap ${cap}+ep ${file}`,
  };
}
