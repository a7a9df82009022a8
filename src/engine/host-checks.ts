/**
 * What a host must offer before a job may get a rootless engine of its own, and whether the
 * runner user could reach an engine that is root. Each problem comes with the one-line fix an
 * operator applies; the guard turns them into a GuardUnfitError (the host is quarantined, never
 * silently given the host's engine instead).
 */
import { constants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { idMapperProblem, usernsProblems, type UsernsSources } from './userns-checks.js';

/** One reason the host cannot give the policy's docker mode. */
export interface HostProblem {
  what: string;
  fix: string;
}

/** Where the checks look; every path is injectable so tests use their own roots. */
export interface EngineHostPaths {
  /** Directories searched for dockerd, rootlesskit, slirp4netns, newuidmap. */
  binDirs: string[];
  subuid: string;
  subgid: string;
  group: string;
  tun: string;
  /** Sockets of engines that run as root (the host's dockerd, containerd, podman). */
  hostSockets: string[];
  /** The runner's own "am I in a container" test reads this file (default /proc/1/cgroup). */
  procOneCgroup?: string;
  /** The kernel's user-namespace switches (default DEFAULT_USERNS_SOURCES, under /proc/sys). */
  userns?: UsernsSources;
}

/** Debian's locations; the host sockets are completed with the policy's cleanup socket. */
export const DEFAULT_ENGINE_HOST_PATHS: EngineHostPaths = {
  binDirs: ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'],
  subuid: '/etc/subuid',
  subgid: '/etc/subgid',
  group: '/etc/group',
  tun: '/dev/net/tun',
  hostSockets: ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock', '/run/podman/podman.sock'],
  procOneCgroup: '/proc/1/cgroup',
};

/** The user namespace needs 65,536 subordinate ids: images use uids up to 65,534 (nobody). */
export const MIN_SUBORDINATE_IDS = 65_536;

/** The binaries a rootless engine needs, with the Debian package that ships each. */
const BINARIES: Array<{ name: string; pkg: string; mapper?: 'cap_setuid' | 'cap_setgid' }> = [
  { name: 'dockerd', pkg: 'docker.io' },
  { name: 'containerd', pkg: 'containerd' },
  { name: 'rootlesskit', pkg: 'rootlesskit' },
  { name: 'slirp4netns', pkg: 'slirp4netns' },
  { name: 'newuidmap', pkg: 'uidmap', mapper: 'cap_setuid' },
  { name: 'newgidmap', pkg: 'uidmap', mapper: 'cap_setgid' },
];

/** The runner user as the checks need it. */
export interface RunnerUser {
  name: string;
  uid: number;
  gid: number;
}

/** Finds an executable in `dirs`; undefined when absent. */
export async function findBinary(name: string, dirs: string[]): Promise<string | undefined> {
  for (const dir of dirs) {
    const file = path.join(dir, name);
    try {
      await fsp.access(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** True when dockerd is installed (what `docker.mode: auto` resolves on). */
export async function engineInstalled(paths: EngineHostPaths = DEFAULT_ENGINE_HOST_PATHS): Promise<boolean> {
  return (await findBinary('dockerd', paths.binDirs)) !== undefined;
}

/** A subordinate id range of the user: `start` and `count`. */
export interface SubidRange {
  start: number;
  count: number;
}

/** Reads the user's ranges from an /etc/subuid-style file (by name or by uid). */
export async function readSubids(file: string, user: RunnerUser): Promise<SubidRange[]> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  const out: SubidRange[] = [];
  for (const line of text.split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if (who !== user.name && who !== String(user.uid)) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isSafeInteger(s) && Number.isSafeInteger(c) && c > 0) out.push({ start: s, count: c });
  }
  return out;
}

/** The user's groups: its primary gid and every group that lists it as a member. */
export async function userGroups(groupFile: string, user: RunnerUser): Promise<Map<number, string>> {
  const text = await fsp.readFile(groupFile, 'utf8').catch(() => '');
  const out = new Map<number, string>();
  for (const line of text.split('\n')) {
    const [name = '', , gid, members = ''] = line.split(':');
    const g = Number(gid);
    if (!Number.isSafeInteger(g)) continue;
    if (g === user.gid || members.split(',').includes(user.name)) out.set(g, name);
  }
  return out;
}

/** Could `user` (with `groups`) open this file for writing (a socket connect needs write)? */
function canWrite(st: { uid: number; gid: number; mode: number }, user: RunnerUser, groups: Map<number, string>): boolean {
  if (st.uid === user.uid) return (st.mode & 0o200) !== 0;
  if (groups.has(st.gid)) return (st.mode & 0o020) !== 0;
  return (st.mode & 0o002) !== 0;
}

/**
 * Ways the runner user reaches an engine that runs as root: a writable host socket (by owner,
 * group or mode), or membership of the `docker` group (the socket may appear after a restart).
 */
export async function rootEngineReach(user: RunnerUser, paths: EngineHostPaths): Promise<HostProblem[]> {
  const groups = await userGroups(paths.group, user);
  const problems: HostProblem[] = [];
  for (const [gid, name] of groups) {
    if (name === 'docker' && gid !== user.gid) {
      problems.push({
        what: `runner user ${user.name} is in the docker group, which is root on this host`,
        fix: `gpasswd -d ${user.name} docker`,
      });
    }
  }
  for (const sock of new Set(paths.hostSockets)) {
    const st = await fsp.stat(sock).catch(() => undefined);
    if (!st || !st.isSocket()) continue;
    if (!canWrite(st, user, groups)) continue;
    const why =
      st.uid === user.uid ? 'owns it' : groups.has(st.gid) ? `is in its group ${groups.get(st.gid) ?? st.gid}` : 'finds it world-writable';
    problems.push({
      what: `runner user ${user.name} can reach the root engine socket ${sock} (it ${why})`,
      fix: `chmod 660 ${sock} and keep ${user.name} out of its group (${st.gid})`,
    });
  }
  return problems;
}

/** Everything `isolated` needs; an empty list means a rootless engine can start. */
export async function isolatedHostProblems(user: RunnerUser, paths: EngineHostPaths): Promise<HostProblem[]> {
  const problems: HostProblem[] = [];
  for (const b of BINARIES) {
    const file = await findBinary(b.name, paths.binDirs);
    if (file === undefined) problems.push({ what: `${b.name} is not installed`, fix: `apt-get install ${b.pkg}` });
    else if (b.mapper) {
      const p = await idMapperProblem(file, b.mapper);
      if (p) problems.push(p);
    }
  }
  problems.push(...(await usernsProblems(paths.userns)));
  for (const [file, kind] of [
    [paths.subuid, 'uids'],
    [paths.subgid, 'gids'],
  ] as const) {
    const ranges = await readSubids(file, user);
    if (!ranges.some((r) => r.count >= MIN_SUBORDINATE_IDS)) {
      problems.push({
        what: `runner user ${user.name} has no range of ${MIN_SUBORDINATE_IDS} subordinate ${kind} in ${file}`,
        fix: `usermod --add-sub${kind} <first>-<first+65535> ${user.name} (a range no other user has)`,
      });
    }
  }
  const tun = await fsp.stat(paths.tun).catch(() => undefined);
  if (!tun || !tun.isCharacterDevice()) {
    problems.push({ what: `${paths.tun} is missing`, fix: 'modprobe tun (and give the VM or container the tun device)' });
  } else {
    const rw = (m: number, shift: number): boolean => ((m >> shift) & 0o6) === 0o6;
    const groups = await userGroups(paths.group, user);
    const usable = tun.uid === user.uid ? rw(tun.mode, 6) : groups.has(tun.gid) ? rw(tun.mode, 3) : rw(tun.mode, 0);
    if (!usable) {
      problems.push({
        what: `${paths.tun} is mode ${(tun.mode & 0o777).toString(8)}: the runner user cannot open it, so the engine's network (slirp4netns) cannot start`,
        fix: `chmod 666 ${paths.tun} (Debian's default; persist it with a udev rule KERNEL=="tun", MODE="0666")`,
      });
    }
  }
  problems.push(...(await rootEngineReach(user, paths)));
  return problems;
}

/**
 * Why the runner would refuse `container:` and `services:` jobs on this host, or undefined. The
 * runner (ContainerOperationProvider) refuses them when a line of /proc/1/cgroup holds `:/docker/`
 * (it runs in a container) unless container hooks are configured: through the agent
 * (`hooks`, the guard's containerHooks) or the runner installation's `.env` (`runnerEnv`).
 */
export async function containerJobsRefused(
  paths: EngineHostPaths,
  hooks: string | undefined,
  runnerEnv?: string,
): Promise<HostProblem | undefined> {
  const cgroup = await fsp.readFile(paths.procOneCgroup ?? '/proc/1/cgroup', 'utf8').catch(() => '');
  if (!cgroup.split('\n').some((l) => l.includes(':/docker/'))) return undefined;
  if (hooks) return undefined;
  const env = runnerEnv ? await fsp.readFile(runnerEnv, 'utf8').catch(() => '') : '';
  if (/^ACTIONS_RUNNER_CONTAINER_HOOKS=\S/m.test(env)) return undefined;
  return {
    what: 'the runner runs in a container (/proc/1/cgroup names docker) and no container hooks are configured: it will refuse container: and services: jobs',
    fix: `point ACTIONS_RUNNER_CONTAINER_HOOKS at runner-warden's hooks (src/container-hooks/hooks.sh, see docs/docker.md)${runnerEnv ? ` in ${runnerEnv}` : ''}`,
  };
}
