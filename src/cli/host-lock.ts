/**
 * One agent per host: `run` takes two exclusive locks before it touches anything, one in the state
 * directory (two agents sharing state) and one in the runner root (two agents with different state
 * directories sharing one runner installation). A second agent is refused with the holder's pid.
 */
import { chmod, mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, describeError } from '../lib/errors.js';
import { acquireLock, LockBusyError, type FileLock } from '../lib/lock.js';
import { assertRootOnlyDir } from './root-only-dirs.js';

/** The lock file in the state directory (root-only, holds the agent's pid). */
export function stateLockFile(stateDir: string): string {
  return path.join(stateDir, 'agent.lock');
}

/**
 * The lock file in the runner root. The runner user may be able to write the root: the file is
 * created root-only (so no job can open it to take the lock first), and a planted symlink or foreign
 * file in its place is replaced, never followed.
 */
export function runnerRootLockFile(runnerRoot: string): string {
  return path.join(runnerRoot, '.runner-warden.lock');
}

/**
 * The host-wide directory of the runner-user locks (a runtime directory, root-only): two agents
 * with different state directories and runner roots but one runner user would each kill the
 * other's job (the cleanup stops every process of that user and restores its home).
 * `RUNNER_WARDEN_LOCK_DIR` moves it (tests keep it inside their own root).
 */
export const HOST_LOCK_DIR = '/run/runner-warden';

/** The lock of one runner user on this host. */
export function runnerUserLockFile(lockDir: string, uid: number): string {
  return path.join(lockDir, `runner-uid-${uid}.lock`);
}

/** Errors of a usable directory that has no room or a failing device right now: temporary, not configuration. */
const TEMPORARY_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EMFILE', 'ENFILE', 'EAGAIN']);

/** Both locks of one slot; release() frees them (the kernel also frees them when the agent dies). */
export interface HostLocks {
  files: string[];
  /** Locks that could not be taken for a reason other than another holder (logged by the caller). */
  warnings: string[];
  release(): Promise<void>;
}

/**
 * Takes the state-dir lock, then the runner-root lock, then (when given) the runner user's lock in
 * the host-wide lock directory (a fixed order, so two agents never hold one each and wait). Throws LockBusyError (holder pid) or LockError; on failure nothing stays held.
 */
export async function takeHostLocks(
  stateDir: string,
  runnerRoot: string,
  configFile: string,
  runnerUser?: { uid: number; lockDir: string },
): Promise<HostLocks> {
  const unusable =
    (field: string, dir: string, expected: string) =>
    (err: unknown): never => {
      const code = (err as NodeJS.ErrnoException).code ?? (err as { cause?: NodeJS.ErrnoException }).cause?.code;
      // Another holder, or a lock failure that is not about the directory (flock(1) missing): as is.
      // A full disk or an I/O error is temporary (75), not a configuration an operator must change.
      if (err instanceof LockBusyError || code === undefined || TEMPORARY_CODES.has(code)) throw err;
      throw new ConfigError(
        `${field} ${dir} cannot be used`,
        configFile,
        [`${configFile}: ${field}: expected ${expected}, got "${dir}" (${code})`],
        { cause: err },
      );
    };
  // The state dir is created here (root-only, traversable) so its lock exists before anything else.
  const stateErr = unusable('stateDir', stateDir, 'a directory root can write');
  // Before it is made or locked: a state dir another user could replace is never written.
  await assertRootOnlyDir('stateDir', stateDir, configFile);
  await mkdir(stateDir, { recursive: true, mode: 0o711 }).catch(stateErr);
  await chmod(stateDir, 0o711).catch(stateErr);
  const held: FileLock[] = [];
  const warnings: string[] = [];
  const release = async (): Promise<void> => {
    for (const l of held.reverse()) await l.release();
  };
  try {
    held.push(await acquireLock(stateLockFile(stateDir)).catch(stateErr));
    held.push(
      await acquireLock(runnerRootLockFile(runnerRoot)).catch(unusable('runner.root', runnerRoot, 'a runner installation root can write')),
    );
    if (runnerUser) {
      try {
        held.push(await takeRunnerUserLock(runnerUser.lockDir, runnerUser.uid));
      } catch (err) {
        if (err instanceof LockBusyError) throw err;
        // A read-only /run (some containers) must not stop the one agent of a host: the state-dir
        // and runner-root locks still hold; the caller logs this.
        warnings.push(`runner user lock in ${runnerUser.lockDir} not taken: ${describeError(err)}`);
      }
    }
  } catch (err) {
    await release();
    throw err;
  }
  return { files: held.map((l) => l.file), warnings, release };
}

/**
 * The runner user's lock in the host-wide directory. The file is unlinked at release and the
 * directory removed when empty (a host keeps nothing per past user); a waiter that opened the old
 * file finds the name gone once it holds the lock and starts again (acquireLock), and one whose
 * directory vanished under it makes it again.
 */
async function takeRunnerUserLock(lockDir: string, uid: number): Promise<FileLock> {
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(lockDir, { recursive: true, mode: 0o700 });
      await chmod(lockDir, 0o700);
      const lock = await acquireLock(runnerUserLockFile(lockDir, uid), { unlinkOnRelease: true });
      return {
        file: lock.file,
        async release() {
          await lock.release();
          await rmdir(lockDir).catch(() => {});
        },
      };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as { cause?: NodeJS.ErrnoException }).cause?.code;
      if (code !== 'ENOENT' || attempt >= 2) throw err;
    }
  }
}

/**
 * The pid of the agent running on `stateDir`, or undefined when none holds its lock (for commands
 * such as `unquarantine` that act differently while an agent runs). Never signal this pid: ask the
 * agent through its control socket.
 */
export async function runningAgentPid(stateDir: string): Promise<number | undefined> {
  try {
    const probe = await acquireLock(stateLockFile(stateDir));
    await probe.release();
    return undefined;
  } catch (err) {
    if (err instanceof LockBusyError) return err.holderPid ?? -1;
    throw err;
  }
}
