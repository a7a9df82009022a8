/**
 * The runner user's home baseline: a manifest of every entry of the home (path,
 * type, mode, owner, size, sha256 of content, symlink target) taken by `runner-warden baseline` at
 * image build or first boot, and a root-only, content-addressed copy of the files. Stored in
 * `<slot.stateDir>/home-baseline/` (mode 700).
 *
 * Comparing is stat-first (size + mtime + ctime + inode, like git's index): a job cannot set
 * ctime, so an entry whose stat matches the recorded one was not written since, and only entries
 * whose stat moved are hashed. That keeps the check of a 50,000-file home well under 2 s.
 */
import {
  promises as fsp,
  closeSync,
  existsSync,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  readdirSync,
  readlinkSync,
  renameSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { ensureDir, writeFileAtomic } from '../lib/fs.js';
import type { Clock } from '../lib/clock.js';
import { systemClock } from '../lib/clock.js';
import { bytes, fromText, joinRel, safeRel, shown, FILE_READ_FLAGS, isGone } from '../lib/nofollow.js';
import type { Slot } from './types.js';

/** Kinds of entries a manifest records. `other` (FIFO, socket, device) is recorded, never read. */
export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

/** One entry of a manifest; paths and targets are byte strings (catalogue.ts). */
export interface ManifestEntry {
  rel: string;
  type: EntryType;
  /** Permission bits (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  sha256?: string;
  target?: string;
  /** Stat cache: when ino, mtime and ctime still match, the content did not change. */
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  /** When the stat cache was recorded (epoch ms). */
  seenAt: number;
}

/** Recorded entries of one tree, indexed by path and by parent directory. */
export interface TreeIndex {
  entries: Map<string, ManifestEntry>;
  /** Names (byte strings) of each recorded directory's children. */
  children: Map<string, string[]>;
}

/** A loaded home baseline. */
export interface HomeBaseline extends TreeIndex {
  version: 1;
  home: string;
  takenAt: number;
}

/** Builds the index of a list of entries. */
export function indexEntries(list: Iterable<ManifestEntry>): TreeIndex {
  const entries = new Map<string, ManifestEntry>();
  const children = new Map<string, string[]>();
  for (const e of list) {
    entries.set(e.rel, e);
    if (e.rel === '') continue;
    const slash = e.rel.lastIndexOf('/');
    const parent = slash < 0 ? '' : e.rel.slice(0, slash);
    const name = e.rel.slice(slash + 1);
    const names = children.get(parent);
    if (names) names.push(name);
    else children.set(parent, [name]);
  }
  return { entries, children };
}

/**
 * A file whose ctime is this close to the moment its stat was recorded may have been written again
 * within the same timestamp tick (kernels stamp with a coarse clock); such "racy" entries are
 * always hashed, as git does.
 */
export const RACY_MARGIN_MS = 1_000;
/** Work done between two yields to the event loop while walking, so /healthz keeps answering. */
export const YIELD_EVERY = 2_000;
/** Read size when hashing or copying. */
const CHUNK = 1 << 20;

/** Where a slot's home baseline lives. */
export function baselineDir(slot: Slot): string {
  return path.join(slot.stateDir, 'home-baseline');
}

function manifestFile(dir: string): string {
  return path.join(dir, 'manifest.json');
}

/** Path of the root-only copy of a file with this content hash. */
export function copyPath(slot: Slot, sha256: string): string {
  return path.join(baselineDir(slot), 'files', sha256);
}

/** Entry type from an lstat. */
export function typeOf(st: Stats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

/** Yields to the event loop. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Hashes a regular file without following links and without blocking on FIFOs; returns undefined
 * when the path is no longer a regular file with the inode `expectIno`, or is sparse, or grows past
 * `maxBytes` (the caller then counts the content as changed). `copyTo` also writes the bytes there.
 */
export async function hashFile(file: Buffer, expectIno: number, maxBytes: number, copyTo?: string): Promise<string | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, FILE_READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (isGone(err) || code === 'ELOOP' || code === 'ENXIO') return undefined;
    throw err;
  }
  let out: fsp.FileHandle | undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.ino !== expectIno || st.size > maxBytes || isSparse(st)) return undefined;
    const hash = createHash('sha256');
    if (copyTo) out = await fsp.open(copyTo, 'wx', 0o600);
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(st.size, 1)));
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) return undefined;
      hash.update(buf.subarray(0, bytesRead));
      if (out) await out.write(buf, 0, bytesRead);
    }
    return hash.digest('hex');
  } finally {
    await fh.close();
    await out?.close();
  }
}

/**
 * Files up to this size are hashed and copied with synchronous calls while recording a tree: one
 * read instead of a dozen promise round trips, which makes a 50,000-file baseline several times
 * faster; at 1 MiB a call blocks the event loop for about a millisecond.
 */
const SYNC_FILE_MAX = 1 << 20;

/** hashFile for small files, synchronously; undefined in the same cases. */
function hashSmallFileSync(file: Buffer, expectIno: number, copyDir?: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, FILE_READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (isGone(err) || code === 'ELOOP' || code === 'ENXIO') return undefined;
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.ino !== expectIno || st.size > SYNC_FILE_MAX || isSparse(st)) return undefined;
    const buf = Buffer.allocUnsafe(st.size + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n > st.size) return undefined; // grew while read
    }
    const data = buf.subarray(0, n);
    const sha = createHash('sha256').update(data).digest('hex');
    if (copyDir && !existsSync(path.join(copyDir, sha))) {
      const tmp = path.join(copyDir, `.tmp-${randomBytes(6).toString('hex')}`);
      writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
      renameSync(tmp, path.join(copyDir, sha));
    }
    return sha;
  } finally {
    closeSync(fd);
  }
}

/** A file with far fewer blocks than its size: reading it whole could read terabytes of zeros. */
export function isSparse(st: Stats): boolean {
  return st.blocks * 512 + 4096 < st.size;
}

/** Options of takeBaseline. */
export interface TakeBaselineOptions {
  /** Paths relative to home left out of the baseline (caches the policy keeps). */
  keep?: readonly string[];
  clock?: Clock;
}

/** What a baseline walk counted. */
export interface BaselineSummary {
  entries: number;
  files: number;
  bytes: number;
  durationMs: number;
}

/** Keep-list helper: which byte-string paths are kept, and which are their ancestors. */
export class KeepSet {
  private readonly keep: string[];
  constructor(keep: readonly string[]) {
    this.keep = keep
      .map((k) => safeRel(k))
      .filter((k): k is string => k !== undefined)
      .map(fromText);
  }
  /** `rel` is a kept path or inside one. */
  has(rel: string): boolean {
    return this.keep.some((k) => rel === k || rel.startsWith(`${k}/`));
  }
  /** `rel` is a strict ancestor of a kept path (walk into it, do not remove it whole). */
  isAncestor(rel: string): boolean {
    return this.keep.some((k) => rel === '' || k.startsWith(`${rel}/`));
  }
}

/**
 * Takes the home baseline of `slot`: walks the home without following links, records every entry
 * and copies every regular file into the root-only store. Replaces any earlier baseline.
 */
export async function takeBaseline(slot: Slot, opts: TakeBaselineOptions = {}): Promise<BaselineSummary> {
  const clock = opts.clock ?? systemClock;
  const started = clock.now();
  const dir = baselineDir(slot);
  const filesDir = path.join(dir, 'files');
  await ensureDir(slot.stateDir, 0o700);
  await ensureDir(dir, 0o700);
  await ensureDir(filesDir, 0o700);
  const rec = await recordTree(fromText(slot.user.home), new KeepSet(opts.keep ?? []), clock, filesDir);
  const baseline: HomeBaseline = {
    version: 1,
    home: slot.user.home,
    takenAt: clock.now(),
    ...indexEntries(rec.entries),
  };
  await saveBaseline(slot, baseline);
  await pruneCopies(filesDir, baseline);
  return { entries: rec.entries.length, files: rec.files, bytes: rec.bytes, durationMs: clock.now() - started };
}

/**
 * Records every entry under `root` (byte string) without following links, skipping `skip`ped
 * paths. Regular files are hashed, and copied into `copyDir` (content-addressed) when given.
 */
export async function recordTree(
  root: string,
  skip: { has(rel: string): boolean },
  clock: Clock,
  copyDir?: string,
): Promise<{ entries: ManifestEntry[]; files: number; bytes: number }> {
  const entries: ManifestEntry[] = [];
  let files = 0;
  let total = 0;
  const queue: string[] = [''];
  while (queue.length > 0) {
    const rel = queue.pop() as string;
    const abs = bytes(rel === '' ? root : `${root}/${rel}`);
    const st = lstatSync(abs);
    if (rel === '' && !st.isDirectory()) throw new Error(`${shown(root)} is not a directory`);
    const e = entryFromStat(rel, st, clock.now());
    if (e.type === 'symlink') e.target = readlinkSync(abs, { encoding: 'buffer' }).toString('latin1');
    if (e.type === 'file' && st.size <= SYNC_FILE_MAX && !isSparse(st)) {
      const sha = hashSmallFileSync(abs, st.ino, copyDir);
      if (sha === undefined) e.type = 'other';
      else {
        e.sha256 = sha;
        files++;
        total += st.size;
      }
    } else if (e.type === 'file') {
      const tmp = copyDir ? path.join(copyDir, `.tmp-${randomBytes(6).toString('hex')}`) : undefined;
      const sha = await hashFile(abs, st.ino, Number.MAX_SAFE_INTEGER, tmp);
      if (sha === undefined) {
        if (tmp) await fsp.rm(tmp, { force: true });
        e.type = 'other'; // vanished or sparse during the walk: recorded, never restored
      } else {
        e.sha256 = sha;
        if (tmp && copyDir) await fsp.rename(tmp, path.join(copyDir, sha));
        files++;
        total += st.size;
      }
    }
    entries.push(e);
    if (e.type === 'dir') {
      for (const b of readdirSync(abs, { encoding: 'buffer' })) {
        const child = joinRel(rel, b.toString('latin1'));
        if (!skip.has(child)) queue.push(child);
      }
    }
    if (entries.length % YIELD_EVERY === 0) await tick();
  }
  return { entries, files, bytes: total };
}

async function pruneCopies(filesDir: string, baseline: HomeBaseline): Promise<void> {
  const wanted = new Set([...baseline.entries.values()].map((e) => e.sha256).filter(Boolean));
  for (const name of await fsp.readdir(filesDir)) {
    if (!wanted.has(name)) await fsp.rm(path.join(filesDir, name), { force: true });
  }
}

/** A manifest entry from an lstat (content fields filled by the caller). */
export function entryFromStat(rel: string, st: Stats, seenAt: number): ManifestEntry {
  return {
    rel,
    type: typeOf(st),
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    ino: st.ino,
    mtimeMs: st.mtimeMs,
    ctimeMs: st.ctimeMs,
    seenAt,
  };
}

/** One serialised manifest entry. */
export type Row = [string, EntryType, number, number, number, number, string | null, number, number, number, number];

/** Serialises entries compactly (one array per entry) for manifests of 50,000+ entries. */
export function encodeEntries(entries: Iterable<ManifestEntry>): Row[] {
  const rows: Row[] = [];
  for (const e of entries) {
    rows.push([e.rel, e.type, e.mode, e.uid, e.gid, e.size, e.sha256 ?? e.target ?? null, e.ino, e.mtimeMs, e.ctimeMs, e.seenAt]);
  }
  return rows;
}

/** The inverse of encodeEntries. */
export function decodeEntries(rows: Row[]): ManifestEntry[] {
  return rows.map(([rel, type, mode, uid, gid, size, extra, ino, mtimeMs, ctimeMs, seenAt]) => {
    const e: ManifestEntry = { rel, type, mode, uid, gid, size, ino, mtimeMs, ctimeMs, seenAt };
    if (type === 'file' && extra !== null) e.sha256 = extra;
    if (type === 'symlink' && extra !== null) e.target = extra;
    return e;
  });
}

/** Writes the baseline manifest atomically (root-only). */
export async function saveBaseline(slot: Slot, baseline: HomeBaseline): Promise<void> {
  const data = JSON.stringify({
    version: 1,
    home: baseline.home,
    takenAt: baseline.takenAt,
    entries: encodeEntries(baseline.entries.values()),
  });
  await writeFileAtomic(manifestFile(baselineDir(slot)), data, 0o600);
}

/** Loads a slot's home baseline; undefined when none was taken (or it belongs to another home). */
export async function loadBaseline(slot: Slot): Promise<HomeBaseline | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(manifestFile(baselineDir(slot)), 'utf8');
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
  const raw = JSON.parse(text) as { version: number; home: string; takenAt: number; entries: Row[] };
  if (raw.version !== 1 || raw.home !== slot.user.home) return undefined;
  return { version: 1, home: raw.home, takenAt: raw.takenAt, ...indexEntries(decodeEntries(raw.entries)) };
}
