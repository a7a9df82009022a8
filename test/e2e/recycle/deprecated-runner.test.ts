/**
 * A runner version GitHub deprecates, with runner.updates set, through the real agent, the runner
 * simulator, the fake GitHub and a loopback release mirror: a verified newer release is installed
 * in place and the host registers again instead of recycling; a release whose tarball does not
 * match its published SHA-256 is refused, the host keeps serving the old version until GitHub
 * refuses it, and only then recycles, naming the refusal.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstat, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createWorld, until, type World } from '../agent/agent-world.js';
import type { JournalRecord } from '../../../src/agent/journal.js';
import { startFakeReleases, type FakeRelease } from '../../../src/sim/github/releases.js';
import { installSimulatedRunner } from '../../../src/sim/runner/install.js';
import { DEFAULT_RUNNER_VERSION } from '../../../src/sim/runner/version.js';
import { installedVersion } from '../../../src/runner/update.js';

const NEXT = DEFAULT_RUNNER_VERSION.replace(/\.(\d+)$/, (_m, p: string) => `.${Number(p) + 1}`);
const ok = [{ name: 'ok', run: 'echo fine' }];

function events(records: JournalRecord[], name: string): Extract<JournalRecord, { type: 'event' }>[] {
  return records.filter((r): r is Extract<JournalRecord, { type: 'event' }> => r.type === 'event' && r.event === name);
}

/**
 * A world whose mirror serves the simulated runner at NEXT, packed as actions/runner packs it,
 * with the digest `digest` publishes; the agent stops after `maxJobs`, the recycle provider exits 3.
 */
async function setup(t: TestContext, digest: FakeRelease['digest'], maxJobs: number): Promise<{ w: World; versions: string[] }> {
  const releases = await startFakeReleases([]);
  t.after(() => releases.close());
  const w = await createWorld({
    runner: { maxJobs, updates: { source: releases.url } },
    config: { recycle: { provider: 'exit', exitCode: 3 } },
  });
  t.after(() => w.dispose());
  const rel = path.join(w.lab.root, 'release');
  await installSimulatedRunner(rel, { version: NEXT });
  // The simulator's wrappers name their root; a real release finds it from where it is unpacked.
  for (const f of spawnSync('grep', ['-rlF', rel, rel], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
    await writeFile(f, (await readFile(f, 'utf8')).split(rel).join(w.runnerRoot));
  }
  const tgz = path.join(w.lab.root, 'release.tar.gz');
  assert.equal(spawnSync('tar', ['-czf', tgz, '-C', rel, '.']).status, 0);
  releases.set([{ version: NEXT, assets: [{ name: `actions-runner-linux-x64-${NEXT}.tar.gz`, bytes: await readFile(tgz) }], digest }]);
  // The version each listener reported when it opened its session (what GitHub sees).
  const versions: string[] = [];
  w.fake.events.on('session-created', (e: { version: string }) => versions.push(e.version));
  return { w, versions };
}

/** Runs the agent; GitHub deprecates the running version while job `during` runs. */
async function run(w: World, jobs: number, during: number): Promise<{ exit: { code: number; reason: string }; records: JournalRecord[] }> {
  const ids = Array.from({ length: jobs }, (_, i) => w.fake.enqueueJob({ repository: 'octo/app', runId: 100 + i, steps: ok }));
  const rt = await w.runtime();
  const running = rt.agent.run(AbortSignal.timeout(120_000));
  await until(() => w.fake.job(ids[during - 1] as string)?.status === 'running', `job ${during} to run`, 60_000);
  w.fake.deprecateRunnerVersionsBelow(NEXT);
  const exit = await running;
  await rt.close();
  return { exit, records: await w.journal() };
}

// Two hosts of their own (worlds, release mirrors): they run at once.
describe('a deprecated runner version', { concurrency: true }, () => {
  test('a deprecated runner with a verified newer release is updated in place and registers again, no recycle', async (t) => {
    const { w, versions } = await setup(t, 'true', 2);
    const { exit, records } = await run(w, 2, 1);
    const jobs = records.filter((r) => r.type === 'job');
    assert.equal(jobs.length, 2, `both jobs ran (exit ${exit.code}: ${exit.reason})`);
    assert.deepEqual(events(records, 'recycle'), [], 'the host was recycled although a verified release was available');
    const updated = events(records, 'runner-updated');
    assert.equal(updated.length, 1);
    assert.equal(updated[0]?.detail?.version, NEXT);
    assert.equal(updated[0]?.detail?.from, DEFAULT_RUNNER_VERSION);
    assert.equal(updated[0]?.detail?.trigger, 'deprecated');
    assert.equal(await installedVersion(w.runnerRoot), NEXT);
    assert.ok((await lstat(path.join(w.runnerRoot, 'bin'))).isSymbolicLink(), 'bin points into the versions switched by one rename');
    assert.equal(versions[0], DEFAULT_RUNNER_VERSION, 'the first listener reported the version it was started from');
    assert.equal(versions.at(-1), NEXT, 'the listener after the update reported the new version to GitHub');
  });

  test('a release whose SHA-256 differs from the published one is refused: the old runner serves until deprecated, then the host recycles', async (t) => {
    const { w, versions } = await setup(t, 'wrong', 3);
    const { exit, records } = await run(w, 3, 2);
    assert.equal(exit.code, 3, `the exit provider's code: ${exit.reason}`);
    assert.equal(records.filter((r) => r.type === 'job').length, 2, 'the old version served until GitHub refused it');
    assert.deepEqual(events(records, 'runner-updated'), []);
    const recycle = events(records, 'recycle');
    assert.equal(recycle.length, 1);
    assert.match(String(recycle[0]?.detail?.reason), /^runner-version-deprecated: .*update refused: .*differs from the published/);
    assert.equal(await installedVersion(w.runnerRoot), DEFAULT_RUNNER_VERSION, 'nothing of the refused release was switched in');
    assert.ok((await lstat(path.join(w.runnerRoot, 'bin'))).isDirectory(), 'bin is still the original directory');
    assert.ok(versions.length >= 2 && versions.every((v) => v === DEFAULT_RUNNER_VERSION), JSON.stringify(versions));
  });
});
