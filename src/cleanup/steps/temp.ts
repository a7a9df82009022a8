/**
 * Step "temp": the runner user's entries in each of policy.temp.paths (by default every directory
 * any user may write to on Debian and Ubuntu: /tmp, /var/tmp, /dev/shm, /run/lock, /var/crash).
 *
 * Everything is decided by lstat: an entry owned by the runner uid goes, with everything below
 * it; an entry owned by anyone else stays, and so does everything below it, except inside
 * world-writable directories (a sticky /tmp/.X11-unix), where the job could also have written and
 * which are searched in turn, down to TEMP_MAX_DEPTH. Symlinks are removed as links; FIFOs and
 * sockets are unlinked without ever being opened. A mount is never crossed: entries on another
 * device are not descended into, and a mount inside a directory of the uid is detached first.
 *
 * Non-directories are unlinked in place (unlink never follows; one unlink is cheap). A directory
 * (after any mount in it is detached) is moved out of every job's reach by one rename: with a
 * TempTrash (temp-trash.ts) into the slot trash or a root-only holding directory on the same
 * filesystem, deleted in the background after the host is ready, since a job's 50,000-file tree
 * took over a minute to delete here; without one, or where neither may take it (the runner user's
 * own /run/user/<uid>, another mount of the trash's filesystem), into a fresh root-only (0700)
 * staging directory inside the same temp dir, deleted with safe-delete.ts before the step returns.
 * Either way odd names never reach argv, and a rename that moved anything but the collected entry
 * (same inode, the runner user's) is a problem, put back where it was when it can be.
 */
import { promises as fsp, constants as fsConstants, type Stats } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import type { CleanupContext, CleanupStep, Removed, StepReport } from '../types.js';
import { UnsafePathError, describeError } from '../../lib/errors.js';
import { readMountInfo, mountsUnder, unmountUnder } from '../mounts.js';
import { deleteTree } from '../safe-delete.js';
import type { TempTrash } from './temp-trash.js';

/**
 * How deep the sweep searches directories that are not the uid's but that it could write into.
 * Such directories are shared sockets dirs one or two levels down; 8 levels covers any real one
 * while bounding the time a deep world-writable tree (made by someone else) can cost.
 */
export const TEMP_MAX_DEPTH = 8;

/**
 * The runner user's runtime directory (logind's /run/user/<uid>, there when a login session or
 * lingering made it): only that user writes to it, and no policy path names it, so what a job
 * leaves there (files, sockets, an agent's socket) would wait for the next job. Swept like a temp
 * dir whatever the policy says; absent is the usual case and goes unreported.
 */
export function runtimeDirOf(uid: number): string {
  return `/run/user/${uid}`;
}

/** Options of the temp step; defaults: no trash (delete in place), the real mountinfo and umount, runtimeDirOf(uid). */
export interface TempStepOptions {
  /** Where directories go to be deleted in the background, drained by its owner (the slot trash's). */
  trash?: TempTrash;
  mountinfoFile?: string;
  umountCommand?: string;
  runtimeDir?: string;
}

/** Creates the "temp" step. */
export function createTempStep(opts: TempStepOptions = {}): CleanupStep {
  return { name: 'temp', run: (ctx) => runTemp(ctx, opts) };
}

/** The "temp" step with default options. */
export const tempStep: CleanupStep = createTempStep();

type Result = Omit<StepReport, 'name' | 'durationMs'>;

/** Longest list kept in a dry-run plan. */
const PLAN_CAP = 200;

async function runTemp(ctx: CleanupContext, opts: TempStepOptions): Promise<Result> {
  if (!ctx.policy.temp.enabled) return { outcome: 'skipped', removed: {}, reason: 'disabled by policy' };
  const { uid } = ctx.slot.user;
  if (uid === 0) return { outcome: 'failed', removed: {}, reason: 'refusing to sweep the files of uid 0' };
  const removed: Record<string, Removed> = {};
  const add = (kind: string, count: number, bytes: number): void => {
    const r = (removed[kind] ??= { count: 0, bytes: 0 });
    r.count += count;
    r.bytes += bytes;
  };
  const plan: string[] = [];
  const problems: string[] = [];
  const skipped: string[] = [];

  const runtimeDir = opts.runtimeDir ?? runtimeDirOf(uid);
  for (const configured of [...ctx.policy.temp.paths, runtimeDir]) {
    if (ctx.signal.aborted) break;
    if (!path.isAbsolute(configured)) {
      problems.push(`${configured}: not an absolute path`);
      continue;
    }
    let root: string;
    let rootSt: Stats;
    try {
      root = await fsp.realpath(configured);
      rootSt = await fsp.lstat(root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        if (configured !== runtimeDir) skipped.push(`${configured} absent`);
        continue;
      }
      throw err;
    }
    if (!rootSt.isDirectory()) {
      problems.push(`${configured}: not a directory`);
      continue;
    }
    const ours: Array<{ entry: Buffer; st: Stats }> = [];
    await collect(Buffer.from(root), rootSt.dev, uid, 0, ours);
    if (ctx.dryRun) {
      for (const o of ours) plan.push(`remove ${kindOf(o.st)} ${o.entry.toString()}`);
      continue;
    }
    let staging: string | undefined;
    for (const { entry, st } of ours) {
      if (ctx.signal.aborted) break;
      try {
        if (!st.isDirectory()) {
          await unlinkEntry(entry, st);
          add(kindOf(st), 1, st.isFile() ? st.size : 0);
          continue;
        }
        const un = await unmountUnder(entry, {
          includeSelf: true,
          mountinfoFile: opts.mountinfoFile,
          umountCommand: opts.umountCommand,
        });
        const still = mountsUnder(await readMountInfo(opts.mountinfoFile), entry, true);
        if (un.remaining.length > 0 || still.length > 0) {
          problems.push(`${entry.toString()}: holds a mount that could not be detached`);
          continue;
        }
        if (opts.trash && (await toTrash(opts.trash, root, rootSt.dev, entry, st, uid, problems))) {
          add('dir-to-trash', 1, 0);
          continue;
        }
        staging ??= await makeStaging(root);
        await renameDir(entry, st, path.join(staging, `d-${randomBytes(6).toString('hex')}`));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        problems.push(`${entry.toString()}: ${describeError(err)}`);
      }
    }
    if (staging) {
      try {
        const r = await deleteTree(staging, { signal: ctx.signal, mountinfoFile: opts.mountinfoFile });
        // The staging directory itself is ours, not the job's.
        add('tree', Math.max(0, r.count - 1), r.bytes);
        if (r.remaining.length > 0) problems.push(`${staging}: could not be deleted`);
      } catch (err) {
        problems.push(`${staging}: ${describeError(err)}`);
      }
    }
  }

  if (ctx.dryRun) return { outcome: 'ok', removed, plan: capList(plan) };
  if (problems.length > 0) {
    return { outcome: 'dirty', removed, reason: `${problems.length} problem(s): ${problems[0]}` };
  }
  return skipped.length > 0 ? { outcome: 'ok', removed, reason: skipped.join('; ') } : { outcome: 'ok', removed };
}

/**
 * Collects the entries of `dir` owned by `uid`, and searches the world-writable directories of
 * others on the same device.
 */
async function collect(dir: Buffer, dev: number, uid: number, depth: number, out: Array<{ entry: Buffer; st: Stats }>): Promise<void> {
  let names: Buffer[];
  try {
    names = await fsp.readdir(dir, { encoding: 'buffer' });
  } catch {
    return; // vanished, or not readable even by root (a FUSE mount): nothing of ours to find
  }
  for (const name of names) {
    const entry = Buffer.concat([dir, Buffer.from('/'), name]);
    let st: Stats;
    try {
      st = await fsp.lstat(entry);
    } catch {
      continue;
    }
    if (st.uid === uid) out.push({ entry, st });
    else if (st.isDirectory() && (st.mode & 0o002) !== 0 && st.dev === dev && depth < TEMP_MAX_DEPTH) {
      await collect(entry, dev, uid, depth + 1, out);
    }
  }
}

/** Unlinks a non-directory; an immutable/append-only regular file gets `chattr -i -a` first. */
async function unlinkEntry(entry: Buffer, st: Stats): Promise<void> {
  try {
    await fsp.unlink(entry);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM' || !st.isFile()) throw err;
    await clearAttributes(entry, st);
    await fsp.unlink(entry);
  }
}

/**
 * Moves a directory of the uid into the trash; false when the trash cannot take it (the caller
 * deletes it in place). An immutable or append-only directory gets `chattr -i -a` first. What
 * landed in the trash is checked against what was collected: anything else (swapped in by another
 * user through a shared writable directory) is a problem and goes back when its place is free.
 */
async function toTrash(
  trash: TempTrash,
  root: string,
  dev: number,
  entry: Buffer,
  st: Stats,
  uid: number,
  problems: string[],
): Promise<boolean> {
  let dest: string;
  try {
    try {
      dest = await trash.put(root, dev, entry);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      await clearAttributes(entry, st);
      dest = await trash.put(root, dev, entry);
    }
  } catch (err) {
    if (err instanceof UnsafePathError) return false;
    throw err;
  }
  const moved = await fsp.lstat(dest);
  if (moved.ino !== st.ino || moved.dev !== st.dev || moved.uid !== uid || !moved.isDirectory()) {
    const back = await fsp.lstat(entry).then(
      () => false,
      () =>
        fsp.rename(dest, entry).then(
          () => true,
          () => false,
        ),
    );
    problems.push(`${entry.toString()}: changed before it was moved to the trash${back ? '; put back' : ''}`);
  }
  return true;
}

/** Renames a directory into the staging dir, clearing immutable/append-only on it if needed. */
async function renameDir(entry: Buffer, st: Stats, dest: string): Promise<void> {
  try {
    await fsp.rename(entry, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    await clearAttributes(entry, st);
    await fsp.rename(entry, dest);
  }
}

/**
 * `chattr -i -a` on one regular file or directory, whatever its name: the parent directory is
 * opened by the agent and handed to `find` as fd 3, and find selects the entry by inode and runs
 * chattr from that directory on `./name`, so no name ever goes into argv and no link is followed.
 */
async function clearAttributes(entry: Buffer, st: Stats): Promise<void> {
  const slash = entry.lastIndexOf(0x2f);
  const parent = slash <= 0 ? Buffer.from('/') : entry.subarray(0, slash);
  const fh = await fsp.open(parent, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
  try {
    await new Promise<void>((resolve) => {
      const child = spawn(
        'find',
        [
          '/proc/self/fd/3/',
          '-mindepth',
          '1',
          '-maxdepth',
          '1',
          '-xdev',
          '-inum',
          String(st.ino),
          '(',
          '-type',
          'f',
          '-o',
          '-type',
          'd',
          ')',
          '-execdir',
          'chattr',
          '-f',
          '-i',
          '-a',
          '--',
          '{}',
          '+',
        ],
        { stdio: ['ignore', 'ignore', 'ignore', fh.fd], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } },
      );
      child.once('error', () => resolve());
      child.once('exit', () => resolve());
    });
  } finally {
    await fh.close();
  }
}

/** A fresh root-only directory in the temp dir (mkdir fails rather than reuse an existing name). */
async function makeStaging(root: string): Promise<string> {
  const dir = path.join(root, `.runner-warden-trash-${randomBytes(8).toString('hex')}`);
  await fsp.mkdir(dir, { mode: 0o700 });
  await fsp.chmod(dir, 0o700);
  return dir;
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'device';
}

function capList(list: string[]): string[] {
  if (list.length <= PLAN_CAP) return list;
  return [...list.slice(0, PLAN_CAP), `... and ${list.length - PLAN_CAP} more`];
}
