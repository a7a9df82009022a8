/**
 * An exclusive, kernel-held lock on a file (flock(2)), for "one agent per host".
 *
 * Node has no flock. The lock is taken by util-linux's `flock(1)` on a file descriptor this process
 * opened and lends to the child as its fd 3: flock locks belong to the open file description, which
 * the child shares, so the lock stays held by this process's descriptor after `flock` exits. The
 * kernel drops it when this process dies (SIGKILL included): no stale lock, no pid guessing.
 * The descriptor is close-on-exec (libuv opens every file with O_CLOEXEC), so no listener or job
 * inherits it and keeps the lock alive after the agent.
 *
 * The holder writes its pid into the file after taking the lock; the file is root-only, so that
 * pid is only ever written by a holder and a refused caller can name it.
 */
import { spawn } from 'node:child_process';
import { constants as fsc } from 'node:fs';
import { lstat, open, unlink, type FileHandle } from 'node:fs/promises';

/** util-linux's flock(1); present on every Debian, Ubuntu and RHEL-family system (package util-linux). */
export const FLOCK_BIN = '/usr/bin/flock';

/** flock(1) with -n returns at once; 10 s only guards against a wedged exec on a stalled host. */
const FLOCK_SPAWN_TIMEOUT_MS = 10_000;

/** Exit code flock(1) is told to use (-E) when the lock is held by someone else. */
const FLOCK_BUSY_EXIT = 75;

/** Another process holds the lock. */
export class LockBusyError extends Error {
  override name = 'LockBusyError';
  constructor(
    readonly file: string,
    /** The pid the holder wrote into the file, when it is readable. */
    readonly holderPid: number | undefined,
  ) {
    super(`${file} is locked by ${holderPid !== undefined ? `pid ${holderPid}` : 'another process'}`);
  }
}

/** The lock could not be taken for a reason other than another holder (flock missing, I/O error). */
export class LockError extends Error {
  override name = 'LockError';
  constructor(
    message: string,
    readonly file: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A held lock; released by release() or by the death of this process. */
export interface FileLock {
  readonly file: string;
  release(): Promise<void>;
}

/** Options of acquireLock; defaults: FLOCK_BIN, this process's pid. */
export interface AcquireLockOptions {
  flockBin?: string;
  pid?: number;
  /** Remove the file when the lock is released (default false: the file stays, empty of meaning). */
  unlinkOnRelease?: boolean;
}

/**
 * Takes the exclusive lock on `file` without waiting, creating it root-only (0600). Throws
 * LockBusyError (with the holder's pid) when another process holds it, LockError otherwise.
 * A path that is not this user's own single-link regular file (a symlink, a FIFO, a file another
 * user planted in a directory it can write) is replaced, never followed.
 */
export async function acquireLock(file: string, o: AcquireLockOptions = {}): Promise<FileLock> {
  const pid = o.pid ?? process.pid;
  for (let attempt = 0; ; attempt++) {
    const fh = await openOwnFile(file);
    let keep = false;
    try {
      const code = await flockFd(fh, o.flockBin ?? FLOCK_BIN, file);
      if (code === FLOCK_BUSY_EXIT) throw new LockBusyError(file, await readPid(fh));
      if (code !== 0) throw new LockError(`flock ${file} failed (exit ${code})`, file);
      // The path may have been replaced between open and lock: the lock must be on what the path names.
      const [held, named] = await Promise.all([fh.stat(), lstat(file).catch(() => undefined)]);
      if (!named || named.ino !== held.ino || named.dev !== held.dev) {
        if (attempt >= 2) throw new LockError(`${file} keeps being replaced`, file);
        continue;
      }
      await writePid(fh, pid);
      keep = true;
      return {
        file,
        async release() {
          // Unlinked while still held, so no one locks this file after us by its name; a process
          // that opened it before sees the name gone once it holds the lock and starts again.
          if (o.unlinkOnRelease === true) await unlink(file).catch(() => {});
          // Closing the only descriptor of the open file description drops the flock.
          await fh.close().catch(() => {});
        },
      };
    } finally {
      if (!keep) await fh.close().catch(() => {});
    }
  }
}

async function openOwnFile(file: string): Promise<FileHandle> {
  const uid = process.geteuid?.() ?? 0;
  for (let attempt = 0; attempt < 3; attempt++) {
    let fh: FileHandle;
    try {
      fh = await open(file, fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW | fsc.O_NONBLOCK, 0o600);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ELOOP: a symlink; ENXIO/EISDIR...: not a file we may use. Replace it.
      if (code === 'ELOOP' || code === 'ENXIO' || code === 'EISDIR') {
        await removePlanted(file, err);
        continue;
      }
      throw new LockError(`cannot open ${file} (${code ?? 'error'})`, file, { cause: err });
    }
    const st = await fh.stat();
    if (st.isFile() && st.uid === uid && st.nlink === 1 && (st.mode & 0o077) === 0) return fh;
    await fh.close();
    await removePlanted(file, undefined);
  }
  throw new LockError(`${file} keeps being replaced by something that is not a private regular file`, file);
}

async function removePlanted(file: string, cause: unknown): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    throw new LockError(`${file} is not a private regular file and cannot be removed`, file, { cause: cause ?? err });
  }
}

/** Runs `flock -n -E 75 3` with our descriptor as its fd 3; resolves with its exit code. */
function flockFd(fh: FileHandle, bin: string, file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['--exclusive', '--nonblock', '--conflict-exit-code', String(FLOCK_BUSY_EXIT), '3'], {
      stdio: ['ignore', 'ignore', 'pipe', fh.fd],
      timeout: FLOCK_SPAWN_TIMEOUT_MS,
      env: {},
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 1024) stderr += d.toString('utf8');
    });
    child.once('error', (err) => reject(new LockError(`cannot run ${bin} to lock ${file}`, file, { cause: err })));
    child.once('close', (code, sig) => {
      if (code === null) reject(new LockError(`${bin} was killed (${sig ?? 'signal'}) locking ${file}`, file));
      else if (code !== 0 && code !== FLOCK_BUSY_EXIT)
        reject(new LockError(`${bin} failed on ${file}: ${stderr.trim() || `exit ${code}`}`, file));
      else resolve(code);
    });
  });
}

/**
 * Writes the holder's pid into the locked file. A full disk (ENOSPC, EDQUOT) leaves the file empty:
 * the lock is held all the same (a refused caller then names "another process"), since an agent
 * must start on a disk a job filled, to clean it.
 */
async function writePid(fh: FileHandle, pid: number): Promise<void> {
  await fh.truncate(0);
  try {
    await fh.write(`${pid}\n`, 0);
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOSPC' && code !== 'EDQUOT') throw err;
    await fh.truncate(0).catch(() => {});
  }
}

async function readPid(fh: FileHandle): Promise<number | undefined> {
  const buf = Buffer.alloc(32);
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0).catch(() => ({ bytesRead: 0 }));
  const n = Number(buf.subarray(0, bytesRead).toString('utf8').trim());
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** Reads the pid a holder wrote into `file` (for `drain` messages and tests); undefined if none. */
export async function lockHolderPid(file: string): Promise<number | undefined> {
  const fh = await open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK).catch(() => undefined);
  if (!fh) return undefined;
  try {
    return await readPid(fh);
  } finally {
    await fh.close();
  }
}
