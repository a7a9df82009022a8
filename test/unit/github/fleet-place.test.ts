/**
 * The host's place in the fleet: the host config's `fleet` section (and its environment
 * override, what an image pipeline sets), the checks the schema cannot make (index < size), the
 * hashed index when none is given, and the window GitHub's secondary limit sizes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../../src/lib/errors.js';
import { fleetPlace, hashName } from '../../../src/lib/fleet-slots.js';
import { githubSlots, githubWindowMs } from '../../../src/github/fleet-pacing.js';
import { loadHostConfig } from '../../../src/policy/load.js';

const FILE = '/etc/runner-warden/config.yaml';

test('an index outside the fleet is refused, naming the file, the field and what was expected', () => {
  for (const index of [1000, -1, 2.5]) {
    assert.throws(
      () => fleetPlace({ size: 1000, index }, 'h', FILE),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.file === FILE &&
        e.problems.some((p) => p.includes(`${FILE}: fleet.index: expected an integer from 0 to fleet.size - 1 (999), got ${index}`)),
    );
  }
  assert.throws(
    () => fleetPlace({ size: 0 }, 'h', FILE),
    (e: unknown) => e instanceof ConfigError && /fleet\.size: expected an integer >= 1/.test(e.problems[0]!),
  );
  assert.deepEqual(fleetPlace({ size: 1000, index: 999 }, 'h', FILE), { size: 1000, index: 999 });
});

test('without an index, the host name hashed modulo the size: stable and spread', () => {
  assert.equal(fleetPlace({ size: 1000 }, 'runner-a', FILE).index, hashName('runner-a') % 1000);
  assert.equal(hashName('runner-a'), hashName('runner-a'));
  // 10,000 names over 100 indexes: each gets about 100 (a loose chi-square bound, fixed names).
  const counts = new Array<number>(100).fill(0);
  for (let i = 0; i < 10_000; i++) counts[fleetPlace({ size: 100 }, `ip-10-0-${i >> 8}-${i & 255}`, FILE).index]! += 1;
  const chi = counts.reduce((a, n) => a + (n - 100) ** 2 / 100, 0);
  assert.ok(chi < 160, `not spread: chi2=${chi.toFixed(0)} over 99 degrees of freedom`);
});

test('the window is one 350 ms slot per host (180 writes a minute + 5%), at least a minute', () => {
  assert.equal(githubWindowMs(1000), 350_000);
  assert.equal(githubWindowMs(10), 60_000);
  const a = githubSlots({ size: 1000, index: 0 });
  const b = githubSlots({ size: 1000, index: 999 });
  assert.equal(a.slotMs, 350);
  assert.equal(b.offsetMs, 999 * 350);
});

test('the fleet section loads from the host config, and RUNNER_WARDEN_FLEET_INDEX sets the index', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'rw-fleet-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.yaml');
  await writeFile(
    file,
    [
      'github:',
      '  org: acme',
      '  token: { env: GITHUB_TOKEN }',
      'runner:',
      '  root: /opt/actions-runner',
      '  user: runner',
      'fleet:',
      '  size: 1000',
      '',
    ].join('\n'),
  );
  const plain = await loadHostConfig(file, {});
  assert.deepEqual(plain.fleet, { size: 1000 });
  const set = await loadHostConfig(file, { RUNNER_WARDEN_FLEET_INDEX: '17' });
  assert.deepEqual(set.fleet, { size: 1000, index: 17 });
  await writeFile(file, 'github: { org: acme, token: { env: T } }\nrunner: { root: /opt/r, user: runner }\nfleet: { index: 3 }\n');
  await assert.rejects(
    loadHostConfig(file, {}),
    (e: unknown) => e instanceof ConfigError && e.problems.some((p) => /fleet/.test(p) && /size/.test(p)),
  );
});
