/** Parsing the runner's `_diag` trace into the job it shows; reading it without following links. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseRunnerTrace, parseWorkerTrace, readDiagJobs } from '../../../src/runner/diag-evidence.js';

// As the real listener writes it: the request line comes before the console's `Running job`.
const RUNNER = [
  '[2026-12-07 10:00:00Z INFO Runner.Listener] Version: 2.330.0',
  '[2026-12-07 10:00:05Z INFO JobDispatcher] Job request 7 for plan p-1 job 0b4a-11 received.',
  '[2026-12-07 10:00:05Z INFO Terminal] WRITE LINE: 2026-12-07 10:00:05Z: Running job: build (ubuntu)',
  '[2026-12-07 10:00:42Z INFO Terminal] WRITE LINE: 2026-12-07 10:00:42Z: Job build (ubuntu) completed with result: Failed',
  '',
].join('\r\n');

// The worker's job message: one trace event whose JSON follows on bare lines (.NET's multi-line message).
const MESSAGE = {
  messageType: 'PipelineAgentJobRequest',
  jobId: '0b4a-11',
  jobDisplayName: 'build (ubuntu)',
  requestId: 7,
  contextData: {
    github: {
      t: 2,
      d: [
        { k: 'repository', v: 'octo/app' },
        { k: 'run_id', v: '991' },
        { k: 'token', v: '***' },
        { k: 'event', v: { t: 2, d: [] } },
      ],
    },
  },
};
const WORKER = [
  '[2026-12-07 10:00:06Z INFO Worker] Message received.',
  '[2026-12-07 10:00:06Z INFO Worker] Job message:',
  ` ${JSON.stringify(MESSAGE, null, 2)}`,
  '[2026-12-07 10:00:06Z INFO JobRunner] Job ID 0b4a-11',
  '[2026-12-07 10:00:41Z INFO JobRunner] Job result after all job steps finish: Failed',
].join('\n');

test('the listener trace gives the job, its times and its result', () => {
  const [job, ...more] = parseRunnerTrace(RUNNER, 'Runner_20261207-100000-utc.log');
  assert.equal(more.length, 0);
  assert.equal(job?.jobId, '0b4a-11');
  assert.equal(job?.displayName, 'build (ubuntu)');
  assert.equal(job?.startedAt, Date.parse('2026-12-07T10:00:05Z'));
  assert.equal(job?.endedAt, Date.parse('2026-12-07T10:00:42Z'));
  assert.equal(job?.result, 'Failed');
});

test('a request logged after `Running job` (the simulator) names that job, not the next', () => {
  const text = [
    '[2026-12-07 10:00:05Z INFO Terminal] WRITE LINE: 2026-12-07 10:00:05Z: Running job: one',
    '[2026-12-07 10:00:05Z INFO JobDispatcher] Job request 1 for plan p job j-1 received.',
    '[2026-12-07 10:00:09Z INFO Terminal] WRITE LINE: 2026-12-07 10:00:09Z: Job one completed with result: Succeeded',
    '[2026-12-07 10:01:00Z INFO Terminal] WRITE LINE: 2026-12-07 10:01:00Z: Running job: two',
  ].join('\n');
  const jobs = parseRunnerTrace(text, 'Runner_x.log');
  assert.deepEqual(
    jobs.map((j) => [j.jobId, j.displayName, j.result]),
    [
      ['j-1', 'one', 'Succeeded'],
      [undefined, 'two', undefined],
    ],
  );
});

test("the worker's job message gives the metadata under the hook variables' names, strings only", () => {
  const job = parseWorkerTrace(WORKER, 'Worker_20261207-100006-utc.log');
  assert.equal(job?.jobId, '0b4a-11');
  assert.equal(job?.result, 'Failed');
  assert.deepEqual(job?.vars, { GITHUB_REPOSITORY: 'octo/app', GITHUB_RUN_ID: '991' });
});

test('a trace without a job, or with lines that only look like one, gives none', () => {
  assert.deepEqual(parseRunnerTrace('[2026-12-07 10:00:00Z INFO Runner] Listening for Jobs\nRunning job: fake\n', 'r'), []);
  assert.equal(parseWorkerTrace('[2026-12-07 10:00:06Z INFO Worker] Job message:\n {not json\n', 'w'), undefined);
  const long = parseRunnerTrace(`[2026-12-07 10:00:05Z INFO Terminal] WRITE LINE: x y: Running job: ${'n'.repeat(5000)}`, 'r');
  assert.equal(long[0]?.displayName?.length, 256);
});

test('links are never followed: a linked _diag, or a linked trace file, shows nothing', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'rw-diag-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const elsewhere = path.join(root, 'elsewhere');
  await mkdir(elsewhere);
  await writeFile(path.join(elsewhere, 'secret.log'), WORKER);
  await writeFile(path.join(elsewhere, 'Runner_20261207-100000-utc.log'), RUNNER);
  // _diag itself a link to another directory
  const linked = path.join(root, 'linked');
  await mkdir(linked);
  await symlink(elsewhere, path.join(linked, '_diag'));
  assert.deepEqual(await readDiagJobs(linked), []);
  // a real _diag whose worker trace is a link: the listener's job stays, without the linked file's metadata
  const real = path.join(root, 'real');
  await mkdir(path.join(real, '_diag'), { recursive: true });
  await writeFile(path.join(real, '_diag', 'Runner_20261207-100000-utc.log'), RUNNER);
  await symlink(path.join(elsewhere, 'secret.log'), path.join(real, '_diag', 'Worker_20261207-100006-utc.log'));
  const jobs = await readDiagJobs(real);
  assert.equal(jobs.length, 1);
  assert.deepEqual(jobs[0]?.vars, {});
  assert.deepEqual(jobs[0]?.files, ['Runner_20261207-100000-utc.log']);
  // the same worker trace as a regular file joins the listener's job
  await rm(path.join(real, '_diag', 'Worker_20261207-100006-utc.log'));
  await writeFile(path.join(real, '_diag', 'Worker_20261207-100006-utc.log'), WORKER);
  const [joined] = await readDiagJobs(real);
  assert.equal(joined?.vars.GITHUB_REPOSITORY, 'octo/app');
  assert.equal(joined?.files.length, 2);
});
