/**
 * The process table, read from /proc. Only `/proc/<pid>/status` and `/proc/<pid>/stat` are read:
 * never `cwd`, `root`, `exe` or `fd/*`, which are links into the job's files, and nothing outside
 * the proc root. A process that exits while it is read is simply absent from the result.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';

/** One process as /proc shows it. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  /** Real, effective, saved and filesystem uid (the Uid: line of status). */
  uids: [number, number, number, number];
  /** The kernel's short name (16 bytes at most); `exec -a` changes argv[0], not this. */
  comm: string;
  /** One-letter state from stat: R, S, D, Z (zombie), T (stopped), t, X, I... */
  state: string;
  /** Start time in clock ticks since boot (field 22 of stat); with the pid it identifies a process. */
  startTime: number;
}

/** The proc root used by default. */
export const PROC_ROOT = '/proc';

/** Pids of every process (thread-group leaders only: threads are not listed at the top). */
export async function listPids(procRoot = PROC_ROOT): Promise<number[]> {
  const names = await fsp.readdir(procRoot);
  const pids: number[] = [];
  for (const name of names) {
    if (/^[1-9][0-9]*$/.test(name)) pids.push(Number(name));
  }
  return pids;
}

/** Reads one process; undefined when it is gone (or was never there). */
export async function readProc(pid: number, procRoot = PROC_ROOT): Promise<ProcInfo | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const dir = path.join(procRoot, String(pid));
  let stat: string;
  let status: string;
  try {
    [stat, status] = await Promise.all([fsp.readFile(path.join(dir, 'stat'), 'latin1'), fsp.readFile(path.join(dir, 'status'), 'latin1')]);
  } catch {
    return undefined;
  }
  return parseProc(pid, stat, status);
}

/** Parses the stat and status texts of one process; exported for tests. */
export function parseProc(pid: number, stat: string, status: string): ProcInfo | undefined {
  // comm may hold spaces and ')' itself: it runs from the first '(' to the LAST ')'.
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const comm = stat.slice(open + 1, close);
  const rest = stat.slice(close + 2).split(' ');
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const state = rest[0] ?? '?';
  const ppid = Number(rest[1]);
  const startTime = Number(rest[19]);
  const uidLine = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
  if (!uidLine) return undefined;
  const uids = uidLine.slice(1, 5).map(Number) as [number, number, number, number];
  return { pid, ppid, uids, comm, state, startTime };
}

/** Every readable process, optionally filtered. */
export async function listProcesses(filter: (p: ProcInfo) => boolean = () => true, procRoot = PROC_ROOT): Promise<ProcInfo[]> {
  const pids = await listPids(procRoot);
  const out: ProcInfo[] = [];
  // Batches keep the thread pool busy without opening thousands of files at once.
  const BATCH = 64;
  for (let i = 0; i < pids.length; i += BATCH) {
    const infos = await Promise.all(pids.slice(i, i + BATCH).map((p) => readProc(p, procRoot)));
    for (const info of infos) if (info && filter(info)) out.push(info);
  }
  return out;
}

/**
 * True when the process belongs to `uid` by any of its four uids: a job that runs a setuid
 * program keeps its real uid, one that drops privileges keeps its saved uid.
 */
export function ownedBy(p: ProcInfo, uid: number): boolean {
  return p.uids.includes(uid);
}

/** True for a process that is already dead and only waits to be reaped. */
export function isZombie(p: ProcInfo): boolean {
  return p.state === 'Z' || p.state === 'X';
}

/** Live (non-zombie) processes of `uid`. */
export function processesOfUid(uid: number, procRoot = PROC_ROOT): Promise<ProcInfo[]> {
  return listProcesses((p) => ownedBy(p, uid) && !isZombie(p), procRoot);
}
