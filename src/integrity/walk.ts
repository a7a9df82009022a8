/**
 * The metadata walk of the file surfaces: one lstat per entry, never following symlinks, never
 * descending into another mount, never entering an excluded directory. The calls are synchronous,
 * in slices of WALK_SLICE_MS after which the event loop is given back: on a host whose metadata is
 * cached (a check, minutes after the last one) an lstat costs a microsecond or two, while a round
 * trip through libuv's thread pool cost ~25 us of the main thread's CPU and more of the pool's
 * (measured: the same 1,467-entry walk took 54 ms of CPU through the pool, 19 ms synchronously;
 * bench/integrity.ts prints the walk beside `find -printf` of the same trees). Contents are read
 * only for the baseline and by the comparison.
 */
import { closeSync, constants as fsc, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { createHash, hash as oneShotHash } from 'node:crypto';
import path from 'node:path';
import type { FileMeta, SurfaceName } from './types.js';
import type { TreeSurface } from './surfaces.js';

/** Files up to this size get a content hash in the baseline: configuration is small; 64 KiB keeps /etc's hashing near 10 ms. */
export const HASH_MAX_BYTES = 64 * 1024;
/** Entries one walk records at most: a surface grown past this is itself drift, and memory stays bounded. */
export const MAX_ENTRIES = 1_000_000;
/**
 * The walk gives the event loop back after this long: the health server and timers wait at most
 * this (plus one cold disk read), while a check of a stock image (~1,500 entries) takes a few slices.
 */
export const WALK_SLICE_MS = 5;
/** lstat options: a name removed since its directory was listed is absent, not an error. */
const NO_THROW = { throwIfNoEntry: false } as const;
/** Entries between two looks at the clock: reading it costs more than an lstat of a cached inode. */
const CLOCK_EVERY = 32;

/** What the walk needs besides the trees. */
export interface WalkOptions {
  /** Prefix of every path read ('/' on a host; a constructed tree in tests). */
  root: string;
  /** Host-view directories never entered (the runner root, the agent's state). */
  excluded: readonly string[];
  /** Directories whose whole subtree is excepted on that surface: not entered (the comparison skips them anyway). */
  prune?: (hostPath: string, surface: SurfaceName) => boolean;
  /** Surfaces whose small regular files get a content hash now (the baseline). */
  hashSurfaces?: ReadonlySet<SurfaceName>;
}

/** What the walk reports besides the entries it hands to its visitor. */
export interface WalkResult {
  /** Paths that could not be read (EACCES, ENAMETOOLONG, too many entries). */
  unreadable: string[];
  /**
   * Executable regular files of the setuid-only trees that are not setuid (not visited): where a
   * file capability could make a root shell without a setuid bit.
   */
  executables: string[];
}

/**
 * Receives each recorded entry once it is complete (a symlink with its target), in no particular
 * order; `tree` is the index of its surface in the walked list (a path two trees reach comes twice:
 * the lower index is its surface). The walk keeps nothing itself: the visitor decides what stays in
 * memory (a baseline table, or only the differences from one).
 */
export type WalkVisitor = (tree: number, hostPath: string, m: FileMeta) => void;

/** Walks every tree, handing each entry to `visit`. */
export async function walkTrees(trees: readonly TreeSurface[], o: WalkOptions, visit: WalkVisitor): Promise<WalkResult> {
  const excluded = o.excluded.map((e) => path.resolve(e));
  const isExcluded = (p: string): boolean => excluded.some((e) => p === e || p.startsWith(`${e}/`));
  // Host paths are absolute and built from directory listings (no `.` or `..`): the prefix is
  // joined by concatenation, path.join's normalisation cost more than the lstat of a cached inode.
  const prefix = o.root === '/' ? '' : path.resolve(o.root);
  const real = (p: string): string => prefix + p;
  const unreadable: string[] = [];
  const executables: string[] = [];
  type Item = { tree: number; p: string; dev: number; depth: number; st?: Stats };
  const stack: Item[] = [];
  // /bin and /lib are symlinks into /usr on merged-usr images: walk each real directory once, for
  // the first surface that names it (the starts are resolved in order before any walking).
  const seen = new Set<string>();
  for (const [tree, t] of trees.entries()) {
    for (const p of t.paths) {
      if (isExcluded(p)) continue;
      const st = lstatOrUndefined(real(p));
      if (!st || seen.has(`${st.dev}:${st.ino}`)) continue;
      seen.add(`${st.dev}:${st.ino}`);
      stack.push({ tree, p, dev: st.dev, depth: 0, st });
    }
  }
  let count = 0;

  const step = (it: Item): void => {
    let s = it.st;
    if (!s) {
      try {
        s = lstatSync(real(it.p), NO_THROW);
      } catch (err) {
        unreadable.push(`${it.p}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
        return;
      }
      // Removed since its directory was listed: the next check sees it.
      if (!s) return;
    }
    if (++count > MAX_ENTRIES) {
      unreadable.push(`${trees[it.tree]?.paths.join(', ')}: more than ${MAX_ENTRIES} entries`);
      stack.length = 0;
      return;
    }
    const t = trees[it.tree] as TreeSurface;
    if (t.setuidOnly && s.isFile() && (s.mode & 0o111) !== 0 && !isSetid(s)) executables.push(it.p);
    if (!t.setuidOnly || isSetid(s)) {
      const m = metaOf(s, real(it.p), o.hashSurfaces?.has(t.surface) ?? false);
      if (m.type === 'l') {
        try {
          m.link = readlinkSync(real(it.p));
        } catch {
          // Gone between lstat and readlink: the next check sees it.
        }
      }
      visit(it.tree, it.p, m);
    }
    // A setuid tree is never pruned by an exception: a setuid file is reachable wherever it is.
    const deep = t.maxDepth !== undefined && it.depth >= t.maxDepth;
    if (!s.isDirectory() || s.dev !== it.dev || deep || (!t.setuidOnly && o.prune?.(it.p, t.surface))) return;
    let names: string[];
    try {
      names = readdirSync(real(it.p));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Removed (or replaced) between its lstat and the listing: gone, not unreadable.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') unreadable.push(`${it.p}: ${code ?? 'error'}`);
      return;
    }
    for (const name of names) {
      const child = it.p === '/' ? `/${name}` : `${it.p}/${name}`;
      if (!isExcluded(child)) stack.push({ tree: it.tree, p: child, dev: it.dev, depth: it.depth + 1 });
    }
  };

  let sliceEnd = performance.now() + WALK_SLICE_MS;
  for (let n = 1; stack.length > 0; n++) {
    step(stack.pop() as Item);
    if (n % CLOCK_EVERY === 0 && performance.now() >= sliceEnd) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceEnd = performance.now() + WALK_SLICE_MS;
    }
  }
  return { unreadable: unreadable.sort(), executables };
}

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p, NO_THROW);
  } catch {
    return undefined;
  }
}

function isSetid(s: Stats): boolean {
  return s.isFile() && (s.mode & 0o6000) !== 0;
}

/** The metadata of one entry without its symlink target; `hash` when asked and the file is small. */
function metaOf(s: Stats, realPath: string, hash: boolean): FileMeta {
  const type = s.isFile() ? 'f' : s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : 'o';
  const m: FileMeta = {
    type,
    ino: s.ino,
    size: s.size,
    mode: s.mode & 0o7777,
    uid: s.uid,
    gid: s.gid,
    mtimeMs: s.mtimeMs,
    ctimeMs: s.ctimeMs,
  };
  if (hash && type === 'f' && s.size <= HASH_MAX_BYTES) {
    const h = hashFile(realPath);
    if (h !== undefined) m.hash = h;
  }
  return m;
}

/** One buffer for the small files the walk and the comparison hash (the main thread reads one at a time). */
const smallBuffer = Buffer.allocUnsafe(HASH_MAX_BYTES + 1);

/** sha256 of a file's content, undefined when it cannot be read (gone, EACCES, too large). */
export function hashFile(realPath: string): string | undefined {
  let fd: number | undefined;
  try {
    // A regular file only, never opened otherwise: opening a device node a job planted can act on
    // the machine (a watchdog arms the reset). The caller's lstat may be old (a leftover root
    // process can swap the name), so lstat again, and the open must land on that same inode.
    const before = lstatSync(realPath, NO_THROW);
    if (!before?.isFile()) return undefined;
    fd = openSync(realPath, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | fsc.O_NOCTTY);
    const st = fstatSync(fd);
    if (!st.isFile() || st.ino !== before.ino || st.dev !== before.dev || st.size > HASH_READ_LIMIT) return undefined;
    if (st.size <= HASH_MAX_BYTES) {
      // Small configuration, the usual case: one read into a reused buffer one byte larger than
      // any such file, hashed in one call. A short read of a regular file is its end (were it
      // not, the hash of a part differs: drift reported, never hidden).
      const n = readSync(fd, smallBuffer, 0, smallBuffer.length, 0);
      if (n < smallBuffer.length) return oneShotHash('sha256', smallBuffer.subarray(0, n));
      // It grew past the buffer since fstat: hashed whole below.
    }
    const h = createHash('sha256');
    const chunk = Buffer.allocUnsafe(1 << 20);
    let pos = 0;
    for (
      let r = readSync(fd, chunk, 0, chunk.length, pos);
      r > 0 && pos <= HASH_READ_LIMIT;
      r = readSync(fd, chunk, 0, chunk.length, pos)
    ) {
      h.update(chunk.subarray(0, r));
      pos += r;
    }
    return pos > HASH_READ_LIMIT ? undefined : h.digest('hex');
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Content compared on demand up to this size; a larger changed file is reported by its metadata. */
export const HASH_READ_LIMIT = 16 * 1024 * 1024;
