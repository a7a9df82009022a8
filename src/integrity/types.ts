/**
 * The shapes of the whole-host integrity check: a snapshot of the host's persistence surfaces, the
 * baseline that holds one, and the drift found between them. See docs/integrity.md.
 */
import type { Policy } from '../policy/types.js';
import type { FileTable } from './file-table.js';

/** One surface name of policy `host.integrity.surfaces`. */
export type SurfaceName = Policy['host']['integrity']['surfaces'][number];

/** The metadata of one file-system entry; `hash` (sha256 hex) only for small files and on demand. */
export interface FileMeta {
  /** 'f' file, 'd' directory, 'l' symlink, 'o' other (fifo, socket, device). */
  type: 'f' | 'd' | 'l' | 'o';
  ino: number;
  size: number;
  /** Full st_mode permission bits, setuid/setgid/sticky included (no type bits). */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Symlink target. */
  link?: string;
  hash?: string;
}

/** A snapshot of every enabled surface. Paths are as the host sees them (without the test root). */
export interface Snapshot {
  /** path → metadata, per file surface. */
  files: Record<string, FileMeta>;
  /** Which surface each file path came from. */
  fileSurface: Record<string, SurfaceName>;
  /** `<kind>:<key>` → a one-line value (a user's fields, a sysctl's value, a mount's source...). */
  objects: Record<string, string>;
  /** Surfaces that could not be read (a missing tool, EACCES): named so their absence is seen. */
  unreadable: string[];
}

/** The snapshot a baseline holds: its file entries in a compact table (file-table.ts says why). */
export interface BaselineSnapshot {
  files: FileTable;
  objects: Record<string, string>;
  unreadable: string[];
}

/** What identifies the image a baseline was taken on. */
export interface HostIdentity {
  machineId: string;
  kernel: string;
  /** sha256 of the sorted `package version` lines of the package database; '' without dpkg. */
  packageSet: string;
  packageCount: number;
}

/** The system baseline; the stored file's digest covers all of it. */
export interface SystemBaseline {
  format: 2;
  takenAt: string;
  identity: HostIdentity;
  surfaces: SurfaceName[];
  snapshot: BaselineSnapshot;
}

/** One change between the baseline and now. */
export interface DriftEntry {
  surface: SurfaceName;
  /** A path, or `<kind>:<key>` for kernel and network objects. */
  object: string;
  change: 'added' | 'removed' | 'modified';
  before?: string;
  after?: string;
  /** Who likely made it, from the owner, the time and whether sudo was granted. */
  likely: string;
}

/** Why a stored baseline cannot be used. `kind` is what callers branch on. */
export class IntegrityBaselineError extends Error {
  override readonly name = 'IntegrityBaselineError';
  constructor(
    readonly kind: 'missing' | 'corrupt' | 'other-image' | 'unsafe' | 'replaced',
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
