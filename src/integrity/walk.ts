/**
 * The metadata walk of the file surfaces: one lstat per entry, never following symlinks, never
 * descending into another mount, never entering an excluded directory. The lstat, readdir and
 * readlink calls run on libuv's thread pool, a bounded number in flight: the event loop stays free
 * and, on a busy machine, the walk is not held to one thread's share of the CPU (bench/integrity.ts
 * measures it against `find -printf` of the same trees). Contents are read only for the baseline.
 */
import { closeSync, constants as fsc, fstatSync, lstat, openSync, readdir, readFileSync, readlink, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { FileMeta, SurfaceName } from './types.js';
import type { TreeSurface } from './surfaces.js';

/** Files up to this size get a content hash in the baseline: configuration is small; 64 KiB keeps /etc's hashing near 10 ms. */
export const HASH_MAX_BYTES = 64 * 1024;
/** Entries one walk records at most: a surface grown past this is itself drift, and memory stays bounded. */
export const MAX_ENTRIES = 1_000_000;
/**
 * File-system calls in flight at once: enough to keep libuv's four threads fed while the main
 * thread records results; more only queues inside libuv and holds more paths in memory.
 */
export const WALK_CONCURRENCY = 16;

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

/** One tree start to walk: its surface's index (for precedence), its device, its hashing. */
interface Start {
  tree: number;
  path: string;
  st: Stats;
}

/** Walks every tree, handing each entry to `visit`. */
export async function walkTrees(trees: readonly TreeSurface[], o: WalkOptions, visit: WalkVisitor): Promise<WalkResult> {
  const excluded = o.excluded.map((e) => path.resolve(e));
  const isExcluded = (p: string): boolean => excluded.some((e) => p === e || p.startsWith(`${e}/`));
  const real = (p: string): string => (o.root === '/' ? p : path.join(o.root, p));
  // /bin and /lib are symlinks into /usr on merged-usr images: walk each real directory once, for
  // the first surface that names it (the starts are resolved in order before any walking).
  const starts: Start[] = [];
  const seen = new Set<string>();
  for (const [tree, t] of trees.entries()) {
    for (const p of t.paths) {
      if (isExcluded(p)) continue;
      const st = await lstatOrUndefined(real(p));
      if (!st || seen.has(`${st.dev}:${st.ino}`)) continue;
      seen.add(`${st.dev}:${st.ino}`);
      starts.push({ tree, path: p, st });
    }
  }
  const unreadable: string[] = [];
  const executables: string[] = [];
  let count = 0;
  let overflow = false;
  type Item = { tree: number; p: string; dev: number; depth: number; st?: Stats };
  const stack: Item[] = starts.map((s) => ({ tree: s.tree, p: s.path, dev: s.st.dev, depth: 0, st: s.st }));

  const entry = (it: Item, s: Stats, done: () => void): void => {
    if (++count > MAX_ENTRIES) {
      if (!overflow) unreadable.push(`${trees[it.tree]?.paths.join(', ')}: more than ${MAX_ENTRIES} entries`);
      overflow = true;
      stack.length = 0;
      done();
      return;
    }
    const t = trees[it.tree] as TreeSurface;
    let pendingLink = false;
    if (t.setuidOnly && s.isFile() && (s.mode & 0o111) !== 0 && !isSetid(s)) executables.push(it.p);
    if (!t.setuidOnly || isSetid(s)) {
      const m = metaOf(s, real(it.p), o.hashSurfaces?.has(t.surface) ?? false);
      if (m.type === 'l') {
        pendingLink = true;
        readlink(real(it.p), (err, target) => {
          // Gone between lstat and readlink: the next check sees it.
          if (!err) m.link = target;
          visit(it.tree, it.p, m);
          done();
        });
      } else visit(it.tree, it.p, m);
    }
    // A setuid tree is never pruned by an exception: a setuid file is reachable wherever it is.
    const deep = t.maxDepth !== undefined && it.depth >= t.maxDepth;
    if (!s.isDirectory() || s.dev !== it.dev || deep || (!t.setuidOnly && o.prune?.(it.p, t.surface))) {
      if (!pendingLink) done();
      return;
    }
    readdir(real(it.p), (err, names) => {
      if (err) {
        // Removed (or replaced) between its lstat and the listing: gone, not unreadable.
        if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') unreadable.push(`${it.p}: ${err.code ?? 'error'}`);
      } else if (!overflow) {
        for (const name of names) {
          const child = it.p === '/' ? `/${name}` : `${it.p}/${name}`;
          if (!isExcluded(child)) stack.push({ tree: it.tree, p: child, dev: it.dev, depth: it.depth + 1 });
        }
      }
      done();
    });
  };

  await new Promise<void>((resolve) => {
    let active = 0;
    const finish = (): void => {
      active--;
      pump();
    };
    const pump = (): void => {
      while (active < WALK_CONCURRENCY && stack.length > 0) {
        const it = stack.pop() as Item;
        active++;
        if (it.st) entry(it, it.st, finish);
        else {
          lstat(real(it.p), (err, s) => {
            if (err) {
              if (err.code !== 'ENOENT') unreadable.push(`${it.p}: ${err.code ?? 'error'}`);
              finish();
            } else entry(it, s, finish);
          });
        }
      }
      if (active === 0 && stack.length === 0) resolve();
    };
    pump();
  });

  return { unreadable: unreadable.sort(), executables };
}

function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  return new Promise((resolve) => lstat(p, (err, s) => resolve(err ? undefined : s)));
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

/** sha256 of a file's content, undefined when it cannot be read (gone, EACCES, too large). */
export function hashFile(realPath: string): string | undefined {
  let fd: number | undefined;
  try {
    // No symlink, no blocking open of a FIFO swapped in after the lstat; a regular file only.
    fd = openSync(realPath, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > HASH_READ_LIMIT) return undefined;
    return createHash('sha256').update(readFileSync(fd)).digest('hex');
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Content compared on demand up to this size; a larger changed file is reported by its metadata. */
export const HASH_READ_LIMIT = 16 * 1024 * 1024;
