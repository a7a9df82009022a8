/**
 * Removing one entry of a job-controlled tree (a file, a link itself, or a whole directory tree)
 * without following a link and without crossing a mount point, at any depth, through the no-follow
 * directory handles of src/lib/nofollow.ts. Mode-000 directories and immutable or append-only
 * entries are handled (root clears the attributes and tries once more).
 */
import { promises as fsp, type Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { runCommand } from '../lib/process.js';
import { UnsafePathError } from '../lib/errors.js';
import { type DirRef, bytes, joinPath, shown } from '../lib/nofollow.js';
import { readMountInfo, mountsUnder } from './mounts.js';
import type { Removed } from './types.js';

/**
 * Directory depth kept open (one fd per level) while removing a tree. Deeper directories are
 * renamed up to the top of the tree being removed, so a 20,000-level tree needs neither 20,000 fds
 * nor paths longer than PATH_MAX.
 */
const MAX_OPEN_DEPTH = 64;

async function clearImmutable(target: Buffer): Promise<void> {
  // A root process can clear the immutable/append-only attributes; Node has no ioctl, so chattr
  // reaches the same inode through this process's fd table.
  const p = target.toString('latin1').replace(/^\/proc\/self\//, `/proc/${process.pid}/`);
  await runCommand('chattr', ['-i', '-a', '--', p], { timeoutMs: 10_000 }).catch(() => undefined);
}

/**
 * Removes `name` in `dir` with `op` (unlink or rmdir); on EPERM clears the immutable and
 * append-only attributes of the entry and of its directory, then tries once more.
 */
async function removeAt(dir: DirRef, name: string, op: (p: string | Buffer) => Promise<void>): Promise<void> {
  try {
    await op(dir.at(name));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'EPERM') throw err;
    await clearImmutable(dir.at(name));
    await clearImmutable(dir.at());
    await op(dir.at(name));
  }
}

const unlinkAt = (dir: DirRef, name: string): Promise<void> => removeAt(dir, name, (p) => fsp.unlink(p));
const rmdirAt = (dir: DirRef, name: string): Promise<void> => removeAt(dir, name, (p) => fsp.rmdir(p));

function fileBytes(st: Stats): number {
  return st.isFile() ? st.size : 0;
}

interface Frame {
  dir: DirRef;
  pending: string[];
  reread: boolean;
}

/**
 * Removes `name` inside `parent` (a file, a symlink itself, or a whole directory tree), never
 * following a link and refusing to cross a mount point (UnsafePathError). Handles mode-000
 * directories, immutable files and any depth. Returns what it removed.
 */
export async function removeEntry(parent: DirRef, name: string): Promise<Removed> {
  const st = await parent.lstat(name);
  if (!st) return { count: 0, bytes: 0 };
  if (!st.isDirectory()) {
    await unlinkAt(parent, name);
    return { count: 1, bytes: fileBytes(st) };
  }
  const logical = joinPath(parent.path, name);
  const inside = mountsUnder(await readMountInfo(), bytes(logical), true);
  if (inside.length > 0) {
    throw new UnsafePathError('a mount point lies inside the tree', inside[0]?.mountPointText ?? '', shown(logical));
  }
  const top = await parent.openChild(name);
  if (!top) return removeEntry(parent, name); // swapped for a non-directory meanwhile
  const dev = (await top.stat()).dev;
  const removed: Removed = { count: 0, bytes: 0 };
  const stack: Frame[] = [{ dir: top, pending: [], reread: true }];
  try {
    while (stack.length > 0) {
      const frame = stack[stack.length - 1] as Frame;
      if (frame.pending.length === 0) {
        if (frame.reread) {
          frame.pending = await frame.dir.list();
          frame.reread = false;
          if (frame.pending.length > 0) continue;
        }
        stack.pop();
        await frame.dir.close();
        const up = stack[stack.length - 1];
        if (up) up.reread = true;
        continue;
      }
      const child = frame.pending.pop() as string;
      const cst = await frame.dir.lstat(child);
      if (!cst) continue;
      if (!cst.isDirectory()) {
        await unlinkAt(frame.dir, child);
        removed.count++;
        removed.bytes += fileBytes(cst);
        continue;
      }
      if (cst.dev !== dev) throw new UnsafePathError('another filesystem inside the tree', shown(child), shown(logical));
      // An empty directory goes at once, without an fd (rmdirAt clears immutable/append-only
      // attributes and throws if it still cannot: never loop on a directory that stays).
      try {
        await rmdirAt(frame.dir, child);
        removed.count++;
        continue;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      }
      if (stack.length >= MAX_OPEN_DEPTH) {
        // Flatten: move the deep subtree up to the top of the tree being removed.
        const flat = `.rw-flat-${randomBytes(6).toString('hex')}`;
        await fsp.rename(frame.dir.at(child), top.at(flat));
        stack[0]!.reread = true;
        continue;
      }
      const sub = await frame.dir.openChild(child);
      if (!sub) {
        frame.pending.push(child);
        continue;
      }
      // Put the name back: once the child's frame is done, the rmdir above removes it.
      frame.pending.push(child);
      stack.push({ dir: sub, pending: [], reread: true });
    }
  } finally {
    for (const f of stack) await f.dir.close();
  }
  await rmdirAt(parent, name);
  removed.count++;
  return removed;
}
