import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger, type Logger } from '../../../src/lib/log.js';
import { ManualClock, systemClock } from '../../../src/lib/clock.js';
import { PolicyError } from '../../../src/lib/errors.js';
import { PolicyStore } from '../../../src/policy/watch.js';
import { DEFAULT_POLICY } from '../../../src/policy/types.js';

/** A logger whose records land in `lines` (pino's JSON, parsed). */
function sinkLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { log, lines };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-policy-watch-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes via a temp file and rename, as editors and config managers do. */
async function replaceFile(file: string, content: string): Promise<void> {
  await writeFile(`${file}.tmp`, content);
  await rename(`${file}.tmp`, file);
}

test('a team without a file gets the default policy under its own name, and status says so', async () => {
  await withDir(async (dir) => {
    const store = new PolicyStore({ dir, team: 'payments', log: sinkLogger().log, clock: new ManualClock(0) });
    await store.load();
    assert.deepEqual(store.current(), { ...DEFAULT_POLICY, team: 'payments' });
    const status = store.status();
    assert.equal(status.usingDefault, true);
    assert.equal(status.file, undefined);
    assert.equal(status.team, 'payments');
    assert.equal(status.loadedAt, '1970-01-01T00:00:00.000Z');
    assert.match(status.version, /^default-/);
  });
});

test('an invalid team file fails the initial load with PolicyError', async () => {
  await withDir(async (dir) => {
    await writeFile(path.join(dir, 'team.yaml'), 'version: 1\nhost: {maxJobs: 0}\n');
    const store = new PolicyStore({ dir, team: 'team', log: sinkLogger().log });
    await assert.rejects(store.load(), PolicyError);
  });
});

test('two files for one team are refused rather than one picked silently', async () => {
  await withDir(async (dir) => {
    await writeFile(path.join(dir, 'team.yaml'), 'version: 1\n');
    await writeFile(path.join(dir, 'team.json'), '{"version": 1}');
    const store = new PolicyStore({ dir, team: 'team', log: sinkLogger().log });
    await assert.rejects(store.load(), (e: unknown) => e instanceof PolicyError && /got team.yaml and team.json/.test(e.problems[0] ?? ''));
  });
});

test('a valid change waits for the job boundary; an invalid one keeps the last good policy and is logged once', async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, 'team.yaml');
    await writeFile(file, 'version: 1\nhost: {maxJobs: 5}\n');
    const { log, lines } = sinkLogger();
    const results: string[] = [];
    const clock = new ManualClock(1000);
    const store = new PolicyStore({ dir, team: 'team', log, clock, onReload: (r) => results.push(r) });
    await store.load();
    const first = store.current();
    assert.ok(Object.isFrozen(first.cleanup.home.keep), 'the policy in effect should be frozen against accidental mutation');

    await writeFile(file, 'version: 1\nhost: {maxJobs: 7}\n');
    clock.advance(500);
    assert.equal(await store.reload(), 'ok');
    assert.equal(store.current().host.maxJobs, 5, 'a change must not take effect in the middle of a job');
    assert.ok(store.status().pendingVersion, 'status should show the pending change');

    await writeFile(file, 'version: 1\nhost: {maxJobs: -1}\n');
    assert.equal(await store.reload(), 'error');
    assert.equal(await store.reload(), 'error');
    const refused = lines.filter((l) => l.msg === 'policy change refused, keeping the last good policy');
    assert.equal(refused.length, 1, 'the same error should be logged once, not at every reload');
    assert.match(store.status().lastReloadError ?? '', /team\.yaml:2:17: host\.maxJobs: expected an integer from 1 to 10000, got -1/);

    assert.equal(store.atJobBoundary().host.maxJobs, 7, 'the last VALID change should be adopted at the boundary');
    assert.equal(store.status().pendingVersion, undefined);
    assert.equal(store.status().loadedAt, new Date(1500).toISOString());

    await writeFile(file, 'version: 1\nhost: {maxJobs: 7}\n');
    assert.equal(await store.reload(), 'ok');
    assert.equal(store.status().lastReloadError, undefined, 'a good reload should clear the error');
    assert.equal(store.status().pendingVersion, undefined, 'unchanged content is not a pending change');
    assert.deepEqual(results, ['ok', 'error', 'error', 'ok']);
  });
});

test('a change reverted before the boundary is not adopted', async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, 'team.yaml');
    await writeFile(file, 'version: 1\n');
    const store = new PolicyStore({ dir, team: 'team', log: sinkLogger().log });
    await store.load();
    const version = store.status().version;
    await writeFile(file, 'version: 1\nlimits: {maxJobMinutes: 5}\n');
    await store.reload();
    await writeFile(file, 'version: 1\n');
    await store.reload();
    store.atJobBoundary();
    assert.equal(store.status().version, version);
  });
});

/** Resolves on the next onReload result, or rejects after `ms` (real time: chokidar is real). */
function nextReload(results: { waiters: ((r: string) => void)[] }, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reload within ${ms} ms: the watcher missed the change`)), ms);
    results.waiters.push((r) => {
      clearTimeout(timer);
      resolve(r);
    });
  });
}

test('run() notices edits to a base file of the chain and a team file created later, then stops on abort', async () => {
  await withDir(async (dir) => {
    await writeFile(path.join(dir, 'base.yaml'), 'version: 1\n');
    await writeFile(path.join(dir, 'team.yaml'), 'version: 1\nextends: base.yaml\n');
    const hub = { waiters: [] as ((r: string) => void)[] };
    const onReload = (r: 'ok' | 'error'): void => {
      for (const w of hub.waiters.splice(0)) w(r);
    };
    // Real clock: the debounce is real time here, kept short.
    const store = new PolicyStore({ dir, team: 'team', log: sinkLogger().log, clock: systemClock, onReload, debounceMs: 20 });
    await store.load();
    const controller = new AbortController();
    const running = store.run(controller.signal);
    try {
      await store.whenWatching();
      let next = nextReload(hub);
      await replaceFile(path.join(dir, 'base.yaml'), 'version: 1\nlimits: {maxJobMinutes: 42}\n');
      assert.equal(await next, 'ok');
      assert.equal(store.atJobBoundary().limits.maxJobMinutes, 42, 'a base file change should be adopted at the boundary');

      // chokidar folds events on one file that come within ~100 ms (atomic-write detection); real
      // edits are seconds apart, so let it settle rather than racing it.
      await new Promise((resolve) => setTimeout(resolve, 250));
      next = nextReload(hub);
      await writeFile(path.join(dir, 'base.yaml'), 'version: 1\nlimits: {maxJobMinutes: "soon"}\n');
      assert.equal(await next, 'error');
      assert.equal(store.atJobBoundary().limits.maxJobMinutes, 42, 'an invalid base must not replace the good policy');
    } finally {
      controller.abort();
      await running;
    }
  });
  await withDir(async (dir) => {
    const hub = { waiters: [] as ((r: string) => void)[] };
    const store = new PolicyStore({
      dir,
      team: 'late',
      log: sinkLogger().log,
      debounceMs: 20,
      onReload: (r) => {
        for (const w of hub.waiters.splice(0)) w(r);
      },
    });
    await store.load();
    const controller = new AbortController();
    const running = store.run(controller.signal);
    try {
      await store.whenWatching();
      const next = nextReload(hub);
      await writeFile(path.join(dir, 'late.yaml'), 'version: 1\nhost: {maxJobs: 3}\n');
      assert.equal(await next, 'ok');
      assert.equal(store.atJobBoundary().host.maxJobs, 3);
      assert.equal(store.status().usingDefault, false);
    } finally {
      controller.abort();
      await running;
    }
  });
});
