/**
 * Low disk, end to end: the runner installation (its work directory) and the agent's state (with
 * the trash) on one small tmpfs, a job that fills it. The decision must see the disk as it is after
 * the job's work directory has left the trash: a job that only filled its workspace leaves the host
 * fit to reuse; a job that also left data elsewhere on the disk gets the host recycled with reason
 * disk-low, never quarantined (low disk is not evidence of tampering).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chown, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { benchPolicy, createWorld, type World } from '../../../bench/lib/world.js';
import { Journal, type JobRecord, type JournalRecord } from '../../../src/agent/journal.js';
import { loadHostConfig } from '../../../src/policy/load.js';
import { wire } from '../../../src/cli/wire.js';
import { systemClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';

const MIB = 1024 * 1024;
/** The host's disk: small enough to fill in a second, big enough for the runner and the journal. */
const DISK_MIB = 64;
/** The policy's watermark: below this share free, the host is recycled. */
const MIN_FREE_PERCENT = 30;

async function lowDiskWorld(t: { after: (fn: () => Promise<void>) => void }, maxJobs: number): Promise<World & { cache: string }> {
  const w = await createWorld({ hostFsBytes: DISK_MIB * MIB, runner: { maxJobs }, config: { recycle: { provider: 'exit', exitCode: 0 } } });
  t.after(() => w.dispose());
  // Somewhere on the same disk no cleanup step owns (a tool cache): what a job leaves there stays.
  const cache = path.join(path.dirname(w.stateDir), 'cache');
  await mkdir(cache);
  await chown(cache, w.user.uid, w.user.gid);
  await writeFile(
    path.join(w.policyDir, 'test.yaml'),
    stringify(benchPolicy(w.root, { limits: { minFreeDiskPercent: MIN_FREE_PERCENT }, docker: { mode: 'none' } })),
  );
  await w.baseline();
  return Object.assign(w, { cache });
}

/** Runs the agent in this process until it stops (bounded); its exit and journal. */
async function runAgent(w: World): Promise<{ exit: { code: number; reason: string }; records: JournalRecord[] }> {
  const rt = await wire(await loadHostConfig(w.configFile, {}), {
    configFile: w.configFile,
    env: {},
    log: silentLogger(),
    clock: systemClock,
    hostname: 'diskhost',
  });
  try {
    const exit = await rt.agent.run(AbortSignal.timeout(150_000));
    return { exit, records: (await new Journal({ dir: w.stateDir }).readAll()).records };
  } finally {
    await rt.close();
  }
}

const fillStep = (where: string, mib: number): string => `head -c ${mib * MIB} /dev/zero > ${where}`;

describe('a job that fills the host disk', { concurrency: 2 }, () => {
  test('filling only its workspace: measured after the trash is empty, the host is reused', { timeout: 180_000 }, async (t) => {
    const w = await lowDiskWorld(t, 2);
    // 40 of 64 MiB: below the watermark while the work directory sits in the trash, far above it once gone.
    w.fake.enqueueJob({ repository: 'octo/app', runId: 1, steps: [{ name: 'fill', run: fillStep('"$GITHUB_WORKSPACE/big"', 40) }] });
    w.fake.enqueueJob({ repository: 'octo/app', runId: 2, steps: [{ name: 'next', run: 'echo next' }] });
    const { exit, records } = await runAgent(w);
    const jobs = records.filter((r): r is JobRecord => r.type === 'job');
    assert.equal(jobs.length, 2, `both jobs should run on the reused host: ${exit.reason}`);
    assert.equal(jobs[0]?.decision, 'reuse', `the first job's files were counted as if still on disk: ${jobs[0]?.decisionReason}`);
    assert.equal(
      records.some((r) => r.type === 'event' && r.event === 'quarantine'),
      false,
      'a full workspace quarantined the host',
    );
    assert.match(exit.reason, /maxJobs/);
  });

  test(
    'leaving data outside the workspace: recycled with reason disk-low, not quarantined, on the figure after the trash',
    { timeout: 180_000 },
    async (t) => {
      const w = await lowDiskWorld(t, 0);
      // 46 MiB that stays (the cache) and 10 MiB in the workspace: free is under 13% before the trash
      // is emptied and about 26% after (the runner and the state take a little), both under the 30% watermark.
      w.fake.enqueueJob({
        repository: 'octo/app',
        runId: 1,
        steps: [{ name: 'fill', run: `${fillStep(path.join(w.cache, 'left'), 46)} && ${fillStep('"$GITHUB_WORKSPACE/big"', 10)}` }],
      });
      const { exit, records } = await runAgent(w);
      const job = records.find((r): r is JobRecord => r.type === 'job');
      assert.equal(job?.result, 'Succeeded', `the filling job should have run: ${exit.reason}`);
      assert.equal(job.decision, 'recycle');
      const m = /^disk-low: ([\d.]+)% free < 30%/.exec(job.decisionReason ?? '');
      assert.ok(m, `the decision should be a disk-low recycle, got: ${job.decisionReason}`);
      // Before the trash was emptied at most (64 - 46 - 10) / 64 = 12.5% was free: a higher figure was taken after.
      assert.ok(Number(m[1]) > 16, `the disk was measured with the workspace still in the trash (${m[1]}% free)`);
      assert.match(exit.reason, /^recycled \(disk-low/);
      assert.equal(
        records.some((r) => r.type === 'event' && r.event === 'quarantine'),
        false,
        'low disk quarantined the host',
      );
      assert.equal(existsSync(path.join(w.stateDir, 'quarantine.json')), false, 'a quarantine fact was written for low disk');
    },
  );
});
