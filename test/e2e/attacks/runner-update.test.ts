/**
 * A job against the runner's own self-update. The real updater (actions/runner
 * `SelfUpdaterV2.cs` SelfUpdate) downloads and copies the new version into `bin.<v>` and
 * `externals.<v>`, and replaces the root's scripts, *before* it waits for the running job to end:
 * for the rest of the job those files are the runner user's, as the job is. A job that rewrites them
 * then must not have its code taken as the new installation and run by the next job's listener.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { createWorld, jobRecords, runUntilState, SIM_ENV } from '../../helpers/world.js';

/** update.sh's poll for the listener's exit, shortened (the real one sleeps 2 s). */
const UPDATE_ENV = { ...SIM_ENV, RUNNER_SIM_UPDATE_POLL_SECONDS: '0.5' };

/** How long the whole run may take: a hang bound (two short jobs and an update take ~20 s here). */
const RUN_LIMIT_MS = 60_000;

test('a job that rewrites the self-update staged during it (bin.<new>) does not get its code run by the next listener: the host is not reused', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 2, env: UPDATE_ENV } });
  t.after(() => w.dispose());
  const staged = `${w.runnerRoot}/bin.2.337.0`;
  const marker = `${w.dropDir}/payload-ran`;
  w.onFirst('job-started', (j: { runnerId: number }) => w.fake.requestUpdate(j.runnerId, '2.337.0'));
  // Waits for the staged version, lets the copy finish, then plants a line in its listener.
  const tamper = [
    `for i in $(seq 300); do [ -f '${staged}/Runner.Listener' ] && break; sleep 0.1; done`,
    'sleep 2',
    `sed -i "2i touch '${marker}'" '${staged}/Runner.Listener'`,
    `grep -q payload-ran '${staged}/Runner.Listener'`,
  ].join('\n');
  w.fake.enqueueJob({ repository: 'octo/app', workflow: 'evil', steps: [{ name: 'tamper', run: tamper }] });
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'next', run: 'true' }] });

  await runUntilState(await w.runtime(), ['quarantined'], RUN_LIMIT_MS);
  const records = await w.journal();
  const jobs = jobRecords(records);
  t.diagnostic(
    JSON.stringify(jobs.map((j) => ({ repo: j.job.repository, code: j.listenerExitCode, decision: j.decision, notes: j.notes }))),
  );
  assert.equal(jobs[0]?.result, 'Succeeded', 'the tampering job ran (the payload was planted)');
  assert.equal(jobs[0]?.listenerExitCode, 4, 'the update followed the job');
  const ran = (await readdir(w.dropDir)).includes('payload-ran');
  assert.equal(ran, false, "the job's code in the staged update ran as the next listener");
  assert.notEqual(jobs[0]?.decision, 'reuse', 'a host whose new runner the job could rewrite was reused');
  assert.equal(jobs.length, 1, `no second job on this host: ${JSON.stringify(jobs.map((j) => j.job.repository))}`);
});

test("a job that leaves a file under the name of the agent's quarantine copy in the runner root (a name the installation check skips) does not get it to the next job: the host is not reused", async (t) => {
  const w = await createWorld({ runner: { maxJobs: 2 } });
  t.after(() => w.dispose());
  w.fake.enqueueJob({
    repository: 'octo/app',
    steps: [{ name: 'note', run: `echo for-the-next-job > '${w.runnerRoot}/.runner-warden.quarantined'` }],
  });
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'next', run: 'true' }] });
  const { jobs } = await w.drainWhen('quarantined');
  assert.equal(jobs.length, 1, 'a second job ran on the host');
  assert.equal(jobs[0]?.decision, 'quarantine', jobs[0]?.decisionReason);
  assert.match(jobs[0]?.decisionReason ?? '', /quarantine copy/);
});
