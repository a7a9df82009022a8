/** The agent of a test world, wired with its whole-host integrity check reading the host tree `T`. */
import { loadHostConfig } from '../../../src/policy/load.js';
import { wire, type Runtime } from '../../../src/cli/wire.js';
import { systemClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { World } from '../../helpers/world.js';

export async function wireOnTree(w: World, T: string): Promise<Runtime> {
  const cfg = await loadHostConfig(w.configFile, {});
  return wire(cfg, { configFile: w.configFile, env: {}, log: silentLogger(), clock: systemClock, hostname: 'testhost', integrityRoot: T });
}
