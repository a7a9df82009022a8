/**
 * No-follow access to trees a job controls. A directory is opened with O_NOFOLLOW and its children
 * are reached through `/proc/self/fd/<fd>/<name>`, which the kernel resolves inside that very
 * directory (an openat() for Node): a job that swaps a parent for a symlink between our check and
 * our use cannot redirect the call outside the tree.
 *
 * Paths inside job-controlled trees are "byte strings": JS strings holding one byte per char
 * (latin1), so names that are not valid UTF-8 survive readdir → lstat → unlink unchanged. Convert
 * with `bytes()` for fs calls and `shown()` for reports.
 *
 * A leaf: it imports only other leaves.
 */
import { promises as fsp, constants as fsc, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { UnsafePathError } from './errors.js';

// ---------------------------------------------------------------------------------------------
// Byte-string paths

/** The bytes of a byte-string path, for fs calls. */
export function bytes(p: string): Buffer {
  return Buffer.from(p, 'latin1');
}

/** A byte-string path as text for reports (invalid UTF-8 shows as U+FFFD). */
export function shown(p: string): string {
  return Buffer.from(p, 'latin1').toString('utf8');
}

/** A path written in config (UTF-8 text) as a byte string. */
export function fromText(p: string): string {
  return Buffer.from(p, 'utf8').toString('latin1');
}

/** Joins byte-string path parts with '/', ignoring empty parts. */
export function joinRel(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}

/** Normalises a config-given relative path; undefined when it is absolute or climbs out with `..`. */
export function safeRel(p: string): string | undefined {
  if (p.startsWith('/')) return undefined;
  const norm = path.posix.normalize(p).replace(/\/+$/, '');
  if (norm === '.' || norm === '' || norm === '..' || norm.startsWith('../')) return undefined;
  return norm;
}

// ---------------------------------------------------------------------------------------------
// No-follow directory access

/** O_CLOEXEC is not exported by node:fs constants on every build; it is 0o2000000 on Linux. */
const O_CLOEXEC = 0o2000000;
const DIR_FLAGS = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW | O_CLOEXEC;
/** Opening a FIFO for reading blocks until a writer appears; O_NONBLOCK makes open return at once. */
export const FILE_READ_FLAGS = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | fsc.O_NOCTTY | O_CLOEXEC;

/** An open directory; children are addressed through /proc/self/fd so no parent is re-resolved. */
export class DirRef {
  private constructor(
    private readonly fh: FileHandle,
    /** Where the directory was when opened (byte string), for reports and mount checks. */
    readonly path: string,
  ) {}

  /** Opens a directory without following a symlink in its last component (byte-string path). */
  static async open(abs: string): Promise<DirRef> {
    return new DirRef(await fsp.open(bytes(abs), DIR_FLAGS), abs);
  }

  /** The fd, for callers that pass /proc/<pid>/fd/<fd> to a helper process. */
  get fd(): number {
    return this.fh.fd;
  }

  /** A path the kernel resolves inside this directory (the empty name is the directory itself). */
  at(name = ''): Buffer {
    // "<fd>/." rather than "<fd>": the last component is then the directory, not the fd's magic
    // link, so tools that refuse links (chattr) act on it too.
    return bytes(name === '' ? `/proc/self/fd/${this.fh.fd}/.` : `/proc/self/fd/${this.fh.fd}/${name}`);
  }

  /** lstat of a child; undefined when it does not exist. */
  async lstat(name: string): Promise<Stats | undefined> {
    try {
      return await fsp.lstat(this.at(name));
    } catch (err) {
      if (isGone(err)) return undefined;
      throw err;
    }
  }

  /** Opens a child directory without following it; undefined when it is absent, a symlink or no dir. */
  async openChild(name: string): Promise<DirRef | undefined> {
    try {
      return new DirRef(await fsp.open(this.at(name), DIR_FLAGS), joinPath(this.path, name));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  /** Names in this directory, as byte strings. */
  async list(): Promise<string[]> {
    const names = await fsp.readdir(this.at(), { encoding: 'buffer' });
    return names.map((b) => b.toString('latin1'));
  }

  /** fstat of the directory itself. */
  stat(): Promise<Stats> {
    return this.fh.stat();
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}

/** Joins a directory and one name (byte strings). */
export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}

/** ENOENT/ENOTDIR: the thing is simply not there (expected absence). */
export function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Where a relative path leads when walked from a root without following any link. */
export type Resolution =
  | { kind: 'absent' }
  /** The last component exists (it may itself be a symlink: `stat` is its lstat). */
  | { kind: 'found'; dir: DirRef; name: string; stat: Stats }
  /** A parent component is a symlink (or a non-directory): `name` in `dir` is that component. */
  | { kind: 'link-in-path'; dir: DirRef; name: string; stat: Stats; at: string };

/**
 * Walks `rel` (byte string) from `root` with lstat, component by component, never following a
 * link. The caller closes `dir` of a non-absent result.
 */
export async function resolveUnder(root: string, rel: string): Promise<Resolution> {
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new UnsafePathError('path climbs out of its root', rel, root);
  let dir: DirRef;
  try {
    dir = await DirRef.open(root);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return { kind: 'absent' };
    throw err;
  }
  const walked: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i] as string;
    const st = await dir.lstat(name);
    if (!st) {
      await dir.close();
      return { kind: 'absent' };
    }
    if (i === parts.length - 1) return { kind: 'found', dir, name, stat: st };
    walked.push(name);
    if (!st.isDirectory()) {
      if (st.isSymbolicLink()) return { kind: 'link-in-path', dir, name, stat: st, at: walked.join('/') };
      await dir.close();
      return { kind: 'absent' };
    }
    const next = await dir.openChild(name);
    if (!next) {
      // Swapped between lstat and open: look again next pass rather than guess.
      const again = await dir.lstat(name);
      if (again?.isSymbolicLink()) return { kind: 'link-in-path', dir, name, stat: again, at: walked.join('/') };
      await dir.close();
      return { kind: 'absent' };
    }
    await dir.close();
    dir = next;
  }
  // rel was empty: the root itself.
  await dir.close();
  return { kind: 'absent' };
}

/** Opens the directory `rel` (byte string, '' = root) under `root` without following links. */
export async function openDirUnder(root: string, rel: string): Promise<DirRef | undefined> {
  if (rel === '') return DirRef.open(root).catch(() => undefined);
  const r = await resolveUnder(root, rel);
  if (r.kind === 'absent') return undefined;
  try {
    if (r.kind !== 'found' || !r.stat.isDirectory()) return undefined;
    return await r.dir.openChild(r.name);
  } finally {
    await r.dir.close();
  }
}
