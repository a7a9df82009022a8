/**
 * Comparing a tree (the runner user's home, the runner installation) with its manifest
 * (baseline.ts): stat-first, so only entries whose stat moved are hashed, never following a link.
 */
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import type { Clock } from '../lib/clock.js';
import { systemClock } from '../lib/clock.js';
import { bytes, fromText, joinRel, shown, isGone } from '../lib/nofollow.js';
import type { Slot } from './types.js';
import {
  copyPath,
  hashFile,
  tick,
  typeOf,
  RACY_MARGIN_MS,
  YIELD_EVERY,
  KeepSet,
  type HomeBaseline,
  type ManifestEntry,
  type TreeIndex,
} from './baseline.js';

/**
 * What differs about one recorded entry. 'inode': a file's content is unchanged but its ctime moved
 * (an extended attribute or ACL set, a hard link made): only a fresh copy drops what was added.
 */
export type Change = 'type' | 'content' | 'mode' | 'owner' | 'target' | 'inode';

/** The differences between a home and its baseline. */
export interface HomeDiff {
  /** Entries not in the baseline (byte strings), topmost only: a new directory is one entry. */
  added: string[];
  /** Recorded entries that differ, with what differs. */
  changed: { rel: string; what: Change[] }[];
  /** Recorded entries that are gone (topmost only). */
  missing: string[];
  /** Entries whose content was hashed and found unchanged: their fresh stat, for the cache. */
  refreshed: ManifestEntry[];
  /** How many entries were looked at, and how many hashed. */
  scanned: number;
  hashed: number;
}

/** Options of diffHome. */
export interface DiffOptions {
  keep?: readonly string[];
  clock?: Clock;
}

/**
 * Compares the home of `slot` with `baseline` without following links, opening FIFOs, sockets or
 * devices, or reading sparse files. Kept paths are left out. New directories are not descended
 * into (a 20,000-level tree costs one lstat).
 */
export async function diffHome(slot: Slot, baseline: HomeBaseline, opts: DiffOptions = {}): Promise<HomeDiff> {
  return diffTree(fromText(slot.user.home), baseline, new KeepSet(opts.keep ?? []), opts.clock ?? systemClock);
}

/**
 * Compares the tree at `home` (byte string) with its recorded index, leaving out what `keep`
 * holds (ancestors of kept paths are walked, not reported whole).
 */
export async function diffTree(
  home: string,
  baseline: TreeIndex,
  keep: { has(rel: string): boolean; isAncestor(rel: string): boolean },
  clock: Clock,
): Promise<HomeDiff> {
  const diff: HomeDiff = { added: [], changed: [], missing: [], refreshed: [], scanned: 0, hashed: 0 };
  const rootSt = lstatOrUndef(bytes(home));
  const rootB = baseline.entries.get('');
  if (!rootSt || !rootB) {
    diff.missing.push('');
    return diff;
  }
  if (!rootSt.isDirectory()) {
    diff.changed.push({ rel: '', what: ['type'] });
    return diff;
  }
  const rootWhat = metaChanges(rootB, rootSt);
  if (rootWhat.length > 0) diff.changed.push({ rel: '', what: rootWhat });

  const queue: string[] = [''];
  let sinceYield = 0;
  while (queue.length > 0) {
    const dirRel = queue.pop() as string;
    const dirAbs = dirRel === '' ? home : `${home}/${dirRel}`;
    let names: Buffer[];
    try {
      names = readdirSync(bytes(dirAbs), { encoding: 'buffer' });
    } catch (err) {
      if (isGone(err)) continue; // removed under us: reported through its parent's next pass
      throw err;
    }
    const expected = new Set(baseline.children.get(dirRel) ?? []);
    for (const b of names) {
      const name = b.toString('latin1');
      expected.delete(name);
      const rel = joinRel(dirRel, name);
      if (keep.has(rel)) continue;
      diff.scanned++;
      if (++sinceYield >= YIELD_EVERY) {
        sinceYield = 0;
        await tick();
      }
      const st = lstatOrUndef(bytes(`${dirAbs}/${name}`));
      if (!st) continue;
      const rec = baseline.entries.get(rel);
      if (!rec) {
        if (st.isDirectory() && keep.isAncestor(rel)) queue.push(rel);
        else diff.added.push(rel);
        continue;
      }
      const what = await compareEntry(rec, st, bytes(`${dirAbs}/${name}`), diff, clock);
      if (what.length > 0) diff.changed.push({ rel, what });
      if (rec.type === 'dir' && st.isDirectory()) queue.push(rel);
    }
    for (const name of expected) {
      const rel = joinRel(dirRel, name);
      if (!keep.has(rel)) diff.missing.push(rel);
    }
  }
  diff.added.sort();
  diff.changed.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  diff.missing.sort();
  return diff;
}

function lstatOrUndef(p: Buffer): Stats | undefined {
  try {
    return lstatSync(p);
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
}

function metaChanges(rec: ManifestEntry, st: Stats): Change[] {
  const what: Change[] = [];
  // A symlink's own mode means nothing on Linux.
  if (rec.type !== 'symlink' && (st.mode & 0o7777) !== rec.mode) what.push('mode');
  if (st.uid !== rec.uid || st.gid !== rec.gid) what.push('owner');
  return what;
}

/** True when the stat cache proves the content unchanged. */
export function statUnchanged(rec: ManifestEntry, st: Stats): boolean {
  return (
    st.size === rec.size &&
    st.ino === rec.ino &&
    st.mtimeMs === rec.mtimeMs &&
    st.ctimeMs === rec.ctimeMs &&
    rec.seenAt - rec.ctimeMs > RACY_MARGIN_MS
  );
}

async function compareEntry(rec: ManifestEntry, st: Stats, abs: Buffer, diff: HomeDiff, clock: Clock): Promise<Change[]> {
  const type = typeOf(st);
  if (type !== rec.type) return ['type'];
  const what = metaChanges(rec, st);
  if (type === 'symlink') {
    let target: string | undefined;
    try {
      target = readlinkSync(abs, { encoding: 'buffer' }).toString('latin1');
    } catch (err) {
      if (!isGone(err)) throw err;
    }
    if (target !== rec.target) what.push('target');
  } else if (type === 'file') {
    if (st.size !== rec.size) what.push('content');
    else if (!statUnchanged(rec, st)) {
      diff.hashed++;
      const sha = await hashFile(abs, st.ino, rec.size);
      if (sha !== rec.sha256) what.push('content');
      else if (st.ctimeMs !== rec.ctimeMs && what.length === 0)
        what.push('inode'); // mode/owner explain a ctime too
      else diff.refreshed.push({ ...rec, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, seenAt: clock.now() });
    }
  }
  return what;
}

/** One line per difference, for verify and reports (paths shown relative to home). */
export function describeDiff(diff: HomeDiff): string[] {
  const lines: string[] = [];
  const show = (rel: string): string => (rel === '' ? '~' : `~/${shown(rel)}`);
  for (const rel of diff.added) lines.push(`home: new entry ${show(rel)}`);
  for (const c of diff.changed) lines.push(`home: ${show(c.rel)} differs from baseline (${c.what.join(', ')})`);
  for (const rel of diff.missing) lines.push(`home: ${show(rel)} missing`);
  return lines;
}

/** True when nothing differs. */
export function diffIsEmpty(diff: HomeDiff): boolean {
  return diff.added.length === 0 && diff.changed.length === 0 && diff.missing.length === 0;
}

/** Content-addressed copy of a recorded file, read back for a restore. */
export function recordedCopy(slot: Slot, rec: ManifestEntry): string | undefined {
  return rec.sha256 ? copyPath(slot, rec.sha256) : undefined;
}

/** Whether an existing entry equals its baseline record (type, content, mode, owner, target). */
export async function matchesRecord(rec: ManifestEntry, st: Stats, abs: Buffer): Promise<boolean> {
  const scratch: HomeDiff = { added: [], changed: [], missing: [], refreshed: [], scanned: 0, hashed: 0 };
  return (await compareEntry(rec, st, abs, scratch, systemClock)).length === 0;
}
