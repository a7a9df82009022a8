/**
 * The process table, read from /proc. Only `/proc/<pid>/status` and `/proc/<pid>/stat` are read:
 * never `cwd`, `root`, `exe` or `fd/*`, which are links into the job's files, and nothing outside
 * the proc root. A process that exits while it is read is simply absent from the result.
 */
import { promises as fsp, closeSync, openSync, readSync } from 'node:fs';
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

/**
 * Processes read per turn of the event loop. A sync read of a /proc file takes microseconds
 * (the kernel formats it from memory); the thread pool's open/fstat/read/close round trips made
 * one scan of 100 processes take 30-140 ms on a loaded host, against 2-3 ms read in place. 256
 * keeps each turn to a few ms on a host with thousands of processes.
 */
const SYNC_BATCH = 256;

/**
 * Listings of /proc per scan, at most: each after the first reads only pids not seen yet, so a
 * host's own churn costs a few reads; a fork loop adds one pid per pass, and 20 passes leave it
 * found (it is alive in the last listing) rather than chased forever.
 */
const RELIST_PASSES = 20;

/** Largest /proc status or stat text read (both are about 1.5 KiB; a longer one is read in full). */
const PROC_TEXT_BYTES = 8_192;

/** One /proc text read in place; undefined when the process is gone. */
function readProcText(file: string, buf: Buffer): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    let len = 0;
    for (;;) {
      if (len === buf.length) buf = Buffer.concat([buf, Buffer.alloc(buf.length)]);
      const n = readSync(fd, buf, len, buf.length - len, null);
      if (n === 0) break;
      len += n;
    }
    return buf.toString('latin1', 0, len);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** The four uids of a status text (the Uid: line), or undefined. */
function statusUids(status: string): [number, number, number, number] | undefined {
  const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
  return m ? (m.slice(1, 5).map(Number) as [number, number, number, number]) : undefined;
}

/**
 * Every readable process whose uids pass `uidFilter`, then `filter`. One pass: each process's
 * status is read (its uids); stat (name, state, start time) only for those whose uids pass, so a
 * scan for one user reads one file per process of the host.
 */
export async function scanProcesses(
  uidFilter: (uids: [number, number, number, number]) => boolean,
  filter: (p: ProcInfo) => boolean = () => true,
  procRoot = PROC_ROOT,
): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  const buf = Buffer.alloc(PROC_TEXT_BYTES);
  const listed = new Set<number>();
  // A process that forks and exits between the listing and its read (a fork loop) is gone when
  // read, and its child was not listed: the table is listed again after each pass and every pid
  // not seen before is read, until a listing shows nothing new. A process alive at the end was
  // then listed and read.
  for (let pass = 0; pass < RELIST_PASSES; pass++) {
    const pids = (await listPids(procRoot)).filter((pid) => !listed.has(pid));
    if (pids.length === 0) break;
    for (let i = 0; i < pids.length; i += SYNC_BATCH) {
      if (i > 0 || pass > 0) await new Promise<void>((r) => setImmediate(r));
      for (const pid of pids.slice(i, i + SYNC_BATCH)) {
        listed.add(pid);
        const dir = path.join(procRoot, String(pid));
        const status = readProcText(path.join(dir, 'status'), buf);
        const uids = status === undefined ? undefined : statusUids(status);
        if (!status || !uids || !uidFilter(uids)) continue;
        const stat = readProcText(path.join(dir, 'stat'), buf);
        const info = stat === undefined ? undefined : parseProc(pid, stat, status);
        if (info && filter(info)) out.push(info);
      }
    }
  }
  return out;
}

/** Every readable process, optionally filtered. */
export function listProcesses(filter: (p: ProcInfo) => boolean = () => true, procRoot = PROC_ROOT): Promise<ProcInfo[]> {
  return scanProcesses(() => true, filter, procRoot);
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
  return scanProcesses(
    (uids) => uids.includes(uid),
    (p) => !isZombie(p),
    procRoot,
  );
}
