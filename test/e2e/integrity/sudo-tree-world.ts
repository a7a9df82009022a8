/**
 * The world of the sudo-job integrity tests: a test world whose runner user's sudo grant file is
 * removed whatever happens, a constructed host tree `T` for the integrity check to read, and the
 * agent wired with its check on that tree.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { loadHostConfig } from '../../../src/policy/load.js';
import { wire, type Runtime } from '../../../src/cli/wire.js';
import { systemClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { sudoDropIn } from '../../../src/integrity/sudo-guard.js';
import { createWorld, type World } from '../../helpers/world.js';
import { buildHostTree } from './host-tree.js';

/** A world and its host tree; the grant file is this test's own runner user's (parallel agents release only theirs). */
export async function sudoTreeWorld(t: TestContext): Promise<{ w: World; T: string }> {
  const w = await createWorld();
  const grantFile = sudoDropIn(w.lab.user.name);
  assert.equal(existsSync(grantFile), false, `${grantFile} exists before the test`);
  t.after(async () => {
    // The real path the test makes the agent write: gone whatever happened.
    await rm(grantFile, { force: true });
    await w.dispose();
  });
  const T = path.join(w.lab.root, 'host');
  await mkdir(T);
  await buildHostTree(T);
  return { w, T };
}

/** The agent of `w`, wired with its whole-host integrity check reading the host tree `T`. */
export async function wireOnTree(w: World, T: string): Promise<Runtime> {
  const cfg = await loadHostConfig(w.configFile, {});
  return wire(cfg, { configFile: w.configFile, env: {}, log: silentLogger(), clock: systemClock, hostname: 'testhost', integrityRoot: T });
}
