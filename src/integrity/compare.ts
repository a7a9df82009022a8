/**
 * Compares a snapshot with the baseline: metadata first (type, inode, size, mode, owner, mtime,
 * ctime), contents where the metadata changed and the baseline has a hash, and always for the few
 * critical files of ALWAYS_HASH. Kernel and network objects compare by key and value; processes
 * and listeners count only when new. Every difference not excepted becomes a DriftEntry that says
 * who likely made it.
 */
import path from 'node:path';
import type { DriftEntry, FileMeta, Snapshot, SurfaceName } from './types.js';
import { ALWAYS_HASH, surfaceExceptions } from './surfaces.js';
import { hashFile } from './walk.js';
import { FileTable } from './file-table.js';
import type { GlobSet } from './glob.js';

/** What attribution knows about the job the check follows. */
export interface JobWindow {
  /** True for the runner user's uid and its subordinate ids. */
  jobUid: (uid: number) => boolean;
  /** When the job's listener started (ms since the epoch). */
  startedAtMs: number;
  /** The runner user had sudo for this job. */
  sudo: boolean;
}

/** What the comparison needs besides the two snapshots. */
export interface CompareOptions {
  /** Prefix for reading contents on demand (same as the snapshot's). */
  root: string;
  exceptions: GlobSet;
  /** Undefined at preflight: changes are then only "since the baseline". */
  job?: JobWindow;
}

/**
 * File times come from the kernel's coarse clock, a tick behind Date.now(); a change this close to
 * the job's start is counted as the job's rather than called older.
 */
const CLOCK_SLACK_MS = 2_000;

/**
 * Kinds of object that count only when added (a service that stopped is not a persistence); eBPF
 * objects are read only above a watermark (bpf-state.ts), the baseline's are a record.
 */
const ADD_ONLY = new Set(['process', 'listener', 'bpf']);

/** Which surface an object key belongs to. */
export function objectSurface(key: string): SurfaceName {
  const kind = key.slice(0, key.indexOf(':'));
  switch (kind) {
    case 'user':
    case 'group':
      return 'accounts';
    case 'module':
      return 'modules';
    case 'mount':
      return 'mounts';
    case 'route':
      return 'routes';
    case 'sysctl':
    case 'binfmt':
      return 'sysctl';
    case 'listener':
      return 'listeners';
    case 'process':
      return 'processes';
    case 'package':
      return 'package-state';
    case 'bpf':
      return 'bpf';
    case 'filecap':
    case 'acl':
      return 'setuid';
    default:
      return 'netfilter';
  }
}

/**
 * Small configuration whose content is compared at every check, whatever its metadata says (when
 * the baseline holds its hash): metadata can be forged by a root job that moves the clock back or
 * writes the block device. Not /usr/local or root's home at depth: toolchains keep thousands of small files there.
 */
const CONTENT_SURFACES: ReadonlySet<SurfaceName> = new Set<SurfaceName>(['etc', 'cron', 'systemd', 'authorized-keys']);
/** Root's start-up files and ssh configuration: configuration in a home otherwise full of caches. */
const ROOT_CONFIG = /^\/root\/(?:\.[^/]+|\.ssh\/[^/]+)$/;

/** A module the kernel marked tainted (out of tree, unsigned, forced): no exception covers it. */
function taintedModule(key: string, value: string): boolean {
  return key.startsWith('module:') && /\([A-Z]+\)/.test(value);
}

/**
 * Compares file entries with a baseline's table as a walk hands them over, keeping only what
 * differs: the current state of the host is never held whole (see file-table.ts for why memory
 * matters). `finish` adds what the walk did not reach (removed).
 */
export class FileComparer {
  private readonly seen: Uint8Array;
  private readonly drift: DriftEntry[] = [];
  /** Paths not in the baseline: surface rank (lower wins when two trees reach one path) and entry. */
  private readonly added = new Map<string, { rank: number; entry: DriftEntry }>();
  /** Regular files new or with another inode, size, mode or ctime: their file capability is read again. */
  readonly changedFiles: string[] = [];
  /**
   * Directories new or with another inode, mode, owner or ctime: their ACLs (a default ACL makes
   * every file root later creates there the runner user's to write) are read again (file-acls.ts).
   */
  readonly changedDirs: string[] = [];
  private readonly alwaysHash = new Set(ALWAYS_HASH);
  private readonly bySurface = surfaceExceptions();

  constructor(
    private readonly base: FileTable,
    private readonly o: CompareOptions,
  ) {
    this.seen = new Uint8Array(base.size);
  }

  /** One current entry; `rank` orders surfaces when two trees reach the same new path. */
  visit(surface: SurfaceName, rank: number, p: string, cur: FileMeta): void {
    const row = this.base.row(p);
    if (cur.type === 'f' && (row === undefined || !this.base.sameStat(row, cur))) this.changedFiles.push(p);
    else if (cur.type === 'd' && (row === undefined || !this.base.sameStat(row, cur))) this.changedDirs.push(p);
    if (row !== undefined) {
      if (this.seen[row]) return;
      this.seen[row] = 1;
    }
    // No exception covers a setuid or setgid file: it is a root shell wherever it is.
    if (this.excepted(p, row === undefined ? surface : this.base.surface(row)) && !(cur.type === 'f' && (cur.mode & 0o6000) !== 0)) return;
    if (row === undefined) {
      const had = this.added.get(p);
      if (!had || rank < had.rank)
        this.added.set(p, {
          rank,
          entry: { surface, object: p, change: 'added', after: describe(cur), likely: fileAuthor(cur, this.o.job) },
        });
      return;
    }
    // Unchanged metadata outside the content-compared configuration: nothing to look at.
    const s = this.base.surface(row);
    const content = this.alwaysHash.has(p) || CONTENT_SURFACES.has(s) || (s === 'root-home' && ROOT_CONFIG.test(p));
    if (!content && this.base.sameStat(row, cur)) return;
    const was = this.base.meta(row);
    const real = this.o.root === '/' ? p : path.join(this.o.root, p);
    const why = fileChange(was, cur, content ? real : undefined, real);
    if (why)
      this.drift.push({
        surface: s,
        object: p,
        change: 'modified',
        before: describe(was),
        after: `${describe(cur, why.hash)} (${why.what})`,
        likely: fileAuthor(cur, this.o.job),
      });
  }

  /** The policy's exceptions, and those of the entry's surface only (the var surface's churn). */
  private excepted(p: string, surface: SurfaceName): boolean {
    return this.o.exceptions.matches(p) || (this.bySurface[surface]?.matches(p) ?? false);
  }

  /** Whether the walk reached this baseline path. */
  reached(p: string): boolean {
    const row = this.base.row(p);
    return row !== undefined && this.seen[row] === 1;
  }

  /** The file drift: what was visited, and every baseline entry the walk did not reach. */
  finish(): DriftEntry[] {
    const out = [...this.drift, ...[...this.added.values()].map((a) => a.entry)];
    for (let row = 0; row < this.base.size; row++) {
      if (this.seen[row]) continue;
      const p = this.base.path(row);
      if (this.excepted(p, this.base.surface(row))) continue;
      out.push({
        surface: this.base.surface(row),
        object: p,
        change: 'removed',
        before: describe(this.base.meta(row)),
        likely: this.o.job ? 'during the job' : 'since the baseline',
      });
    }
    return out;
  }
}

/** Kernel, network and account objects: by key and value; processes and listeners only when new. */
export function compareObjects(base: Record<string, string>, now: Record<string, string>, o: CompareOptions): DriftEntry[] {
  const out: DriftEntry[] = [];
  for (const [k, v] of Object.entries(now)) {
    if (o.exceptions.matches(k) && !taintedModule(k, v)) continue;
    const was = base[k];
    if (was === undefined) out.push({ surface: objectSurface(k), object: k, change: 'added', after: v, likely: objectAuthor(k, v, o.job) });
    else if (was !== v && !ADD_ONLY.has(k.slice(0, k.indexOf(':')))) {
      out.push({ surface: objectSurface(k), object: k, change: 'modified', before: was, after: v, likely: objectAuthor(k, v, o.job) });
    }
  }
  for (const [k, was] of Object.entries(base)) {
    if (k in now || o.exceptions.matches(k) || ADD_ONLY.has(k.slice(0, k.indexOf(':')))) continue;
    out.push({
      surface: objectSurface(k),
      object: k,
      change: 'removed',
      before: was,
      likely: o.job ? 'during the job' : 'since the baseline',
    });
  }
  return out;
}

/** Drift sorted by surface then object: the order of the report. */
export function sortDrift(d: DriftEntry[]): DriftEntry[] {
  return d.sort((a, b) => a.surface.localeCompare(b.surface) || a.object.localeCompare(b.object));
}

/** Every drift between two snapshots held whole (small trees; the guard streams instead). */
export function compareSnapshots(base: Snapshot, now: Snapshot, o: CompareOptions): DriftEntry[] {
  const table = new FileTable();
  for (const [p, m] of Object.entries(base.files)) table.set(p, m, base.fileSurface[p] ?? 'etc');
  const files = new FileComparer(table, o);
  for (const [p, m] of Object.entries(now.files)) files.visit(now.fileSurface[p] ?? 'etc', 0, p, m);
  return sortDrift([...files.finish(), ...compareObjects(base.objects, now.objects, o)]);
}

/** Why a file differs, or undefined when it does not (a rewrite with the same content is no drift). */
function fileChange(
  was: FileMeta,
  cur: FileMeta,
  alwaysHashPath: string | undefined,
  realPath: string,
): { what: string; hash?: string } | undefined {
  if (was.type !== cur.type) return { what: 'type changed' };
  const owner: string[] = [];
  if (was.mode !== cur.mode) owner.push('mode');
  if (was.uid !== cur.uid || was.gid !== cur.gid) owner.push('owner');
  if (was.type === 'l' && was.link !== cur.link) owner.push('target');
  // A directory's times and size follow its entries, which are compared one by one.
  if (was.type === 'd') return owner.length ? { what: `${owner.join(', ')} changed` } : undefined;
  const times = was.ino !== cur.ino || was.size !== cur.size || was.mtimeMs !== cur.mtimeMs || was.ctimeMs !== cur.ctimeMs;
  if (!times && !alwaysHashPath) return owner.length ? { what: `${owner.join(', ')} changed` } : undefined;
  if (cur.type !== 'f') return owner.length || times ? { what: [...owner, 'metadata'].join(', ') + ' changed' } : undefined;
  if (was.hash === undefined) return owner.length || times ? { what: [...owner, 'size or times'].join(', ') + ' changed' } : undefined;
  const h = hashFile(realPath);
  if (h === was.hash) return owner.length ? { what: `${owner.join(', ')} changed` } : undefined;
  return { what: [...owner, 'content'].join(', ') + ' changed', ...(h ? { hash: h } : {}) };
}

function describe(m: FileMeta, hash = m.hash): string {
  const kind = { f: 'file', d: 'dir', l: 'symlink', o: 'special' }[m.type];
  const extra = m.type === 'l' ? ` -> ${m.link ?? '?'}` : m.type === 'f' ? ` ${m.size} B${hash ? ` sha256:${hash.slice(0, 12)}` : ''}` : '';
  return `${kind} ${m.mode.toString(8).padStart(4, '0')} ${m.uid}:${m.gid}${extra} mtime ${new Date(m.mtimeMs).toISOString()}`;
}

function fileAuthor(m: FileMeta, job: JobWindow | undefined): string {
  if (!job) return m.uid === 0 ? 'root, since the baseline' : `uid ${m.uid}, since the baseline`;
  if (job.jobUid(m.uid)) return `the job (files of uid ${m.uid}, the runner user or its user namespaces)`;
  if (m.ctimeMs < job.startedAtMs - CLOCK_SLACK_MS) return `uid ${m.uid} before the job started (not the job)`;
  if (m.uid !== 0) return `uid ${m.uid} during the job`;
  return job.sudo
    ? 'the job through sudo (root, during the job)'
    : 'root during the job (a root process, an engine in host mode, or a privilege escalation)';
}

function objectAuthor(key: string, value: string, job: JobWindow | undefined): string {
  const user = /(?:^|\s)user (\S+)/.exec(value)?.[1] ?? (key.startsWith('process:') ? key.split(':')[1] : undefined);
  if (!job) return user ? `${user}, since the baseline` : 'since the baseline';
  if (user && user !== 'root' && user !== '0') return `${user} during the job`;
  return job.sudo
    ? 'the job through sudo (root, during the job)'
    : 'root during the job (a root process, an engine in host mode, or a privilege escalation)';
}
