/**
 * One pass over /proc per verification: each process's parent and its four uids, from one read of
 * its `status`. The subordinate-id check and the process surface both need them; reading /proc
 * twice cost twice. Also the small synchronous readers every /proc consumer of this feature uses:
 * a /proc file is generated in memory, so a synchronous read costs microseconds, less than a
 * round trip through libuv's thread pool (and the event loop is not held by one for long).
 */
import { closeSync, constants as fsc, fstatSync, openSync, readdirSync, readlinkSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

/** One process as /proc/<pid>/status shows it. */
export interface ProcEntry {
  pid: number;
  ppid: number;
  /** Real, effective, saved and file-system uid (the `Uid:` line's order). */
  uids: [number, number, number, number];
}

/** Every live process of `proc` now (kernel threads included; a process gone mid-read and zombies are left out). */
export function readProcTable(proc: string): ProcEntry[] {
  const out: ProcEntry[] = [];
  for (const name of listSync(proc)) {
    if (!/^\d+$/.test(name)) continue;
    const status = readProcFile(path.join(proc, name, 'status'));
    if (status === undefined) continue;
    const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
    if (!ids) continue;
    // A zombie has exited and holds nothing but its pid until its parent reaps it; where PID 1 is
    // not an init (a container without one) a killed orphan stays one for good.
    if (/^State:\s+[ZX]/m.test(status)) continue;
    out.push({
      pid: Number(name),
      ppid: Number.isInteger(ppid) ? ppid : 0,
      uids: [Number(ids[1]), Number(ids[2]), Number(ids[3]), Number(ids[4])],
    });
  }
  return out;
}

/** A /proc file's status and stat fit in this; a larger file (mountinfo, net/tcp) is read whole. */
const PROC_BUFFER_BYTES = 16 * 1024;
/** One buffer for the per-process files: the main thread reads one at a time. */
const procBuffer = Buffer.allocUnsafe(PROC_BUFFER_BYTES);

/**
 * The most one text read returns: the package database of a runner image with toolchains is ~10 MB.
 * A larger file is unreadable, never read on: a job must not make the agent hold gigabytes.
 */
const MAX_TEXT_BYTES = 64 << 20;

/**
 * A /proc or configuration file's text, undefined when it is gone (the process exited), unreadable,
 * larger than MAX_TEXT_BYTES, or not a regular file. A root job can put anything in place of the
 * files the check reads whole (/etc/passwd, the package database, a sudoers drop-in) or mount it
 * over a /proc file: a FIFO would block the agent's main thread for good, /dev/zero would fill its
 * memory, and merely opening a device can act on the machine (a watchdog arms the reset). So the
 * name is stat'ed first and only a regular file is opened, without blocking, and the open must land
 * on that same inode. Read into one reused buffer: readFileSync sizes a /proc file by fstat (0) and
 * grows its buffer read by read.
 */
export function readProcFile(file: string): string | undefined {
  let fd: number | undefined;
  try {
    const before = statSync(file, { throwIfNoEntry: false });
    if (!before?.isFile()) return undefined;
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY);
    const st = fstatSync(fd);
    if (!st.isFile() || st.ino !== before.ino || st.dev !== before.dev) return undefined;
    let n = 0;
    for (let r = 1; r > 0 && n < procBuffer.length; n += r) r = readSync(fd, procBuffer, n, procBuffer.length - n, null);
    if (n < procBuffer.length) return procBuffer.toString('utf8', 0, n);
    // Larger than the buffer: the rest too, from where the reads stopped, in chunks up to the cap.
    const parts = [Buffer.from(procBuffer.subarray(0, n))];
    const chunk = Buffer.allocUnsafe(1 << 20);
    for (let r = readSync(fd, chunk, 0, chunk.length, null); r > 0; r = readSync(fd, chunk, 0, chunk.length, null)) {
      n += r;
      if (n > MAX_TEXT_BYTES) return undefined;
      parts.push(Buffer.from(chunk.subarray(0, r)));
    }
    return Buffer.concat(parts).toString('utf8');
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A file's text, '' when it is absent or unreadable. */
export function readTextSync(file: string): string {
  return readProcFile(file) ?? '';
}

/** The names in a directory, none when it is unreadable. */
export function listSync(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A symlink's target, undefined when it is gone or unreadable. */
export function linkSync(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}
