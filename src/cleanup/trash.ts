/**
 * The trash: a root-only (0700) directory on the same filesystem as the work directory. A tree is
 * made harmless by one atomic rename into it: from then on no job process can reach it by path
 * (and every job process is dead anyway, the processes step runs first), so the host is ready
 * as soon as the renames are done and the deletion runs in the background (safe-delete.ts).
 *
 * rename(2) moves the directory entry itself: if the job swapped a directory for a symlink at the
 * last instant, the symlink is what lands in the trash, never its target. Trash names are the
 * agent's own (ASCII), so odd names (invalid UTF-8, leading dashes, newlines) never reach argv.
 *
 * Leftovers from a crash are deleted at the next start (drainAtBoot).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../lib/log.js';
import { UnsafePathError, describeError } from '../lib/errors.js';
import { mountsUnder, readMountInfo, unmountUnder, type MountEntry } from './mounts.js';
import { deleteTrees, type DeleteStrategy } from './safe-delete.js';

/** What a drain deleted. `remaining` counts trash entries it could not delete (kept for the next drain). */
export interface DrainResult {
  count: number;
  bytes: number;
  durationMs: number;
  remaining: number;
}

/** Options of put(). */
export interface PutOptions {
  /** A mount table read once by the caller (saves a read per entry). Default: read it now. */
  mounts?: MountEntry[];
  /**
   * The entry's path as the mount table names it, when `entry` is reached through a directory
   * handle (`/proc/self/fd/<fd>/<name>`, which no mount point starts with); the mount and overlap
   * checks use it. Default: `entry`.
   */
  mountPath?: string | Buffer;
}

/** Options of the Trash; defaults: find-delete strategy, the real mountinfo. */
export interface TrashOptions {
  strategy?: DeleteStrategy;
  mountinfoFile?: string;
}

/**
 * Another set of trash directories drained with this one: the temp step's holding directories on
 * filesystems other than this trash's (steps/temp-trash.ts). drain() runs theirs after its own (one
 * drain at a time), drainAtBoot() lets them find what a crash left first, pending() counts them.
 */
export interface TrashFollower {
  /** At agent start, before the first drain: take back what an earlier run left. */
  recover(): Promise<void>;
  drain(signal?: AbortSignal): Promise<DrainResult>;
  pending(): boolean;
}

/** put() refused an entry on another filesystem than the trash: the caller deletes it in place. */
export class CrossDeviceError extends UnsafePathError {
  override name = 'CrossDeviceError';
}

/** A root-only trash directory with background deletion. */
export class Trash {
  private queued = 0;
  private draining: Promise<DrainResult> | undefined;
  private checked = false;
  private readonly log: Logger;
  private readonly followers: TrashFollower[] = [];

  /** `dir` must be absolute, with no symlink on its way (it is checked, not trusted). */
  constructor(
    readonly dir: string,
    log: Logger,
    private readonly opts: TrashOptions = {},
  ) {
    this.log = log.child({ component: 'trash' });
  }

  /**
   * Creates the trash if missing (mode 0700) and checks it: a real directory (not a link), owned
   * by root, reached without any symlink. Throws UnsafePathError otherwise.
   */
  async ensure(): Promise<void> {
    if (!path.isAbsolute(this.dir)) throw new UnsafePathError('trash path not absolute', this.dir, this.dir);
    try {
      await fsp.mkdir(this.dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const st = await fsp.lstat(this.dir);
    if (!st.isDirectory()) throw new UnsafePathError('trash is not a directory', this.dir, this.dir);
    if (st.uid !== 0) throw new UnsafePathError('trash is not owned by root', this.dir, this.dir);
    if ((await fsp.realpath(this.dir)) !== path.resolve(this.dir)) {
      throw new UnsafePathError('trash path goes through a symlink', this.dir, this.dir);
    }
    if ((st.mode & 0o7777) !== 0o700) await fsp.chmod(this.dir, 0o700);
    this.checked = true;
  }

  /**
   * Moves `entry` (any type; string or Buffer path) into the trash by one rename and returns its
   * new absolute path. Throws UnsafePathError when the entry holds a mount, lies on another
   * filesystem (EXDEV), or is the trash or inside it.
   */
  async put(entry: string | Buffer, opts: PutOptions = {}): Promise<string> {
    if (!this.checked) await this.ensure();
    const shown = entry.toString();
    if (entry[0] !== '/' && entry[0] !== 0x2f) throw new UnsafePathError('entry path not absolute', shown, this.dir);
    const abs = typeof entry === 'string' ? path.resolve(entry) : entry;
    const absText = (opts.mountPath ?? abs).toString();
    const trashRoot = path.resolve(this.dir);
    if (absText === trashRoot || absText.startsWith(`${trashRoot}/`) || trashRoot.startsWith(`${absText}/`)) {
      throw new UnsafePathError('entry overlaps the trash', shown, this.dir);
    }
    const mounts = mountsUnder(opts.mounts ?? (await readMountInfo(this.opts.mountinfoFile)), opts.mountPath ?? abs, true);
    if (mounts.length > 0) {
      throw new UnsafePathError(`a mount is inside: ${mounts[0]?.mountPointText}`, shown, this.dir);
    }
    const name = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    const dest = path.join(this.dir, name);
    try {
      await fsp.rename(abs, dest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EXDEV') throw new CrossDeviceError('entry is on another filesystem than the trash', shown, this.dir, { cause: err });
      if (code === 'EBUSY') throw new UnsafePathError('entry is a mount point', shown, this.dir, { cause: err });
      throw err;
    }
    this.queued++;
    return dest;
  }

  /** True while entries put since the last drain wait, or a drain runs (followers' included). */
  pending(): boolean {
    return this.queued > 0 || this.draining !== undefined || this.followers.some((f) => f.pending());
  }

  /** Drains `f` with this trash from now on (at boot too: call before drainAtBoot). */
  follow(f: TrashFollower): void {
    this.followers.push(f);
  }

  /**
   * Deletes everything in the trash (including leftovers of earlier runs) in child processes.
   * Concurrent calls share one drain and then run another for entries put meanwhile.
   */
  async drain(signal?: AbortSignal): Promise<DrainResult> {
    while (this.draining) await this.draining.catch(() => undefined);
    const run = this.drainOnce(signal);
    this.draining = run;
    try {
      return await run;
    } finally {
      this.draining = undefined;
    }
  }

  /** At agent start: checks the trash and deletes what a crash left in it. */
  async drainAtBoot(signal?: AbortSignal): Promise<DrainResult> {
    await this.ensure();
    const names = await fsp.readdir(this.dir);
    if (names.length > 0) this.log.info({ entries: names.length }, 'deleting leftover trash');
    for (const f of this.followers) {
      try {
        await f.recover();
      } catch (err) {
        this.log.warn({ err: describeError(err) }, 'leftover trash elsewhere not recovered');
      }
    }
    return this.drain(signal);
  }

  private async drainOnce(signal?: AbortSignal): Promise<DrainResult> {
    const started = performance.now();
    if (!this.checked) await this.ensure();
    this.queued = 0;
    const names = await fsp.readdir(this.dir, { encoding: 'buffer' });
    const targets: string[] = [];
    for (const raw of names) {
      const name = raw.toString('utf8');
      if (!Buffer.from(name).equals(raw) || name.startsWith('-')) {
        // Not one of ours (we only make ASCII names): give it one before it goes into argv.
        const fixed = path.join(this.dir, `x-${randomBytes(8).toString('hex')}`);
        await fsp.rename(Buffer.concat([Buffer.from(`${this.dir}/`), raw]), fixed);
        targets.push(fixed);
      } else {
        targets.push(path.join(this.dir, name));
      }
    }
    const result: DrainResult = { count: 0, bytes: 0, durationMs: 0, remaining: 0 };
    // Only root makes mounts, so a mount in the trash is the agent's own accident (a crash between
    // unmount and rename cannot cause it; a container engine bind-mounting a job path could).
    // Detach it; a target that still holds one is left for a later drain, never deleted across.
    const mounts = await readMountInfo(this.opts.mountinfoFile);
    const safe: string[] = [];
    for (const t of targets) {
      if (mountsUnder(mounts, t, true).length === 0) {
        safe.push(t);
        continue;
      }
      const { remaining } = await unmountUnder(t, { includeSelf: true, mountinfoFile: this.opts.mountinfoFile });
      if (remaining.length === 0) safe.push(t);
      else {
        this.log.warn({ entry: t, mounts: remaining.slice(0, 3) }, 'trash entry holds a mount; kept');
        result.remaining++;
      }
    }
    if (safe.length > 0) {
      try {
        const r = await deleteTrees(safe, {
          log: this.log,
          signal,
          strategy: this.opts.strategy,
          mountinfoFile: this.opts.mountinfoFile,
        });
        result.count = r.count;
        result.bytes = r.bytes;
        result.remaining += r.remaining.length;
      } catch (err) {
        // A mount appeared between the check and the walk: leave everything for a later drain.
        this.log.warn({ err: describeError(err) }, 'trash not deleted');
        result.remaining += safe.length;
      }
      if (result.remaining > 0) this.log.warn({ remaining: result.remaining }, 'trash entries left');
    }
    for (const f of this.followers) {
      const r = await f.drain(signal);
      result.count += r.count;
      result.bytes += r.bytes;
      result.remaining += r.remaining;
    }
    result.durationMs = Math.round(performance.now() - started);
    return result;
  }
}
