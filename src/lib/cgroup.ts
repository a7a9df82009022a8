/**
 * Per-listener process containers: a cgroup of its own for each listener, so that everything the
 * job starts (double-forked daemons, `setsid` sessions, renamed processes) can be found and killed
 * as one set, whatever it did to its process tree.
 *
 * Three kinds, best first:
 * - `v2`: a cgroup v2 directory; `cgroup.kill` SIGKILLs every member atomically (Linux 5.14+).
 *   Works on a pure v2 host and on a hybrid host (v1 controllers plus `/sys/fs/cgroup/unified`).
 * - `v1-freezer`: a v1 freezer directory; freeze (members cannot fork while frozen), SIGKILL every
 *   pid in `cgroup.procs`, thaw so the kills land, repeat until empty.
 * - `none`: no usable cgroup (a container without cgroupfs write access); the caller falls back to
 *   sweeping /proc by uid, which the processes step does anyway.
 *
 * A leaf: it imports only other leaves.
 */
import { promises as fsp, constants as fsc, existsSync } from 'node:fs';
import path from 'node:path';

/** The kind of container a listener runs in. */
export type CgroupKind = 'v2' | 'v1-freezer' | 'none';

/** Where the host's cgroup hierarchies are mounted; undefined when absent or unusable. */
export interface CgroupSupport {
  /** Mount point of the cgroup2 hierarchy, when its child directories have `cgroup.kill`. */
  v2?: string;
  /** Mount point of the v1 freezer hierarchy. */
  v1Freezer?: string;
}

/** A process container (one cgroup directory, or nothing for kind `none`). */
export interface ProcessContainer {
  readonly kind: CgroupKind;
  /** The cgroup directory; undefined for kind `none`. */
  readonly path?: string;
  /** Moves a process (and, from then on, its future children) into the container. No-op for `none`. */
  add(pid: number): Promise<void>;
  /** Pids currently in the container ([] for `none`). */
  pids(): Promise<number[]>;
  /** SIGKILLs every member until the container is empty; returns the distinct pids killed. */
  killAll(opts?: KillAllOptions): Promise<number[]>;
  /** Kills what is left and removes the directory. Idempotent. */
  remove(opts?: KillAllOptions): Promise<void>;
}

/** Options of killAll; the wait is bounded by KILL_ALL_DEADLINE_MS and by `signal`. */
export interface KillAllOptions {
  signal?: AbortSignal;
  /** Pids never to signal directly (v1); v2's cgroup.kill cannot spare members, so never add them. */
  protectedPids?: ReadonlySet<number>;
}

/** Options of createProcessContainer; defaults: parent "runner-warden", kinds ['v2','v1-freezer']. */
export interface ContainerOptions {
  /** Parent directory, relative to each hierarchy's mount point. Created (mode 755) if missing. */
  parent?: string;
  /** Kinds to try, in order; `none` is always the last resort. */
  prefer?: Array<Exclude<CgroupKind, 'none'>>;
  /** Pre-detected support (tests, or to detect once per agent). */
  support?: CgroupSupport;
}

/** Default parent of every container the agent creates, under each hierarchy's mount point. */
export const DEFAULT_CGROUP_PARENT = 'runner-warden';

/**
 * How long killAll keeps trying before giving up: SIGKILL takes effect in microseconds unless a
 * process sits in uninterruptible sleep (a hung NFS read); ten seconds covers slow disks without
 * letting a stuck member hold the whole cleanup.
 */
export const KILL_ALL_DEADLINE_MS = 10_000;

/** Poll interval while waiting for a frozen state or for members to exit: short, it is real time. */
const POLL_MS = 5;

/** Reads /proc/self/mountinfo (or `file`) and finds the cgroup2 and v1 freezer mount points. */
export async function detectCgroupSupport(file = '/proc/self/mountinfo'): Promise<CgroupSupport> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'latin1');
  } catch {
    return {};
  }
  const support: CgroupSupport = {};
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const mountPoint = unescapeMountPath(left[4] ?? '');
    const fsType = right[0];
    const superOpts = (right[2] ?? '').split(',');
    if (fsType === 'cgroup2' && support.v2 === undefined) {
      support.v2 = mountPoint;
    } else if (fsType === 'cgroup' && superOpts.includes('freezer') && support.v1Freezer === undefined) {
      support.v1Freezer = mountPoint;
    }
  }
  return support;
}

/**
 * Creates (or reuses, after emptying it) the container `<parent>/<name>` in the best hierarchy the
 * host offers. Never throws for lack of cgroups: returns kind `none` instead.
 */
export async function createProcessContainer(name: string, opts: ContainerOptions = {}): Promise<ProcessContainer> {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(name) || name === '.' || name === '..') {
    throw new Error(`invalid cgroup name ${JSON.stringify(name)}`);
  }
  const support = opts.support ?? (await detectCgroupSupport());
  const parent = opts.parent ?? DEFAULT_CGROUP_PARENT;
  for (const kind of opts.prefer ?? ['v2', 'v1-freezer']) {
    const mount = kind === 'v2' ? support.v2 : support.v1Freezer;
    if (mount === undefined) continue;
    const dir = path.join(mount, parent, name);
    try {
      await fsp.mkdir(path.dirname(dir), { recursive: true, mode: 0o755 });
      await fsp.mkdir(dir, { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      if (kind === 'v2' && !existsSync(path.join(dir, 'cgroup.kill'))) {
        // A kernel before 5.14: no atomic kill, so v2 is no better than nothing here.
        await fsp.rmdir(dir).catch(() => undefined);
        continue;
      }
      return openProcessContainer(dir, kind);
    } catch {
      // This hierarchy is read-only here (a container without cgroupfs rights): try the next.
    }
  }
  return noneContainer;
}

/**
 * A container for an existing cgroup directory (e.g. `slot.cgroup`). The kind is taken from
 * `kind`, or guessed from the files present (`cgroup.kill` → v2, `freezer.state` → v1 freezer).
 */
export function openProcessContainer(dir: string, kind?: Exclude<CgroupKind, 'none'>): ProcessContainer {
  return new CgroupContainer(dir, kind);
}

/** Moves `pid` into `dir/cgroup.procs`. */
async function writeProcs(dir: string, pid: number): Promise<void> {
  await fsp.writeFile(path.join(dir, 'cgroup.procs'), `${pid}\n`, { flag: fsc.O_WRONLY });
}

/** Reads the member pids of a cgroup directory; [] when it is gone. */
async function readProcs(dir: string): Promise<number[]> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(dir, 'cgroup.procs'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const pids: number[] = [];
  for (const line of text.split('\n')) {
    const n = Number(line);
    if (line !== '' && Number.isInteger(n) && n > 0) pids.push(n);
  }
  return pids;
}

class CgroupContainer implements ProcessContainer {
  readonly kind: Exclude<CgroupKind, 'none'>;

  readonly path: string;

  constructor(dir: string, kind?: Exclude<CgroupKind, 'none'>) {
    this.path = dir;
    this.kind = kind ?? (existsSync(path.join(dir, 'cgroup.kill')) ? 'v2' : 'v1-freezer');
  }

  async add(pid: number): Promise<void> {
    await writeProcs(this.path, pid);
  }

  pids(): Promise<number[]> {
    return readProcs(this.path);
  }

  async killAll(opts: KillAllOptions = {}): Promise<number[]> {
    // Real time, not a Clock: this waits for the kernel to deliver SIGKILL, not for a policy timer.
    const started = Date.now();
    const killed = new Set<number>();
    const kind = this.kind;
    for (;;) {
      const members = await readProcs(this.path);
      if (members.length === 0) break;
      if (opts.signal?.aborted || Date.now() - started > KILL_ALL_DEADLINE_MS) {
        throw new Error(`cgroup ${this.path} still has ${members.length} member(s)`);
      }
      if (kind === 'v2') {
        for (const pid of members) killed.add(pid);
        await fsp.writeFile(path.join(this.path, 'cgroup.kill'), '1\n', { flag: fsc.O_WRONLY });
      } else {
        await this.freezeKillThaw(killed, opts.protectedPids);
      }
      await realSleep(POLL_MS);
    }
    return [...killed];
  }

  /** One v1 round: freeze so nothing forks, SIGKILL every member, thaw so the kills are delivered. */
  private async freezeKillThaw(killed: Set<number>, protectedPids?: ReadonlySet<number>): Promise<void> {
    const state = path.join(this.path, 'freezer.state');
    await fsp.writeFile(state, 'FROZEN\n', { flag: fsc.O_WRONLY });
    try {
      // FREEZING means some member is still being stopped; a bounded wait, then kill anyway.
      for (let i = 0; i < 200; i++) {
        const s = (await fsp.readFile(state, 'utf8')).trim();
        if (s === 'FROZEN') break;
        await realSleep(1);
      }
      for (const pid of await readProcs(this.path)) {
        if (protectedPids?.has(pid) || pid === process.pid || pid <= 1) continue;
        try {
          process.kill(pid, 'SIGKILL');
          killed.add(pid);
        } catch {
          // Already gone: what we wanted.
        }
      }
    } finally {
      await fsp.writeFile(state, 'THAWED\n', { flag: fsc.O_WRONLY });
    }
  }

  async remove(opts: KillAllOptions = {}): Promise<void> {
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await fsp.rmdir(this.path);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        if (code !== 'EBUSY' && code !== 'ENOTEMPTY') throw err;
        // Members still exiting (zombies count until reaped): kill and retry.
        await this.killAll(opts);
        await realSleep(POLL_MS * 2);
      }
    }
    await fsp.rmdir(this.path);
  }
}

const noneContainer: ProcessContainer = {
  kind: 'none',
  add: async () => undefined,
  pids: async () => [],
  killAll: async () => [],
  remove: async () => undefined,
};

/**
 * Arguments that start `cmd` already inside the container, so not even the first fork can escape
 * it: a root shell joins the cgroup, then `setpriv` drops to the user and execs the command.
 * Without a cgroup the shell just drops privileges.
 */
export function containedSpawnArgs(
  container: ProcessContainer,
  user: { uid: number; gid: number },
  cmd: string,
  args: string[],
): { cmd: string; args: string[] } {
  const drop = ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', cmd, ...args];
  if (container.path === undefined) return { cmd: drop[0] as string, args: drop.slice(1) };
  return {
    cmd: '/bin/sh',
    args: ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', container.path, ...drop],
  };
}

/** Undoes the octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) of mountinfo. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** A real pause: waiting for the kernel to act, not a policy timer. */
function realSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
