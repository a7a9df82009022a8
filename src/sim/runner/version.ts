/**
 * The simulated runner's version: a marker file in `bin/` written by install.ts (and by the
 * simulated self-update for the new `bin.<version>`), read by the listener at start.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The version installSimulatedRunner installs unless told otherwise (actions/runner 2.336.0). */
export const DEFAULT_RUNNER_VERSION = '2.336.0';

/** The marker file's name inside `bin/`. */
export const VERSION_FILE = 'runner.version';

/** Reads `<root>/bin/runner.version`; the default version when it is missing. */
export function readInstalledVersion(root: string): string {
  try {
    const v = readFileSync(path.join(root, 'bin', VERSION_FILE), 'utf8').trim();
    return v || DEFAULT_RUNNER_VERSION;
  } catch {
    return DEFAULT_RUNNER_VERSION;
  }
}
