/**
 * The directories the agent writes as root (the state dir, the trash, the per-job roots) must be
 * root's alone, up to `/`: a config that puts one where the runner user (or any other) could
 * replace it is refused before anything is made there (docs/hostile-jobs.md, "Against the agent's
 * own files").
 */
import { ConfigError } from '../lib/errors.js';
import { whyNotRootOnly } from '../lib/root-only-path.js';

/** Throws ConfigError naming `field` when another user could replace `dir` or a directory above it. */
export async function assertRootOnlyDir(field: string, dir: string, configFile: string): Promise<void> {
  const why = await whyNotRootOnly(dir);
  if (why === undefined) return;
  throw new ConfigError(`${field} ${dir} could be replaced by another user`, configFile, [
    `${configFile}: ${field}: expected a directory that only root can change, up to /, got "${dir}" (${why})`,
  ]);
}
