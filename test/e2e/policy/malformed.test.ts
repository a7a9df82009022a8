import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, symlink, rm, open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, PolicyError } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { loadHostConfig, loadPolicy } from '../../../src/policy/load.js';
import { PolicyStore } from '../../../src/policy/watch.js';
import { BAD_CASES, type BadCase } from './malformed-cases.js';

interface World {
  root: string;
  dir: string;
  /** Makes absolute paths in messages comparable with the table. */
  relative(line: string): string;
}

async function world(): Promise<World> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-policy-bad-'));
  const dir = path.join(root, 'policies');
  await mkdir(dir);
  await mkdir(path.join(root, 'outside'));
  await writeFile(path.join(root, 'outside', 'base.yaml'), 'version: 1\n');
  return { root, dir, relative: (line) => line.split(`${dir}/`).join('').split(root).join('$ROOT') };
}

async function writeCase(w: World, c: BadCase): Promise<void> {
  for (const [name, content] of Object.entries(c.files)) await writeFile(path.join(w.dir, name), content);
  for (const [name, target] of Object.entries(c.links ?? {})) {
    await symlink(target.replace('$OUTSIDE', path.join(w.root, 'outside')), path.join(w.dir, name));
  }
  if (c.sparseBytes !== undefined) {
    // Sparse: the size is real for stat, nothing is written to disk.
    const fh = await open(path.join(w.dir, c.entry), 'w');
    await fh.truncate(c.sparseBytes);
    await fh.close();
  }
}

test('the table holds at least 30 malformed files', () => {
  assert.ok(BAD_CASES.length >= 30, `only ${BAD_CASES.length} cases`);
});

for (const c of BAD_CASES) {
  test(`${c.name} is rejected with its precise message`, async () => {
    const w = await world();
    try {
      await writeCase(w, c);
      const file = path.join(w.dir, c.entry);
      // CPU time, not wall time: a loaded CI machine must not fail a test about work done.
      const started = process.cpuUsage();
      let err: unknown;
      try {
        if (c.kind === 'host') await loadHostConfig(file, c.env ?? {});
        else await loadPolicy(file);
      } catch (e) {
        err = e;
      }
      const used = process.cpuUsage(started);
      const ms = (used.user + used.system) / 1000;
      const cls = c.kind === 'host' ? ConfigError : PolicyError;
      assert.ok(err instanceof cls, `expected a ${cls.name}, got ${String(err)}: the loader crashed or accepted bad input`);
      assert.deepEqual(
        err.problems.map((p) => w.relative(p)),
        c.expect,
        'the problems listed differ from the expected messages',
      );
      assert.ok(err.message.includes(err.problems[0] as string), 'the error message should carry the problems');
      assert.ok(ms < 1000, `rejecting took ${ms.toFixed(0)} ms of CPU: a bound (size, aliases, nesting) is not applied early`);
    } finally {
      await rm(w.root, { recursive: true, force: true });
    }
  });
}

const GOOD = 'version: 1\nhost:\n  maxJobs: 1\n';

test('no malformed policy replaces the good policy a PolicyStore holds', async () => {
  for (const c of BAD_CASES.filter((x) => x.kind === 'policy')) {
    const w = await world();
    try {
      const team = c.entry.replace(/\.(ya?ml|json)$/, '');
      await writeFile(path.join(w.dir, c.entry), GOOD);
      const results: string[] = [];
      const store = new PolicyStore({ dir: w.dir, team, log: silentLogger(), clock: new ManualClock(), onReload: (r) => results.push(r) });
      await store.load();
      const before = store.current();
      const version = store.status().version;
      await rm(path.join(w.dir, c.entry));
      await writeCase(w, c);
      assert.equal(await store.reload(), 'error', `${c.name}: the store accepted it`);
      assert.deepEqual(results, ['error'], `${c.name}: onReload was not told about the refused change`);
      assert.equal(store.atJobBoundary(), before, `${c.name}: the good policy was replaced`);
      const status = store.status();
      assert.equal(status.version, version, `${c.name}: the version in effect changed`);
      assert.ok(status.lastReloadError, `${c.name}: status does not show the refused change`);
      const firstMessage = (c.expect[0] as string).replace(/^[^:]*(:\d+:\d+)?: /, '');
      assert.ok(
        w.relative(status.lastReloadError).includes(firstMessage),
        `${c.name}: lastReloadError ${JSON.stringify(status.lastReloadError)} lacks ${JSON.stringify(firstMessage)}`,
      );
    } finally {
      await rm(w.root, { recursive: true, force: true });
    }
  }
});
