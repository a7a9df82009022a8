/** The guards' checks run beside the cleanup pipeline's verification, never before its steps are done. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GuardJob, JobGuard } from '../../../src/lib/job-guard.js';
import type { Policy } from '../../../src/policy/types.js';
import { cleanReport, dirtyReport, makeUnitWorld, runUntil } from './fakes.js';

/** A guard whose calls are recorded in the shared `events` list. */
function recordingGuard(events: string[]): JobGuard<Policy> {
  const name = (job: GuardJob | undefined): string => (job ? 'job' : 'none');
  return {
    name: 'rec',
    prepare: () => Promise.resolve({}),
    release: () => {
      events.push('guard release');
      return Promise.resolve({ outcome: 'ok' });
    },
    verify: (job) => {
      events.push(`guard verify ${name(job)}`);
      return Promise.resolve([]);
    },
  };
}

test("the guards' verification starts once the pipeline's steps are done, while the pipeline's own verification still runs", async (t) => {
  const events: string[] = [];
  const w = await makeUnitWorld({
    guards: [recordingGuard(events)],
    maxJobs: 1,
    // Called after beforeVerify (the steps are done): what the guards did by then is recorded.
    cleanup: (n) => {
      events.push(`pipeline verify ${n}`);
      return cleanReport();
    },
  });
  t.after(() => w.dispose());
  const exit = await w.agent().run(new AbortController().signal);
  assert.equal(exit.code, 0, exit.reason);
  const afterJob = events.slice(events.indexOf('guard release'));
  assert.deepEqual(
    afterJob.slice(0, 3),
    ['guard release', 'guard verify job', 'pipeline verify 2'],
    `the guard's check must start with the pipeline's verification, not after it: ${events.join(', ')}`,
  );
});

test("a dirty pipeline still waits for the guards' checks and quarantines the host", async (t) => {
  const events: string[] = [];
  const w = await makeUnitWorld({
    guards: [recordingGuard(events)],
    cleanup: (n) => (n >= 2 ? dirtyReport() : cleanReport()),
  });
  t.after(() => w.dispose());
  const agent = w.agent();
  await runUntil(agent, () => agent.snapshot().quarantined, 'the quarantine');
  assert.ok(events.includes('guard verify job'), events.join(', '));
  const job = w.records.find((r) => r.type === 'job');
  assert.ok(job && job.type === 'job');
  assert.equal(job.decision, 'quarantine');
});
