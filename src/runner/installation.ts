import { lstat, rm } from 'node:fs/promises';
import path from 'node:path';
import { RunnerInstallError } from '../lib/errors.js';

/** Files the runner writes when configured; single-job completion deletes them (docs/runner-contract.md §7). */
export const RUNNER_CONFIG_FILES = [
  '.runner',
  '.runner_migrated',
  '.credentials',
  '.credentials_migrated',
  '.credentials_rsaparams',
] as const;

/** Paths that every runner installation has (docs/runner-contract.md §1, §7). */
const REQUIRED = ['bin/Runner.Listener', 'run.sh', 'config.sh'];

/**
 * Checks that `root` is an unpacked runner installation; throws RunnerInstallError naming the path
 * and what is missing. The CLI maps that to exit 78.
 */
export async function checkRunnerInstallation(root: string): Promise<void> {
  if (!path.isAbsolute(root)) {
    throw new RunnerInstallError(`runner.root must be an absolute path, got "${root}"`, root);
  }
  try {
    const st = await lstat(root);
    if (!st.isDirectory()) throw new RunnerInstallError(`runner.root ${root} is not a directory`, root);
  } catch (err) {
    if (err instanceof RunnerInstallError) throw err;
    throw new RunnerInstallError(`runner.root ${root} does not exist`, root, { cause: err });
  }
  const missing: string[] = [];
  for (const rel of REQUIRED) {
    try {
      await lstat(path.join(root, rel));
    } catch {
      missing.push(rel);
    }
  }
  if (missing.length > 0) {
    throw new RunnerInstallError(
      `runner.root ${root} is not a runner installation: missing ${missing.join(', ')} (unpack actions-runner-linux-*.tar.gz there)`,
      root,
    );
  }
}

/** The listener executable of an installation. */
export function listenerPath(root: string): string {
  return path.join(root, 'bin', 'Runner.Listener');
}

/** Deletes the runner's local registration files (what `config.sh remove --local` does). */
export async function removeLocalConfig(root: string): Promise<void> {
  for (const f of RUNNER_CONFIG_FILES) await rm(path.join(root, f), { force: true });
}
