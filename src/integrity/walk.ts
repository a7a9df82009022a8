/**
 * The metadata walk of the file surfaces: one lstat per entry, never following symlinks, never
 * descending into another mount, never entering an excluded directory. Synchronous on purpose: a
 * few thousand lstat calls cost less in one tight loop than as as many promises (bench/integrity.ts
 * measures it against `find -printf`); the event loop is held for that time only.
 */
import { closeSync, constants as fsc, fstatSync, lstatSync, openSync, readdirSync, readFileSync, readlinkSync, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { FileMeta, SurfaceName } from './types.js';
import type { TreeSurface } from './surfaces.js';

/** Files up to this size get a content hash in the baseline: configuration is small; 64 KiB keeps /etc's hashing near 10 ms. */
export const HASH_MAX_BYTES = 64 * 1024;
/** Entries one walk records at most: a surface grown past this is itself drift, and memory stays bounded. */
export const MAX_ENTRIES = 1_000_000;

/** What the walk needs besides the trees. */
export interface WalkOptions {
  /** Prefix of every path read ('/' on a host; a constructed tree in tests). */
  root: string;
  /** Host-view directories never entered (the runner root, the agent's state). */
  excluded: readonly string[];
  /** Directories whose whole subtree is excepted: not entered (the comparison skips them anyway). */
  prune?: (hostPath: string) => boolean;
  /** Surfaces whose small regular files get a content hash now (the baseline). */
  hashSurfaces?: ReadonlySet<SurfaceName>;
}

/** The walk's result. */
export interface WalkResult {
  files: Record<string, FileMeta>;
  fileSurface: Record<string, SurfaceName>;
  /** Paths that could not be read (EACCES, ENAMETOOLONG, too many entries). */
  unreadable: string[];
}

/** Walks every tree; a path in two surfaces is recorded once, under the first. */
export function walkTrees(trees: readonly TreeSurface[], o: WalkOptions): WalkResult {
  const out: WalkResult = { files: {}, fileSurface: {}, unreadable: [] };
  const excluded = o.excluded.map((e) => path.resolve(e));
  const isExcluded = (p: string): boolean => excluded.some((e) => p === e || p.startsWith(`${e}/`));
  const real = (p: string): string => (o.root === '/' ? p : path.join(o.root, p));
  let count = 0;
  // /bin and /lib are symlinks into /usr on merged-usr images: walk each real directory once.
  const walkedStarts = new Set<string>();
  for (const t of trees) {
    const hash = o.hashSurfaces?.has(t.surface) ?? false;
    for (const start of t.paths) {
      if (isExcluded(start)) continue;
      const st = lstatSync(real(start), { throwIfNoEntry: false });
      if (!st) continue;
      const id = `${st.dev}:${st.ino}`;
      if (walkedStarts.has(id)) continue;
      walkedStarts.add(id);
      const dev = st.dev;
      const stack: [string, Stats][] = [[start, st]];
      while (stack.length > 0) {
        const [p, s] = stack.pop() as [string, Stats];
        if (++count > MAX_ENTRIES) {
          out.unreadable.push(`${start}: more than ${MAX_ENTRIES} entries`);
          break;
        }
        if (!(p in out.files) && (!t.setuidOnly || isSetid(s))) {
          out.files[p] = meta(s, real(p), hash);
          out.fileSurface[p] = t.surface;
        }
        if (!s.isDirectory() || s.dev !== dev || o.prune?.(p)) continue;
        let names: string[];
        try {
          names = readdirSync(real(p));
        } catch (err) {
          // Removed (or replaced) between its lstat and the listing: gone, not unreadable.
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ENOENT' && code !== 'ENOTDIR') out.unreadable.push(`${p}: ${code ?? 'error'}`);
          continue;
        }
        for (const name of names) {
          const child = p === '/' ? `/${name}` : `${p}/${name}`;
          if (isExcluded(child)) continue;
          let cs: Stats | undefined;
          try {
            cs = lstatSync(real(child), { throwIfNoEntry: false });
          } catch (err) {
            out.unreadable.push(`${child}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
          }
          if (cs) stack.push([child, cs]);
        }
      }
    }
  }
  return out;
}

function isSetid(s: Stats): boolean {
  return s.isFile() && (s.mode & 0o6000) !== 0;
}

/** The metadata of one entry; `hash` when asked and the file is small. */
export function meta(s: Stats, realPath: string, hash: boolean): FileMeta {
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
  if (type === 'l') {
    try {
      m.link = readlinkSync(realPath);
    } catch {
      // Gone between lstat and readlink: the next check sees it.
    }
  }
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
