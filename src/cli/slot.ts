/**
 * The slot the agent serves, built from the host config: the runner user, the runner root, and the
 * root-owned state, job and trash directories.
 */
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../lib/errors.js';
import { lookupUser } from '../lib/users.js';
import type { HostConfig } from '../policy/types.js';
import type { Slot } from '../cleanup/types.js';
import { checkRunnerInstallation } from '../runner/installation.js';
import { assertRootOnlyDir } from './root-only-dirs.js';

/** The state directory's layout. */
export function statePaths(stateDir: string): {
  publicDir: string;
  jobRoot: string;
  trashDir: string;
} {
  return {
    publicDir: path.join(stateDir, 'public'),
    jobRoot: path.join(stateDir, 'jobs'),
    trashDir: path.join(stateDir, 'trash'),
  };
}

/** Builds the slot from the config; the state dir is made root-owned 0711 (traversable, not listable). */
export async function buildSlot(config: HostConfig, configFile: string): Promise<Slot> {
  const user = await lookupUser(config.runner.user);
  if (!user) {
    throw new ConfigError(`runner.user "${config.runner.user}" does not exist`, configFile, [
      `${configFile}: runner.user: expected an existing local user, got "${config.runner.user}"`,
    ]);
  }
  await checkRunnerInstallation(config.runner.root);
  // The agent writes these as root: none may be another user's to replace (checked before any is made).
  await assertRootOnlyDir('stateDir', config.stateDir, configFile);
  if (config.runner.jobRoot) await assertRootOnlyDir('runner.jobRoot', config.runner.jobRoot, configFile);
  if (config.runner.trashDir) await assertRootOnlyDir('runner.trashDir', config.runner.trashDir, configFile);
  await mkdir(config.stateDir, { recursive: true, mode: 0o711 });
  await chmod(config.stateDir, 0o711);
  const p = statePaths(config.stateDir);
  const jobRoot = config.runner.jobRoot ?? p.jobRoot;
  await mkdir(jobRoot, { recursive: true, mode: 0o711 });
  await chmod(jobRoot, 0o711);
  return {
    index: 0,
    runnerRoot: config.runner.root,
    workDir: path.join(config.runner.root, '_work'),
    user: { name: user.name, uid: user.uid, gid: user.gid, home: user.home },
    stateDir: config.stateDir,
    trashDir: config.runner.trashDir ?? p.trashDir,
    jobRoot,
  };
}
