/**
 * Step "home": puts the runner user's home back to its baseline (baseline.ts). New entries are
 * removed without following links, changed and missing ones are restored from the root-only copy
 * (content, mode, owner), kept paths (policy.home.keep) are left alone.
 *
 * A changed file is never rewritten in place: the copy is written to a fresh sibling and renamed
 * over it, so a hard link the job made from the home to another file never carries our write.
 */
import { promises as fsp, constants as fsc, lstatSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { UnsafePathError, describeError } from '../../lib/errors.js';
import type { Trash } from '../trash.js';
import { type DirRef, openDirUnder, resolveUnder, bytes, fromText, shown, isGone, joinRel, FILE_READ_FLAGS } from '../../lib/nofollow.js';
import { addRemoved, capLines } from '../report.js';
import { removeEntry } from '../remove-entry.js';
import { readMountInfo, mountsUnder } from '../mounts.js';
import { loadBaseline, saveBaseline, entryFromStat, tick, KeepSet, type HomeBaseline, type ManifestEntry } from '../baseline.js';
import { diffHome, describeDiff, recordedCopy, type Change } from '../home-diff.js';
import { hasAttrTools, recordedDirs, stripDirAttrs } from '../home-attrs.js';
import type { CleanupContext, CleanupStep, Removed, StepReport, Slot } from '../types.js';

function splitRel(rel: string): { parent: string; name: string } {
  const i = rel.lastIndexOf('/');
  return i < 0 ? { parent: '', name: rel } : { parent: rel.slice(0, i), name: rel.slice(i + 1) };
}

/** True when `p` is `dir` or below it (byte strings, no trailing slash). */
function isAtOrUnder(p: Buffer, dir: Buffer): boolean {
  return p.equals(dir) || (p.length > dir.length && p[dir.length] === 0x2f && p.subarray(0, dir.length).equals(dir));
}

/** Writes a recorded file's content into `dir` under `name`, by a fresh sibling and a rename. */
async function restoreFile(slot: Slot, dir: DirRef, name: string, rec: ManifestEntry): Promise<void> {
  const copy = recordedCopy(slot, rec);
  if (!copy) throw new Error('no recorded copy');
  const tmp = `.rw-restore-${randomBytes(6).toString('hex')}`;
  const out = await fsp.open(dir.at(tmp), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    await out.writeFile(await fsp.readFile(copy));
    await out.chown(rec.uid, rec.gid);
    await out.chmod(rec.mode); // after chown, which clears set-id bits
  } catch (err) {
    await out.close();
    await fsp.unlink(dir.at(tmp)).catch(() => undefined);
    throw err;
  }
  await out.close();
  const cur = await dir.lstat(name);
  if (cur?.isDirectory()) await removeEntry(dir, name);
  await fsp.rename(dir.at(tmp), dir.at(name));
}

/** Fixes mode and owner through an fd, so a swapped-in symlink is never followed. */
async function fixMeta(dir: DirRef, name: string, rec: ManifestEntry): Promise<void> {
  const flags = rec.type === 'dir' ? fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW : FILE_READ_FLAGS;
  const fh = await fsp.open(dir.at(name), flags);
  try {
    const st = await fh.stat();
    if ((rec.type === 'dir') !== st.isDirectory() || (rec.type === 'file' && !st.isFile())) {
      throw new Error('entry changed type while being fixed');
    }
    if (rec.type === 'file' && st.nlink > 1) throw new Error('entry gained a hard link while being fixed');
    await fh.chown(rec.uid, rec.gid);
    await fh.chmod(rec.mode);
  } finally {
    await fh.close();
  }
}

/** Restores one recorded entry inside `dir`; returns the fresh manifest entry. */
async function restoreOne(
  slot: Slot,
  dir: DirRef,
  name: string,
  rec: ManifestEntry,
  what: Change[] | 'missing',
  now: number,
): Promise<ManifestEntry | undefined> {
  const cur = await dir.lstat(name);
  const wrongType =
    cur !== undefined &&
    ((rec.type === 'dir' && !cur.isDirectory()) ||
      (rec.type === 'file' && !cur.isFile()) ||
      (rec.type === 'symlink' && (!cur.isSymbolicLink() || (what !== 'missing' && what.includes('target')))));
  if (wrongType) await removeEntry(dir, name);
  const present = cur !== undefined && !wrongType;
  switch (rec.type) {
    case 'dir':
      if (!present) await fsp.mkdir(dir.at(name), 0o700);
      await fixMeta(dir, name, rec);
      break;
    case 'file':
      // Any change gets a fresh copy, never a fix in place: a new inode carries none of the job's
      // xattrs or ACLs (setting them moves only the ctime), and a file with another name elsewhere
      // (a hard link the job made to someone else's file of the same bytes) is left untouched.
      await restoreFile(slot, dir, name, rec);
      break;
    case 'symlink':
      if (!present) await fsp.symlink(Buffer.from(rec.target ?? '', 'latin1'), dir.at(name));
      await fsp.lchown(dir.at(name), rec.uid, rec.gid);
      break;
    default:
      throw new Error(`cannot restore a ${rec.type} entry`);
  }
  const st = await dir.lstat(name);
  if (!st) return undefined;
  return { ...entryFromStat(rec.rel, st, now), sha256: rec.sha256, target: rec.target, type: rec.type };
}

/** Recorded entries at or under `rel`, parents first. */
function recordedUnder(baseline: HomeBaseline, rel: string): ManifestEntry[] {
  const out: ManifestEntry[] = [];
  for (const e of baseline.entries.values()) {
    if (rel === '' || e.rel === rel || e.rel.startsWith(`${rel}/`)) out.push(e);
  }
  return out;
}

/** Options of the home step. */
export interface HomeStepOptions {
  /**
   * The slot's trash, drained in the background by its owner. A new directory in the home is
   * renamed into it (one rename, however deep or wide the tree) instead of deleted in place;
   * without it, or when the home is on another filesystem than the trash, it is deleted here.
   */
  trash?: Trash;
}

/**
 * Removes one new entry of the home: a directory goes into the trash when there is one (its
 * deletion then runs in the background), anything else, or a directory the trash refuses (another
 * filesystem, a mount inside), is removed in place. Every job process is dead by now (the
 * processes step ran first), and the rename goes through the parent's no-follow handle.
 */
async function removeNew(dir: DirRef, name: string, mountPath: Buffer, trash: Trash | undefined): Promise<Removed> {
  if (trash && (await dir.lstat(name))?.isDirectory()) {
    try {
      await trash.put(dir.at(name), { mountPath });
      return { count: 1, bytes: 0 };
    } catch (err) {
      if (!(err instanceof UnsafePathError)) throw err;
    }
  }
  return removeEntry(dir, name);
}

/** Removes one new entry found by its path from the home (a directory, or what the fast path left). */
async function removeAddedOne(
  home: string,
  rel: string,
  trash: Trash | undefined,
  removed: Record<string, Removed>,
  problems: string[],
): Promise<void> {
  const r = await resolveUnder(home, rel);
  if (r.kind === 'absent') return;
  try {
    addRemoved(removed, 'new-entry', await removeNew(r.dir, r.name, bytes(`${home}/${rel}`), trash));
  } catch (err) {
    problems.push(`~/${shown(rel)}: ${describeError(err)}`);
  } finally {
    await r.dir.close();
  }
}

/**
 * New non-directories unlinked synchronously between two yields to the event loop. An unlink
 * costs microseconds, but the promise round trips of one entry (open the home, lstat, unlink,
 * close) cost about a millisecond with the machine loaded: 40,000 new files in the home took
 * 107 s one by one. 256 keeps a slice to a few milliseconds.
 */
const SYNC_UNLINKS_PER_SLICE = 256;

/** Unlinks a new non-directory through its parent's no-follow handle; false leaves it to removeAddedOne. */
function unlinkNewSync(dir: DirRef, name: string, removed: Record<string, Removed>): boolean {
  try {
    const st = lstatSync(dir.at(name));
    if (st.isDirectory()) return false;
    unlinkSync(dir.at(name));
    addRemoved(removed, 'new-entry', { count: 1, bytes: st.isFile() ? st.size : 0 });
    return true;
  } catch (err) {
    return isGone(err);
  }
}

/**
 * Removes the home's new entries, grouped by parent directory: one no-follow handle per parent,
 * non-directories unlinked in place, directories (into the trash) and anything the fast path
 * refuses (an immutable file: EPERM) by removeAddedOne.
 */
async function removeAdded(
  signal: AbortSignal,
  home: string,
  added: readonly string[],
  trash: Trash | undefined,
  removed: Record<string, Removed>,
  problems: string[],
): Promise<void> {
  const byParent = new Map<string, string[]>();
  for (const rel of added) {
    const { parent, name } = splitRel(rel);
    const names = byParent.get(parent);
    if (names) names.push(name);
    else byParent.set(parent, [name]);
  }
  let inSlice = 0;
  for (const [parent, names] of byParent) {
    signal.throwIfAborted();
    const dir = await openDirUnder(home, parent);
    try {
      for (const name of names) {
        signal.throwIfAborted();
        if (++inSlice >= SYNC_UNLINKS_PER_SLICE) {
          inSlice = 0;
          await tick();
        }
        if (dir && unlinkNewSync(dir, name, removed)) continue;
        await removeAddedOne(home, joinRel(parent, name), trash, removed, problems);
      }
    } finally {
      await dir?.close();
    }
  }
}

/** The home step. */
export function homeStep(opts: HomeStepOptions = {}): CleanupStep {
  return {
    name: 'home',
    async run(ctx: CleanupContext): Promise<Omit<StepReport, 'name' | 'durationMs'>> {
      if (!ctx.policy.home.enabled) return { outcome: 'skipped', removed: {}, reason: 'disabled by policy' };
      const slot = ctx.slot;
      const baseline = await loadBaseline(slot);
      if (!baseline) {
        return { outcome: 'dirty', removed: {}, reason: 'no home baseline (run runner-warden baseline)' };
      }
      const diff = await diffHome(slot, baseline, { keep: ctx.policy.home.keep, clock: ctx.clock });
      // A mount on the home or inside it (outside a kept path, where an admin's cache volume may
      // be) shows another directory's entries as the home's: removing or fixing them through it
      // would empty or chown that directory (a privileged job's bind mount of /etc over ~/.config).
      const mounted = mountsUnder(await readMountInfo(), bytes(fromText(slot.user.home)), true).filter(
        (m) => !ctx.policy.home.keep.some((k) => isAtOrUnder(m.mountPoint, bytes(`${fromText(slot.user.home)}/${fromText(k)}`))),
      );
      if (mounted.length > 0) {
        return {
          outcome: 'dirty',
          removed: {},
          reason: `mount point ${mounted[0]?.mountPointText ?? ''} in the home: nothing removed or restored through it`,
        };
      }
      if (ctx.dryRun) {
        return { outcome: 'ok', removed: {}, plan: capLines(describeDiff(diff)) };
      }
      const removed: Record<string, Removed> = {};
      const problems: string[] = [];
      const home = fromText(slot.user.home);

      await removeAdded(ctx.signal, home, diff.added, opts.trash, removed, problems);

      // Restore parents before children: a missing or retyped directory brings its whole subtree.
      const todo = new Map<string, Change[] | 'missing'>();
      for (const rel of diff.missing) for (const e of recordedUnder(baseline, rel)) todo.set(e.rel, 'missing');
      for (const c of diff.changed) {
        if (c.what.includes('type')) for (const e of recordedUnder(baseline, c.rel)) todo.set(e.rel, 'missing');
        else if (!todo.has(c.rel)) todo.set(c.rel, c.what);
      }
      const refreshed = new Map(diff.refreshed.map((e) => [e.rel, e]));
      let restored = 0;
      let restoredBytes = 0;
      for (const rel of [...todo.keys()].sort()) {
        ctx.signal.throwIfAborted();
        const rec = baseline.entries.get(rel) as ManifestEntry;
        const what = todo.get(rel) as Change[] | 'missing';
        const { parent, name } = splitRel(rel);
        try {
          let fresh: ManifestEntry | undefined;
          if (rel === '') {
            const fh = await fsp.open(bytes(home), fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
            try {
              await fh.chown(rec.uid, rec.gid);
              await fh.chmod(rec.mode);
              fresh = { ...entryFromStat('', await fh.stat(), ctx.clock.now()), type: 'dir' };
            } finally {
              await fh.close();
            }
          } else {
            const dir = await openDirUnder(home, parent);
            if (!dir) throw new Error('parent directory is not restorable');
            try {
              fresh = await restoreOne(slot, dir, name, rec, what, ctx.clock.now());
            } finally {
              await dir.close();
            }
          }
          if (fresh) refreshed.set(rel, fresh);
          restored++;
          if (rec.type === 'file') restoredBytes += rec.size;
        } catch (err) {
          problems.push(`~/${shown(rel)}: ${describeError(err)}`);
        }
      }
      // Directories cannot be replaced: their ACL entries and user attributes are removed in place.
      if (hasAttrTools()) {
        try {
          problems.push(...(await stripDirAttrs(home, recordedDirs(baseline, new KeepSet(ctx.policy.home.keep)))));
        } catch (err) {
          problems.push(`ACLs and attributes: ${describeError(err)}`);
        }
      }
      if (restored > 0) removed['restored'] = { count: restored, bytes: restoredBytes };

      // Keep the stat cache fresh so the next verify hashes only what moved.
      // It is only a cache: when it cannot be written (a full disk), the next verify hashes more.
      if (refreshed.size > 0) {
        for (const [rel, e] of refreshed) baseline.entries.set(rel, e);
        try {
          await saveBaseline(slot, baseline);
        } catch (err) {
          ctx.log.warn({ err: describeError(err) }, 'home stat cache not saved; the next verification hashes what it cannot trust');
        }
      }
      if (problems.length > 0) {
        return { outcome: 'dirty', removed, reason: `could not restore: ${capLines(problems, 5).join('; ')}` };
      }
      return { outcome: 'ok', removed };
    },
  };
}
