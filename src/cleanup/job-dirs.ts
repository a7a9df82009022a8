/**
 * Prevention before cleanup (docs/decisions.md): each job gets a fresh HOME, TMPDIR and DOCKER_CONFIG of
 * its own under `slot.jobRoot`, made from a skeleton, and the whole directory goes to the trash
 * after the job. Tools that honour these variables then never write into the real home.
 *
 * Layout: `<jobRoot>/` (root, 0755) → `<jobKey>/` (root, 0711: the job can reach its directories
 * but not add siblings) → `home/`, `tmp/`, `docker/` (runner user, 0700).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Slot } from './types.js';
import { UnsafePathError, describeError } from '../lib/errors.js';
import { deleteTree } from './safe-delete.js';
import { readMountInfo, unmountUnder, type MountEntry } from './mounts.js';
import { CrossDeviceError, type Trash } from './trash.js';

/** The per-job directories and the environment that points the listener at them. */
export interface JobDirs {
  root: string;
  home: string;
  tmp: string;
  dockerConfig: string;
  env: { HOME: string; TMPDIR: string; DOCKER_CONFIG: string };
}

/**
 * Creates the per-job directories for `jobKey` ([A-Za-z0-9._-], ≤ 64 chars) under slot.jobRoot.
 * `skeleton`, when given, is copied into home (links copied as links, never followed). A leftover
 * directory of the same key (a crash) is deleted first.
 */
export async function prepareJobDirs(slot: Slot, jobKey: string, skeleton?: string): Promise<JobDirs> {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(jobKey) || jobKey === '.' || jobKey === '..') {
    throw new UnsafePathError('invalid job key', jobKey, slot.jobRoot);
  }
  await ensureRootDir(slot.jobRoot, 0o755);
  const root = path.join(slot.jobRoot, jobKey);
  await removeLeftover(root);
  await fsp.mkdir(root, { mode: 0o711 });
  await fsp.chmod(root, 0o711);
  const { uid, gid } = slot.user;
  const home = path.join(root, 'home');
  const tmp = path.join(root, 'tmp');
  const dockerConfig = path.join(root, 'docker');
  if (skeleton) {
    await fsp.cp(skeleton, home, {
      recursive: true,
      verbatimSymlinks: true,
      errorOnExist: true,
      force: false,
      preserveTimestamps: true,
    });
    await chownTree(home, uid, gid);
  } else {
    await fsp.mkdir(home);
    await fsp.lchown(home, uid, gid);
  }
  for (const dir of [tmp, dockerConfig]) {
    await fsp.mkdir(dir);
    await fsp.lchown(dir, uid, gid);
  }
  for (const dir of [home, tmp, dockerConfig]) await fsp.chmod(dir, 0o700);
  return { root, home, tmp, dockerConfig, env: { HOME: home, TMPDIR: tmp, DOCKER_CONFIG: dockerConfig } };
}

/** What removeJobDirs did. */
export interface JobDirsRemoval {
  /** Per-job directories moved to the trash (or deleted in place). */
  count: number;
  bytes: number;
  /** One line per directory that could not be removed safely. */
  problems: string[];
  /** With dryRun: what would be removed. */
  plan: string[];
}

/**
 * Removes every per-job directory under slot.jobRoot: mounts inside are detached, then each
 * directory is renamed into the trash. When the trash is on another filesystem, the directory is
 * deleted in place (safe-delete.ts), which is safe once the job's processes are dead.
 */
export async function removeJobDirs(
  slot: Slot,
  trash: Trash,
  opts: { dryRun?: boolean; mountinfoFile?: string; umountCommand?: string; signal?: AbortSignal } = {},
): Promise<JobDirsRemoval> {
  const out: JobDirsRemoval = { count: 0, bytes: 0, problems: [], plan: [] };
  let st;
  try {
    st = await fsp.lstat(slot.jobRoot);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  if (!st.isDirectory() || st.uid !== 0) {
    out.problems.push(`job root ${slot.jobRoot} is not a root-owned directory`);
    return out;
  }
  if ((await fsp.realpath(slot.jobRoot)) !== path.resolve(slot.jobRoot)) {
    out.problems.push(`job root ${slot.jobRoot} is reached through a symlink`);
    return out;
  }
  const names = await fsp.readdir(slot.jobRoot, { encoding: 'buffer' });
  if (opts.dryRun) {
    out.plan = names.map((n) => `remove job dir ${path.join(slot.jobRoot, n.toString())}`);
    return out;
  }
  if (names.length === 0) return out;
  const un = await unmountUnder(slot.jobRoot, {
    mountinfoFile: opts.mountinfoFile,
    umountCommand: opts.umountCommand,
    signal: opts.signal,
  });
  if (un.remaining.length > 0) {
    out.problems.push(`mount under job root could not be detached: ${un.remaining[0]}`);
    return out;
  }
  const mounts: MountEntry[] = await readMountInfo(opts.mountinfoFile);
  for (const name of names) {
    const entry = Buffer.concat([Buffer.from(`${slot.jobRoot}/`), name]);
    try {
      await trash.put(entry, { mounts });
      out.count++;
    } catch (err) {
      if (!(err instanceof CrossDeviceError)) {
        out.problems.push(`${entry.toString()}: ${describeError(err)}`);
        continue;
      }
      // Trash on another filesystem: delete in place (names under jobRoot are the agent's own).
      try {
        const r = await deleteTree(entry.toString(), { mountinfoFile: opts.mountinfoFile, signal: opts.signal });
        out.bytes += r.bytes;
        if (r.remaining.length > 0) out.problems.push(`${entry.toString()}: could not be deleted`);
        else out.count++;
      } catch (e) {
        out.problems.push(`${entry.toString()}: ${describeError(e)}`);
      }
    }
  }
  return out;
}

/** Makes sure `dir` is a root-owned directory reached without symlinks, creating it if missing. */
async function ensureRootDir(dir: string, mode: number): Promise<void> {
  if (!path.isAbsolute(dir)) throw new UnsafePathError('path not absolute', dir, dir);
  await fsp.mkdir(dir, { recursive: true, mode });
  const st = await fsp.lstat(dir);
  if (!st.isDirectory() || st.uid !== 0) throw new UnsafePathError('not a root-owned directory', dir, dir);
  if ((await fsp.realpath(dir)) !== path.resolve(dir)) {
    throw new UnsafePathError('path goes through a symlink', dir, dir);
  }
}

async function removeLeftover(root: string): Promise<void> {
  try {
    await fsp.lstat(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const un = await unmountUnder(root, { includeSelf: true });
  if (un.remaining.length > 0) throw new UnsafePathError('leftover job dir holds a mount', root, root);
  const r = await deleteTree(root);
  if (r.remaining.length > 0) throw new UnsafePathError('leftover job dir could not be deleted', root, root);
}

/** lchown every entry of a freshly copied tree (links themselves, never their targets). */
async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  const stack = [dir];
  while (stack.length > 0) {
    const cur = stack.pop() as string;
    await fsp.lchown(cur, uid, gid);
    const st = await fsp.lstat(cur);
    if (!st.isDirectory()) continue;
    for (const name of await fsp.readdir(cur)) stack.push(path.join(cur, name));
  }
}
