/**
 * The evidence kept before a quarantined or recycled host goes away: the drift report and a copy of
 * every added or modified file, in a root-only directory under the state directory, capped in size
 * so a job that plants a huge file cannot fill the disk through the agent.
 */
import { closeSync, constants as fsc, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { DriftEntry } from './types.js';

/** The result of one copy. */
export interface ForensicsCopy {
  dir: string;
  files: number;
  bytes: number;
  /** Files left out (or cut) by the cap. */
  skipped: number;
}

/**
 * Copies the drift's files into `<forensicsDir>/<stamp>/files/<path>` and writes `drift.json`.
 * `maxBytes` caps the whole forensics directory, earlier copies included.
 */
export async function copyForensics(
  forensicsDir: string,
  stamp: string,
  drift: readonly DriftEntry[],
  root: string,
  maxBytes: number,
): Promise<ForensicsCopy> {
  await mkdir(forensicsDir, { recursive: true, mode: 0o700 });
  const dir = path.join(forensicsDir, stamp.replace(/[^A-Za-z0-9._-]/g, '_'));
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(path.join(dir, 'drift.json'), `${JSON.stringify(drift, null, 1)}\n`, { mode: 0o600 });
  let budget = maxBytes - (await sizeOf(forensicsDir));
  const out: ForensicsCopy = { dir, files: 0, bytes: 0, skipped: 0 };
  for (const d of drift) {
    if (d.change === 'removed' || !d.object.startsWith('/')) continue;
    const data = readCapped(root === '/' ? d.object : path.join(root, d.object), Math.max(0, budget));
    if (data === undefined) continue;
    if (data.cut || (data.buf.length === 0 && data.size > 0)) out.skipped++;
    if (data.buf.length === 0 && data.size > 0) continue;
    const dest = path.join(dir, 'files', d.object);
    await mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
    await writeFile(dest, data.buf, { mode: 0o600 });
    out.files++;
    out.bytes += data.buf.length;
    budget -= data.buf.length;
  }
  return out;
}

/**
 * Reads a regular file up to `max` bytes; anything else is never opened. A device node a job
 * planted is not evidence to copy, and opening one can act on the machine (a watchdog device arms
 * the reset on open, a serial line raises its modem lines): lstat first, then the open must land
 * on that same inode (a swap in between is refused).
 */
function readCapped(file: string, max: number): { buf: Buffer; size: number; cut: boolean } | undefined {
  let fd: number | undefined;
  try {
    const before = lstatSync(file, { throwIfNoEntry: false });
    if (!before?.isFile()) return undefined;
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | fsc.O_NOCTTY);
    const st = fstatSync(fd);
    if (!st.isFile() || st.ino !== before.ino || st.dev !== before.dev) return undefined;
    const n = Math.min(st.size, max);
    const buf = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const r = readSync(fd, buf, got, n - got, got);
      if (r === 0) break;
      got += r;
    }
    return { buf: buf.subarray(0, got), size: st.size, cut: st.size > got };
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

async function sizeOf(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (e.isFile()) total += (await stat(path.join(e.parentPath ?? dir, e.name)).catch(() => undefined))?.size ?? 0;
  }
  return total;
}
