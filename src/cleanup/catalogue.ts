/**
 * The credential catalogue: the files tools write in the runner user's home (and
 * the runner's own config files in its root), each with a kind name for the report. Also the
 * no-follow path access that every reader and remover of a job-controlled tree in src/cleanup uses:
 * a directory is opened with O_NOFOLLOW and its children are reached through
 * `/proc/self/fd/<fd>/<name>`, which the kernel resolves inside that very directory (an openat() for
 * Node). A job that swaps a parent for a symlink between our check and our unlink cannot redirect
 * the unlink outside the tree.
 *
 * Paths inside job-controlled trees are "byte strings": JS strings holding one byte per char
 * (latin1), so names that are not valid UTF-8 survive readdir → lstat → unlink unchanged. Convert
 * with `bytes()` for fs calls and `shown()` for reports.
 */
import { promises as fsp, constants as fsc, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { runCommand } from '../lib/process.js';
import { UnsafePathError } from '../lib/errors.js';
import { readMountInfo, mountsUnder } from './mounts.js';
import type { Removed, Slot } from './types.js';

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

function joinPath(dir: string, name: string): string {
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

// ---------------------------------------------------------------------------------------------
// Removal without following links

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

// ---------------------------------------------------------------------------------------------
// The catalogue

/** Where a catalogue path starts. */
export type CatalogueBase = 'home' | 'runnerRoot' | 'xdgRuntime' | 'jobRoot';

/** One kind of credential file. */
export interface CatalogueEntry {
  /** Name in the report, e.g. "docker", "aws". */
  kind: string;
  base: CatalogueBase;
  /** Relative to the base; may hold `*`, `?`, `[..]` and `**` when `glob` is true. */
  path: string;
  glob?: boolean;
  /** Globs (same base) this entry never matches. */
  exclude?: string[];
}

/** Every credential file the catalogue knows, in report order. */
export const CREDENTIAL_CATALOGUE: readonly CatalogueEntry[] = [
  { kind: 'docker', base: 'home', path: '.docker/config.json' },
  // The per-job DOCKER_CONFIG directories the agent hands out live under slot.jobRoot.
  { kind: 'docker', base: 'jobRoot', path: '*/config.json', glob: true },
  { kind: 'docker', base: 'jobRoot', path: '*/*/config.json', glob: true },
  { kind: 'containers', base: 'home', path: '.config/containers/auth.json' },
  { kind: 'containers', base: 'xdgRuntime', path: 'containers/auth.json' },
  { kind: 'npm', base: 'home', path: '.npmrc' },
  { kind: 'yarn', base: 'home', path: '.yarnrc' },
  { kind: 'yarn', base: 'home', path: '.yarnrc.yml' },
  { kind: 'pip', base: 'home', path: '.config/pip/pip.conf' },
  { kind: 'pip', base: 'home', path: '.pip/pip.conf' },
  { kind: 'pypirc', base: 'home', path: '.pypirc' },
  { kind: 'git-credentials', base: 'home', path: '.git-credentials' },
  { kind: 'git-credentials', base: 'home', path: '.config/git/credentials' },
  // gitconfig can carry credential helpers, tokens in url.*.insteadOf and core.hooksPath: it is
  // removed when it differs from the baseline, and the home step puts the baseline copy back.
  { kind: 'git-config', base: 'home', path: '.gitconfig' },
  { kind: 'git-config', base: 'home', path: '.config/git/config' },
  { kind: 'netrc', base: 'home', path: '.netrc' },
  { kind: 'netrc', base: 'home', path: '_netrc' },
  { kind: 'aws', base: 'home', path: '.aws/credentials' },
  { kind: 'aws', base: 'home', path: '.aws/config' },
  { kind: 'gcloud', base: 'home', path: '.config/gcloud' },
  { kind: 'azure', base: 'home', path: '.azure' },
  { kind: 'kube', base: 'home', path: '.kube/config' },
  { kind: 'gh', base: 'home', path: '.config/gh/hosts.yml' },
  { kind: 'ssh-authorized-keys', base: 'home', path: '.ssh/authorized_keys' },
  { kind: 'ssh-authorized-keys', base: 'home', path: '.ssh/authorized_keys2' },
  {
    kind: 'ssh-key',
    base: 'home',
    path: '.ssh/*',
    glob: true,
    exclude: ['.ssh/known_hosts', '.ssh/known_hosts.old', '.ssh/*.pub', '.ssh/config', '.ssh/authorized_keys*'],
  },
  { kind: 'gnupg', base: 'home', path: '.gnupg' },
  { kind: 'maven', base: 'home', path: '.m2/settings.xml' },
  { kind: 'maven', base: 'home', path: '.m2/settings-security.xml' },
  { kind: 'gradle', base: 'home', path: '.gradle/gradle.properties' },
  { kind: 'cargo', base: 'home', path: '.cargo/credentials' },
  { kind: 'cargo', base: 'home', path: '.cargo/credentials.toml' },
  { kind: 'nuget', base: 'home', path: '.nuget/NuGet/NuGet.Config' },
  { kind: 'terraform', base: 'home', path: '.terraform.d/credentials.tfrc.json' },
  { kind: 'vault', base: 'home', path: '.vault-token' },
  { kind: 'helm', base: 'home', path: '.config/helm/registry/config.json' },
  { kind: 'helm', base: 'home', path: '.config/helm/repositories.yaml' },
  { kind: 'gem', base: 'home', path: '.gem/credentials' },
  { kind: 'composer', base: 'home', path: '.composer/auth.json' },
  { kind: 'composer', base: 'home', path: '.config/composer/auth.json' },
  { kind: 'runner-credentials', base: 'runnerRoot', path: '.credentials' },
  { kind: 'runner-credentials', base: 'runnerRoot', path: '.credentials_rsaparams' },
  { kind: 'runner-credentials', base: 'runnerRoot', path: '.runner' },
  { kind: 'runner-credentials', base: 'runnerRoot', path: '*_migrated', glob: true },
];

/** The roots catalogue paths start from, for one slot (byte strings). */
export interface CatalogueRoots {
  home: string;
  runnerRoot: string;
  /** `$XDG_RUNTIME_DIR` of the runner user; default /run/user/<uid>. */
  xdgRuntime: string;
  jobRoot: string;
}

/** The catalogue roots of a slot. */
export function catalogueRoots(slot: Slot): CatalogueRoots {
  return {
    home: fromText(slot.user.home),
    runnerRoot: fromText(slot.runnerRoot),
    xdgRuntime: `/run/user/${slot.user.uid}`,
    jobRoot: fromText(slot.jobRoot),
  };
}

/** The catalogue plus the policy's extra paths and globs (relative to home; unsafe ones returned apart). */
export function catalogueWithExtras(
  extraPaths: readonly string[],
  extraGlobs: readonly string[],
): { entries: CatalogueEntry[]; rejected: string[] } {
  const entries = [...CREDENTIAL_CATALOGUE];
  const rejected: string[] = [];
  for (const p of extraPaths) {
    const rel = safeRel(p);
    if (rel === undefined) rejected.push(p);
    else entries.push({ kind: 'extra', base: 'home', path: fromText(rel) });
  }
  for (const g of extraGlobs) {
    const rel = safeRel(g);
    if (rel === undefined) rejected.push(g);
    else entries.push({ kind: 'extra', base: 'home', path: fromText(rel), glob: true });
  }
  return { entries, rejected };
}

/** A catalogue file that exists. */
export interface FoundCredential {
  kind: string;
  base: CatalogueBase;
  /** Absolute root the path starts from. */
  root: string;
  /** Byte-string path relative to root. */
  rel: string;
  /** lstat of the entry (a symlink is reported as one, never followed). */
  stat: Stats;
  /** Set when a parent component is a symlink: `rel` is then that symlink, not the catalogue path. */
  linkInPath?: boolean;
}

/** Converts a glob (one path, `/`-separated) to an anchored RegExp; `*` also matches dotfiles. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  const segs = glob.split('/');
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    if (seg === '**') {
      re += last ? '.*' : '(?:[^/]*/)*';
      return;
    }
    for (let j = 0; j < seg.length; j++) {
      const c = seg[j] as string;
      if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else if (c === '[') {
        const end = seg.indexOf(']', j + 1);
        if (end < 0) re += '\\[';
        else {
          const body = seg.slice(j + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\');
          re += `[${body}]`;
          j = end;
        }
      } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
    }
    if (!last) re += '/';
  });
  return new RegExp(`^${re}$`, 's');
}

/**
 * Entries visited at most by one glob walk: a job can create millions of files; a glob that would
 * need to look at more reports what it found so far (the home step and verify still see the rest).
 */
const GLOB_WALK_LIMIT = 200_000;
/** `**` descends at most this deep. */
const GLOB_MAX_DEPTH = 32;

async function globWalk(root: string, glob: string): Promise<{ rel: string; stat: Stats }[]> {
  const segs = glob.split('/');
  const literal: string[] = [];
  for (const s of segs) {
    if (/[*?[]/.test(s)) break;
    literal.push(s);
  }
  const rest = segs.slice(literal.length);
  const maxDepth = rest.includes('**') ? GLOB_MAX_DEPTH : rest.length;
  const re = globToRegExp(glob);
  const start = literal.join('/');
  const out: { rel: string; stat: Stats }[] = [];
  if (rest.length === 0) {
    const st = await lstatOrUndef(path.posix.join(root, start));
    if (st) out.push({ rel: start, stat: st });
    return out;
  }
  // Walk the literal prefix without following links.
  if (start !== '') {
    const r = await resolveUnder(root, start);
    if (r.kind === 'absent') return out;
    await r.dir.close();
    if (r.kind !== 'found' || !r.stat.isDirectory()) return out;
  }
  let visited = 0;
  const queue: { rel: string; depth: number }[] = [{ rel: start, depth: 0 }];
  while (queue.length > 0) {
    const { rel, depth } = queue.shift() as { rel: string; depth: number };
    let names: Buffer[];
    try {
      names = await fsp.readdir(bytes(path.posix.join(root, rel)), { encoding: 'buffer' });
    } catch {
      continue;
    }
    for (const b of names) {
      if (++visited > GLOB_WALK_LIMIT) return out;
      const childRel = joinRel(rel, b.toString('latin1'));
      const st = await lstatOrUndef(path.posix.join(root, childRel));
      if (!st) continue;
      if (re.test(childRel)) out.push({ rel: childRel, stat: st });
      else if (st.isDirectory() && depth + 1 < maxDepth) queue.push({ rel: childRel, depth: depth + 1 });
    }
  }
  return out;
}

async function lstatOrUndef(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(bytes(p));
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
}

/**
 * Finds every catalogue file that exists, without following links. A symlinked parent (e.g.
 * `~/.docker -> /etc`) is reported as the symlink itself with `linkInPath`, never followed.
 * Each path is reported once (the first entry that names it wins).
 */
export async function findCredentials(
  roots: CatalogueRoots,
  entries: readonly CatalogueEntry[],
): Promise<FoundCredential[]> {
  const seen = new Set<string>();
  const out: FoundCredential[] = [];
  const add = (f: FoundCredential): void => {
    const key = `${f.root}\0${f.rel}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push(f);
  };
  for (const e of entries) {
    const root = roots[e.base];
    if (e.glob) {
      const excludes = (e.exclude ?? []).map(globToRegExp);
      for (const hit of await globWalk(root, e.path)) {
        if (excludes.some((x) => x.test(hit.rel))) continue;
        add({ kind: e.kind, base: e.base, root, rel: hit.rel, stat: hit.stat });
      }
      // A symlinked parent of the glob's literal prefix is reported like a literal path's.
      const segs = e.path.split('/');
      const firstGlob = segs.findIndex((s) => /[*?[]/.test(s));
      const prefix = segs.slice(0, firstGlob < 0 ? segs.length : firstGlob).join('/');
      if (prefix !== '') {
        const r = await resolveUnder(root, `${prefix}/x`);
        if (r.kind !== 'absent') {
          await r.dir.close();
          if (r.kind === 'link-in-path') add({ kind: e.kind, base: e.base, root, rel: r.at, stat: r.stat, linkInPath: true });
        }
      }
      continue;
    }
    const r = await resolveUnder(root, e.path);
    if (r.kind === 'absent') continue;
    await r.dir.close();
    if (r.kind === 'found') add({ kind: e.kind, base: e.base, root, rel: e.path, stat: r.stat });
    else add({ kind: e.kind, base: e.base, root, rel: r.at, stat: r.stat, linkInPath: true });
  }
  return out;
}

/** Removes one found credential (re-resolved without following links). Returns what went. */
export async function removeCredential(found: FoundCredential): Promise<Removed> {
  const r = await resolveUnder(found.root, found.rel);
  if (r.kind === 'absent') return { count: 0, bytes: 0 };
  try {
    // For 'link-in-path' (a parent became a symlink since the scan) this removes that link, never
    // what it points at.
    return await removeEntry(r.dir, r.name);
  } finally {
    await r.dir.close();
  }
}
