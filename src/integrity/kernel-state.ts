/**
 * Kernel and network state read from /proc (and /proc/sys): loaded modules, the mount table,
 * routes, chosen sysctls and binfmt_misc entries, listening sockets, processes. Each reader returns
 * `<kind>:<key>` → value objects; the comparison decides what a difference means.
 * Every file is read synchronously (proc-table.ts says why); a few hundred processes cost a few
 * milliseconds.
 */
import path from 'node:path';
import { SYSCTLS } from './surfaces.js';
import { linkSync, listSync, readProcFile, readProcTable, readTextSync, type ProcEntry } from './proc-table.js';

type Objects = Record<string, string>;

/**
 * Loaded kernel modules: `module:<name>` → its state, and its taint flags when the kernel printed
 * any (`Live (OE)`: out of tree, unsigned; src/integrity/compare.ts never excepts those).
 */
export function readModules(proc: string): Objects {
  const out: Objects = {};
  for (const line of readTextSync(path.join(proc, 'modules')).split('\n')) {
    const f = line.split(' ');
    const taint = f.slice(6).find((x) => /^\([A-Z]+\)$/.test(x));
    if (f[0]) out[`module:${f[0]}`] = `${f[4] ?? ''}${taint ? ` ${taint}` : ''}`;
  }
  return out;
}

/**
 * The mount table of the reading process's namespace: `mount:<mount point>` → each mount stacked
 * there as `<fstype> <source> <root within source> <options>`.
 */
export function readMounts(proc: string, excluded: readonly string[] = []): Objects {
  const out: Objects = {};
  // Mounts inside the runner root or the agent's directories are cleanup's (it unmounts them).
  const inside = (mp: string): boolean => excluded.some((e) => mp === e || mp.startsWith(`${e}/`));
  for (const line of readTextSync(path.join(proc, 'self/mountinfo')).split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const f = pre.split(' ');
    const g = post.split(' ');
    const mp = unescapeMount(f[4] ?? '');
    if (inside(mp) || systemdBinfmt(mp, g[0])) continue;
    const desc = `${g[0] ?? ''} ${unescapeMount(g[1] ?? '')} ${unescapeMount(f[3] ?? '')} ${(f[5] ?? '')
      .split(',')
      .filter((o) => o !== 'relatime' && o !== 'noatime')
      .join(',')}`;
    const key = `mount:${mp}`;
    out[key] = out[key] === undefined ? desc : `${out[key]} | ${desc}`;
  }
  return out;
}

/** Where the kernel's binfmt_misc handlers are read (readSysctls). */
const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';

/**
 * systemd's automount of the binfmt_misc directory and the mount it makes on first access (the
 * check's own read triggers it): the host's, whenever they appear. Anything else mounted there (a
 * tmpfs, a bind of an empty directory) hides the registered handlers from readSysctls, and is drift.
 */
function systemdBinfmt(mp: string, fstype: string | undefined): boolean {
  return mp === BINFMT_DIR && (fstype === 'autofs' || fstype === 'binfmt_misc');
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The IPv4 and IPv6 main routing tables: `route:<dev> <dest>/<len> via <gw>` → metric. */
export function readRoutes(proc: string): Objects {
  const out: Objects = {};
  const v4 = readTextSync(path.join(proc, 'net/route')).split('\n').slice(1);
  for (const line of v4) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const dest = hexIp4(f[1] as string);
    const gw = hexIp4(f[2] as string);
    const len = popcount(parseInt(f[7] as string, 16));
    out[`route:${f[0]} ${dest}/${len} via ${gw}`] = `metric ${f[6]}`;
  }
  for (const line of readTextSync(path.join(proc, 'net/ipv6_route')).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const dev = f[9] as string;
    if (dev === 'lo') continue;
    out[`route:${dev} ${hexIp6(f[0] as string)}/${parseInt(f[1] as string, 16)} via ${hexIp6(f[4] as string)}`] =
      `metric ${parseInt(f[5] as string, 16)}`;
  }
  return out;
}

/** The chosen sysctls (`sysctl:kernel.core_pattern`) and binfmt_misc registrations (`binfmt:<name>`). */
export function readSysctls(proc: string): Objects {
  const out: Objects = {};
  for (const name of SYSCTLS) {
    const v = readProcFile(path.join(proc, 'sys', name));
    if (v !== undefined) out[`sysctl:${name.replaceAll('/', '.')}`] = v.trim().replace(/\s+/g, ' ');
  }
  const binfmt = path.join(proc, BINFMT_DIR.slice('/proc/'.length));
  for (const name of listSync(binfmt)) {
    if (name === 'register' || name === 'status') continue;
    const v = readProcFile(path.join(binfmt, name));
    if (v !== undefined) out[`binfmt:${name}`] = v.trim().replace(/\s+/g, ' ');
  }
  return out;
}

/** Socket inodes that the given processes hold open. */
function socketsOf(proc: string, pids: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const pid of pids) {
    for (const fd of listSync(path.join(proc, pid, 'fd'))) {
      const m = /^socket:\[(\d+)\]$/.exec(linkSync(path.join(proc, pid, 'fd', fd)) ?? '');
      if (m) out.add(m[1] as string);
    }
  }
  return out;
}

/**
 * True when `proc` shows the machine's kernel threads (pid 2 is kthreadd): the reader is in the
 * machine's own pid namespace. In a container it is not, and the network namespace it reads may
 * be the host's (`--network host`, a pod's `hostNetwork`), full of sockets of processes it cannot
 * see.
 */
export function seesWholeMachine(proc: string): boolean {
  return /^Name:\s*kthreadd$/m.test(readProcFile(path.join(proc, '2', 'status')) ?? '');
}

/**
 * Listening TCP sockets and unconnected UDP sockets: `listener:<proto>:<addr>:<port>` → `user N`.
 * Sockets held by `skipPids` (the agent's health server) are left out. Where the reader does not
 * see the whole machine (a container), only sockets some process it can see holds are listed: the
 * others belong to processes outside its pid namespace (the host's or other containers' on a
 * shared network), which no job here started. On a whole machine every listener counts, also one
 * no process holds (a kernel socket a root job made, such as a WireGuard port).
 */
export function readListeners(proc: string, userName: (uid: number) => string, skipPids: readonly number[] = []): Objects {
  const out: Objects = {};
  const own = socketsOf(proc, skipPids.map(String));
  const visible = seesWholeMachine(proc)
    ? undefined
    : socketsOf(
        proc,
        listSync(proc).filter((n) => /^\d+$/.test(n)),
      );
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6'] as const) {
    const lines = readTextSync(path.join(proc, 'net', proto))
      .split('\n')
      .slice(1);
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const [lAddr, lPort] = (f[1] as string).split(':');
      const [, rPort] = (f[2] as string).split(':');
      const listening = proto.startsWith('tcp') ? f[3] === '0A' : rPort === '0000';
      if (!listening || !lAddr || !lPort || own.has(f[9] as string)) continue;
      if (visible && !visible.has(f[9] as string)) continue;
      const addr = proto.endsWith('6') ? hexIp6(lAddr) : hexIp4(lAddr);
      out[`listener:${proto}:${addr}:${parseInt(lPort, 16)}`] = `user ${userName(Number(f[7]))}`;
    }
  }
  return out;
}

/** What the process reader leaves out, and what it reports one by one. */
export interface ProcessFilter {
  /**
   * Processes started at or after this time (ms since the epoch: the job's start) are reported
   * each under its own key, `process:<user>:<exe>#<pid>`, also when a process of the same user and
   * executable was there at baseline: a job's root daemon cannot hide behind the image's own
   * python3 or sshd. Undefined for the baseline and at preflight.
   */
  newSinceMs?: number;
  /** True for uids that are the job's (the runner user and its subordinate ranges): cleanup's. */
  jobUid: (uid: number) => boolean;
  /** Pids never reported (the agent itself). */
  skipPids: ReadonlySet<number>;
  /** Systemd units whose processes are never drift (daily timers, cron). */
  skipUnits: ReadonlySet<string>;
  /**
   * Keys the baseline holds: a process keyed so and started before `newSinceMs` can be no drift
   * (a process counts only when new), so its unit is not read for it. Undefined: read every unit.
   */
  known?: (key: string) => boolean;
  /** The processes, when the caller read /proc already (proc-table.ts); else read now. */
  table?: readonly ProcEntry[];
  /**
   * Where processes started since the job and left out only for their unit (skipUnits, a session
   * scope) go, for the caller to confirm with systemd. Undefined: they are left out unconfirmed.
   */
  unitClaims?: UnitClaim[];
}

/**
 * User-space processes: `process:<user>:<exe>` → `pid <pid> unit <unit>` (one pid shown per key).
 * Kernel threads (no exe) are left out.
 */
export function readProcesses(proc: string, userName: (uid: number) => string, filter: ProcessFilter): Objects {
  const out: Objects = {};
  const table = filter.table ?? readProcTable(proc);
  // The agent's own children (cleanup tools, the trash's deletion) are not drift. A job's
  // processes are not among them after cleanup: orphans are re-parented to init, not the agent.
  const parent = new Map<number, number>(table.map((e) => [e.pid, e.ppid]));
  const bootMs = filter.newSinceMs === undefined ? 0 : bootTimeMs(readProcFile(path.join(proc, 'stat')) ?? '');
  const starts = new Map<number, number | undefined>();
  const startOf = (p: number): number | undefined => {
    if (!starts.has(p)) starts.set(p, startedAtMs(readProcFile(path.join(proc, String(p), 'stat')) ?? '', bootMs));
    return starts.get(p);
  };
  const ours = (pid: number): boolean => {
    for (let p = pid, n = 0; p > 0 && n < 64; p = parent.get(p) ?? 0, n++) if (filter.skipPids.has(p)) return true;
    return false;
  };
  for (const { pid, uids } of table) {
    // Effective first, then real, saved, file-system: a setuid-root process a job started is root's, not the job's.
    const uid = [uids[1], uids[0], uids[2], uids[3]].find((u) => !filter.jobUid(u));
    if (uid === undefined || ours(pid)) continue;
    const exe = linkSync(path.join(proc, String(pid), 'exe'));
    if (!exe) continue;
    const key = `process:${userName(uid)}:${exe.replace(/ \(deleted\)$/, '')}`;
    // init is started once, by the kernel.
    const started = filter.newSinceMs !== undefined && pid !== 1 ? startOf(pid) : undefined;
    const isNew = started !== undefined && started >= (filter.newSinceMs as number);
    if (!isNew && filter.known?.(key)) {
      // Present at baseline and not the job's: no drift whatever its unit (cgroup files cost the most).
      out[key] ??= `pid ${pid}`;
      continue;
    }
    const cgroup = cgroupPath(readProcFile(path.join(proc, String(pid), 'cgroup')) ?? '');
    const unit = unitOf(cgroup);
    const value = `pid ${pid}${unit ? ` unit ${unit}` : ''}`;
    // Started since the job and not by an older process: what a job leaves behind.
    const own: Objects =
      isNew && !descendsFromOlder(String(pid), parent, startOf, filter.newSinceMs as number)
        ? { [`${key}#${pid}`]: `${value} started ${new Date(started).toISOString()}` }
        : {};
    // A process of the daily timers or cron, and a login during the job (logind's session scopes),
    // are not the job's. A root job can make a cgroup of any name, though: such a process started
    // since the job counts unless systemd confirms the unit (unitClaims, confirmUnits).
    const skipped = unit !== undefined && filter.skipUnits.has(unit);
    const session = /^session-\d+\.scope$/.test(unit ?? '');
    if ((skipped || session) && Object.keys(own).length > 0) {
      filter.unitClaims?.push({ unit: unit as string, cgroup, objects: skipped ? { [key]: value, ...own } : own });
      if (!skipped) out[key] ??= value;
      continue;
    }
    if (skipped) continue;
    out[key] ??= value;
    Object.assign(out, own);
  }
  return out;
}

/** Processes left out for their unit, pending systemd's word that the unit is real. */
export interface UnitClaim {
  unit: string;
  /** The process's cgroup path. */
  cgroup: string;
  /** What the process adds when the unit is not confirmed. */
  objects: Objects;
}

/**
 * A process some older process started: a descendant of a process (other than init) that was
 * running before the job, such as a daemon's workers and helpers (udevd on a device event, a
 * loop's `sleep`). A job cannot choose its parent: what it leaves behind is re-parented to init
 * once the listener is gone, so it is still counted.
 */
function descendsFromOlder(
  pid: string,
  parent: ReadonlyMap<number, number>,
  startOf: (pid: number) => number | undefined,
  since: number,
): boolean {
  for (let p = parent.get(Number(pid)), n = 0; p !== undefined && p > 1 && n < 64; p = parent.get(p), n++) {
    const started = startOf(p);
    if (started !== undefined && started < since) return true;
  }
  return false;
}

/** USER_HZ, the unit of /proc/<pid>/stat start times: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_S = 100;

/** Boot time from /proc/stat `btime` (whole seconds), in ms. */
function bootTimeMs(stat: string): number {
  return Number(/^btime (\d+)$/m.exec(stat)?.[1] ?? 0) * 1000;
}

/** A process's start time (field 22 of /proc/<pid>/stat, after the command's parenthesis), in ms. */
function startedAtMs(stat: string, bootMs: number): number | undefined {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[19]);
  return bootMs > 0 && Number.isFinite(ticks) ? bootMs + (ticks * 1000) / CLOCK_TICKS_PER_S : undefined;
}

/** A process's cgroup path from its /proc cgroup file (the v2 line, else name=systemd's). */
export function cgroupPath(cgroup: string): string {
  const line = cgroup.split('\n').find((l) => l.startsWith('0::')) ?? cgroup.split('\n').find((l) => l.includes(':name=systemd:'));
  return line?.split(':').slice(2).join(':') ?? '';
}

/** The systemd unit of a cgroup path (its last `.service` or `.scope` segment). */
export function unitOf(cgroup: string): string | undefined {
  const segs = cgroup.split('/');
  for (let i = segs.length - 1; i >= 0; i--) {
    const s = segs[i] as string;
    if (/\.(service|scope)$/.test(s)) return s;
  }
  return undefined;
}

function hexIp4(h: string): string {
  const n = parseInt(h, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

function hexIp6(h: string): string {
  if (h.length !== 32) return h;
  // /proc/net/tcp6 prints four 32-bit words in host (little-endian) order; ipv6_route prints bytes in order.
  return (
    h
      .match(/.{4}/g)
      ?.map((g) => g.replace(/^0+(?=.)/, ''))
      .join(':')
      .replace(/(^|:)0(:0)+(:|$)/, '::') ?? h
  );
}

function popcount(n: number): number {
  let c = 0;
  for (let x = n >>> 0; x; x &= x - 1) c++;
  return c;
}
