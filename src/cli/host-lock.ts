/**
 * One agent per host: `run` takes two exclusive locks before it touches anything, one in the state
 * directory (two agents sharing state) and one in the runner root (two agents with different state
 * directories sharing one runner installation). A second agent is refused with the holder's pid.
 */
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../lib/errors.js';
import { acquireLock, LockBusyError, type FileLock } from '../lib/lock.js';

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

/** Errors of a usable directory that has no room or a failing device right now: temporary, not configuration. */
const TEMPORARY_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EMFILE', 'ENFILE', 'EAGAIN']);

/** Both locks of one slot; release() frees them (the kernel also frees them when the agent dies). */
export interface HostLocks {
  files: string[];
  release(): Promise<void>;
}

/**
 * Takes the state-dir lock, then the runner-root lock (a fixed order, so two agents never hold one
 * each and wait). Throws LockBusyError (holder pid) or LockError; on failure nothing stays held.
 */
export async function takeHostLocks(stateDir: string, runnerRoot: string, configFile: string): Promise<HostLocks> {
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
  await mkdir(stateDir, { recursive: true, mode: 0o711 }).catch(stateErr);
  await chmod(stateDir, 0o711).catch(stateErr);
  const held: FileLock[] = [];
  const release = async (): Promise<void> => {
    for (const l of held.reverse()) await l.release();
  };
  try {
    held.push(await acquireLock(stateLockFile(stateDir)).catch(stateErr));
    held.push(
      await acquireLock(runnerRootLockFile(runnerRoot)).catch(unusable('runner.root', runnerRoot, 'a runner installation root can write')),
    );
  } catch (err) {
    await release();
    throw err;
  }
  return { files: held.map((l) => l.file), release };
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
