/**
 * Compares a snapshot with the baseline: metadata first (type, inode, size, mode, owner, mtime,
 * ctime), contents where the metadata changed and the baseline has a hash, and always for the few
 * critical files of ALWAYS_HASH. Kernel and network objects compare by key and value; processes
 * and listeners count only when new. Every difference not excepted becomes a DriftEntry that says
 * who likely made it.
 */
import path from 'node:path';
import type { DriftEntry, FileMeta, Snapshot, SurfaceName } from './types.js';
import { ALWAYS_HASH } from './surfaces.js';
import { hashFile } from './walk.js';
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

/** Kinds of object that count only when added (a service that stopped is not a persistence). */
const ADD_ONLY = new Set(['process', 'listener']);

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
    case 'filecap':
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

/** Every drift between `base` and `now`, sorted by surface then object. */
export function compareSnapshots(base: Snapshot, now: Snapshot, o: CompareOptions): DriftEntry[] {
  const out: DriftEntry[] = [];
  const alwaysHash = new Set(ALWAYS_HASH);
  const contentAlways = (p: string, surface: SurfaceName): boolean =>
    alwaysHash.has(p) || CONTENT_SURFACES.has(surface) || (surface === 'root-home' && ROOT_CONFIG.test(p));
  const real = (p: string): string => (o.root === '/' ? p : path.join(o.root, p));
  for (const [p, cur] of Object.entries(now.files)) {
    // No exception covers a setuid or setgid file: it is a root shell wherever it is.
    if (o.exceptions.matches(p) && !(cur.type === 'f' && (cur.mode & 0o6000) !== 0)) continue;
    const surface = now.fileSurface[p] ?? 'etc';
    const was = base.files[p];
    if (!was) {
      out.push({ surface, object: p, change: 'added', after: describe(cur), likely: fileAuthor(cur, o.job) });
      continue;
    }
    const why = fileChange(was, cur, contentAlways(p, surface) ? real(p) : undefined, real(p));
    if (why)
      out.push({
        surface,
        object: p,
        change: 'modified',
        before: describe(was),
        after: `${describe(cur, why.hash)} (${why.what})`,
        likely: fileAuthor(cur, o.job),
      });
  }
  for (const [p, was] of Object.entries(base.files)) {
    if (p in now.files || o.exceptions.matches(p)) continue;
    const surface = base.fileSurface[p] ?? 'etc';
    out.push({ surface, object: p, change: 'removed', before: describe(was), likely: o.job ? 'during the job' : 'since the baseline' });
  }
  for (const [k, v] of Object.entries(now.objects)) {
    if (o.exceptions.matches(k) && !taintedModule(k, v)) continue;
    const was = base.objects[k];
    if (was === undefined) out.push({ surface: objectSurface(k), object: k, change: 'added', after: v, likely: objectAuthor(k, v, o.job) });
    else if (was !== v && !ADD_ONLY.has(k.slice(0, k.indexOf(':')))) {
      out.push({ surface: objectSurface(k), object: k, change: 'modified', before: was, after: v, likely: objectAuthor(k, v, o.job) });
    }
  }
  for (const [k, was] of Object.entries(base.objects)) {
    if (k in now.objects || o.exceptions.matches(k) || ADD_ONLY.has(k.slice(0, k.indexOf(':')))) continue;
    out.push({
      surface: objectSurface(k),
      object: k,
      change: 'removed',
      before: was,
      likely: o.job ? 'during the job' : 'since the baseline',
    });
  }
  return out.sort((a, b) => a.surface.localeCompare(b.surface) || a.object.localeCompare(b.object));
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
