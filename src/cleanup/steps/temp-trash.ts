/**
 * Where the temp step puts a directory a job left, so that it is deleted in the background and not
 * on the ready path (a 50,000-file tree in /tmp took over a minute to delete in place on a loaded
 * disk). One rename, never a copy, so the place must be on the directory's own filesystem:
 *
 * - the slot's trash, when the temp dir is on the trash's filesystem (often /var/tmp, and /tmp when
 *   it is not a tmpfs); rename(2) answers EXDEV across two mounts of one filesystem, and the entry
 *   then goes to the next place;
 * - otherwise a holding directory of the agent's in the temp dir itself (`.runner-warden-trash-<hex>`,
 *   root-only 0700, a fresh random name per agent run), made only where nobody but root can rename
 *   or replace it or any directory on its way: every directory from / to the temp dir must be
 *   root's and either sticky or writable by root alone (/tmp, /dev/shm, /run/lock, /var/crash are);
 *   the background deletion works by path, and a job of the next run must not be able to swap a
 *   link in. The runner user's own /run/user/<uid> fails this test: what a job leaves there is
 *   deleted in place, as before;
 * - neither: put() throws UnsafePathError and the step deletes in place.
 *
 * Every holding directory is recorded in `<stateDir>/temp-trash.json` before it is made and
 * forgotten only once it is empty and removed, so an agent killed mid-delete finds it at the next
 * start (recover(), run by the slot trash's drainAtBoot). The slot trash drains this one after
 * its own (TrashFollower), so a stop waits for both within its one bound.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../lib/log.js';
import { UnsafePathError, describeError } from '../../lib/errors.js';
import type { MountEntry } from '../mounts.js';
import { CrossDeviceError, Trash, type DrainResult, type TrashFollower } from '../trash.js';
import { whyNotRootOnly } from '../../lib/root-only-path.js';

/** The name every holding directory starts with (the rest is random). */
export const HOLDING_PREFIX = '.runner-warden-trash-';

/** The record of holding directories, in the state directory. */
export const TEMP_TRASH_RECORD = 'temp-trash.json';

/** Options of TempTrash; default: the real mountinfo. */
export interface TempTrashOptions {
  /** The agent's root-only state directory, where the record lives. */
  stateDir: string;
  mountinfoFile?: string;
}

interface Holder {
  root: string;
  trash: Trash;
  /** put() calls under way: a holder is removed only when none is. */
  inflight: number;
}

/** The slot trash's follower for directories the temp step moves out of reach (see the header). */
export class TempTrash implements TrashFollower {
  /** Holders by holding directory, including ones taken back from an earlier run. */
  private readonly holders = new Map<string, Holder>();
  /** The holder new entries of a temp dir go to. */
  private readonly byRoot = new Map<string, Holder>();
  private mainDev: number | undefined;
  private readonly log: Logger;
  /** Record writes, one at a time, each writing the holders as they are when it runs. */
  private saving: Promise<void> = Promise.resolve();

  /** Follows `main`: drained with it, recovered at its drainAtBoot. */
  constructor(
    private readonly main: Trash,
    log: Logger,
    private readonly opts: TempTrashOptions,
  ) {
    this.log = log.child({ component: 'temp-trash' });
    main.follow(this);
  }

  /** The record's path. */
  get recordFile(): string {
    return path.join(this.opts.stateDir, TEMP_TRASH_RECORD);
  }

  /**
   * Moves the directory `entry`, found under the temp dir `root` (realpath, device `rootDev`), out
   * of every job's reach by one rename, and returns its new path. Throws UnsafePathError when no
   * place on its filesystem may take it (the caller deletes it in place) or it holds a mount.
   */
  async put(root: string, rootDev: number, entry: Buffer, mounts?: MountEntry[]): Promise<string> {
    if ((await this.mainDevice()) === rootDev) {
      try {
        return await this.main.put(entry, mounts ? { mounts } : {});
      } catch (err) {
        if (!(err instanceof CrossDeviceError)) throw err;
      }
    }
    const h = this.byRoot.get(root) ?? (await this.makeHolder(root));
    h.inflight++;
    try {
      return await h.trash.put(entry, mounts ? { mounts } : {});
    } finally {
      h.inflight--;
    }
  }

  /** The holding directories now (host paths): the integrity check leaves them out while they drain. */
  holdingDirs(): string[] {
    return [...this.holders.keys()];
  }

  /** True while a holding directory has entries put since its last drain, or is draining. */
  pending(): boolean {
    return [...this.holders.values()].some((h) => h.trash.pending());
  }

  /**
   * Takes back the holding directories an earlier run recorded and did not finish (the next drain
   * deletes them). One that is no longer a root-only directory in a safe temp dir is dropped
   * from the record untouched: only what the agent can vouch for is deleted.
   */
  async recover(): Promise<void> {
    for (const dir of await this.readRecord()) {
      if (this.holders.has(dir)) continue;
      const problem = await this.unsafeHolding(dir);
      if (problem === 'gone') continue;
      if (problem) {
        this.log.warn({ dir, problem }, 'recorded holding directory not taken back');
        continue;
      }
      this.log.info({ dir }, 'deleting a holding directory left by an earlier run');
      this.holders.set(dir, { root: path.dirname(dir), trash: new Trash(dir, this.log, this.trashOpts()), inflight: 0 });
    }
    await this.saveRecord();
  }

  /**
   * Deletes what every holding directory holds, then removes the directories that are empty and
   * idle (a new one is made for the next job). Never throws: what is left stays recorded.
   */
  async drain(signal?: AbortSignal): Promise<DrainResult> {
    const total: DrainResult = { count: 0, bytes: 0, durationMs: 0, remaining: 0 };
    let changed = false;
    for (const [dir, h] of [...this.holders]) {
      if (signal?.aborted) break;
      try {
        const r = await h.trash.drain(signal);
        total.count += r.count;
        total.bytes += r.bytes;
        total.remaining += r.remaining;
        if (r.remaining > 0 || h.inflight > 0 || h.trash.pending()) continue;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.warn({ dir, err: describeError(err) }, 'holding directory not deleted');
          total.remaining++;
          continue;
        }
      }
      // Forgotten first (synchronously), so that a put from now on makes a fresh holder.
      this.holders.delete(dir);
      if (this.byRoot.get(h.root) === h) this.byRoot.delete(h.root);
      changed = true;
      try {
        await fsp.rmdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          this.log.warn({ dir, err: describeError(err) }, 'empty holding directory not removed');
      }
    }
    if (changed) {
      try {
        await this.saveRecord();
      } catch (err) {
        this.log.warn({ err: describeError(err) }, 'holding directory record not saved');
      }
    }
    return total;
  }

  /** The slot trash's device, or undefined when it cannot be used. */
  private async mainDevice(): Promise<number | undefined> {
    if (this.mainDev !== undefined) return this.mainDev;
    try {
      await this.main.ensure();
      this.mainDev = (await fsp.lstat(this.main.dir)).dev;
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'slot trash unusable for temp directories');
    }
    return this.mainDev;
  }

  /** A fresh holding directory in `root`, recorded before it is made. */
  private async makeHolder(root: string): Promise<Holder> {
    const unsafe = await renamableByOthers(root);
    if (unsafe) throw new UnsafePathError(`no holding directory where ${unsafe}`, root, root);
    const dir = path.join(root, `${HOLDING_PREFIX}${randomBytes(8).toString('hex')}`);
    const h: Holder = { root, trash: new Trash(dir, this.log, this.trashOpts()), inflight: 0 };
    this.holders.set(dir, h);
    try {
      await this.saveRecord();
      await h.trash.ensure();
    } catch (err) {
      this.holders.delete(dir);
      await fsp.rmdir(dir).catch(() => undefined);
      await this.saveRecord().catch(() => undefined);
      throw err;
    }
    this.byRoot.set(root, h);
    return h;
  }

  /** Why `dir` is not a holding directory the agent may delete, 'gone', or undefined when it is. */
  private async unsafeHolding(dir: string): Promise<string | undefined> {
    if (!path.isAbsolute(dir) || !path.basename(dir).startsWith(HOLDING_PREFIX)) return 'not a holding directory name';
    let st;
    try {
      st = await fsp.lstat(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      throw err;
    }
    if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o7777) !== 0o700) return 'not a root-only directory';
    if ((await fsp.realpath(dir)) !== dir) return 'reached through a symlink';
    return renamableByOthers(path.dirname(dir));
  }

  private trashOpts(): { mountinfoFile?: string } {
    return this.opts.mountinfoFile ? { mountinfoFile: this.opts.mountinfoFile } : {};
  }

  private async readRecord(): Promise<string[]> {
    let text: string;
    try {
      text = await fsp.readFile(this.recordFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    try {
      const parsed = JSON.parse(text) as { dirs?: unknown };
      return Array.isArray(parsed.dirs) ? parsed.dirs.filter((d): d is string => typeof d === 'string') : [];
    } catch {
      this.log.warn({ file: this.recordFile }, 'holding directory record unreadable; ignored');
      return [];
    }
  }

  /** Writes the record (root-only, by a fresh file and a rename); no holder left removes it. */
  private saveRecord(): Promise<void> {
    const run = this.saving.then(() => this.writeRecord());
    this.saving = run.catch(() => undefined);
    return run;
  }

  private async writeRecord(): Promise<void> {
    const dirs = [...this.holders.keys()];
    if (dirs.length === 0) {
      await fsp.rm(this.recordFile, { force: true });
      return;
    }
    await fsp.mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    const tmp = `${this.recordFile}.${randomBytes(4).toString('hex')}`;
    await fsp.writeFile(tmp, `${JSON.stringify({ dirs })}\n`, { mode: 0o600, flag: 'wx' });
    await fsp.rename(tmp, this.recordFile);
  }
}

/**
 * Why someone other than root could rename, remove or replace `dir` or a directory on its way
 * from / (undefined: nobody can): `dir` must be a directory, and the rest is the agent's one rule
 * for the paths it writes as root (lib/root-only-path.ts: root's all the way up, sticky where
 * others may write).
 */
export async function renamableByOthers(dir: string): Promise<string | undefined> {
  const st = await fsp.lstat(dir);
  if (!st.isDirectory()) return `${dir} is not a directory`;
  return whyNotRootOnly(dir);
}
