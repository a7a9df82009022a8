/**
 * The soak's record accounting: a job whose only record is of an unknown job (recovery knew only
 * that its registration was used up) is credited, not lost, and shown apart; a job with no record
 * at all is still lost; an unknown-job record beside the job's own record is a duplicate; one for
 * a runner that ran no job is reported as such, never credited to another job.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkInvariants, isUnknownJob, type CheckInput } from '../../../bench/lib/soak-check.js';
import type { JobRecord, JournalRecord } from '../../../src/agent/journal.js';
import type { JobRecord as FakeJob } from '../../../src/sim/github/types.js';
import type { HealthPoller } from '../../../bench/lib/soak-faults.js';

let seq = 0;

/** A journal job record of runner `runnerId`; `unknown`: recovery's record of an unnamed job. */
function rec(runnerId: number, unknown = false): JobRecord {
  return {
    v: 1,
    seq: ++seq,
    type: 'job',
    runnerName: `host-${runnerId}`,
    runnerId,
    job: unknown ? {} : { repository: 'octo/app', runId: String(runnerId) },
    endedAt: '2026-12-07T10:00:00.000Z',
    listenerExitCode: 0,
    listenerSignal: null,
    result: unknown ? 'unknown' : 'Succeeded',
    source: unknown ? 'after-the-fact' : 'console',
    ...(unknown ? { evidence: ['hook report: none'] } : {}),
    cleanup: { steps: [], verify: { clean: true, durationMs: 0, problems: [] }, clean: true, readyMs: 0 },
    decision: 'reuse',
    decisionReason: 'ok',
  };
}

/** A job the fake ran (started) on runner `runnerId`, or only assigned to it. */
function fakeJob(runnerId: number, started = true): FakeJob {
  return {
    id: `job-${runnerId}`,
    job: { runId: runnerId } as unknown as FakeJob['job'],
    status: 'completed',
    result: started ? 'Succeeded' : 'Abandoned',
    exitCode: 0,
    runnerId,
    runnerName: `host-${runnerId}`,
    cancelled: false,
    queuedAt: 0,
    assignedAt: 1,
    startedAt: started ? 2 : null,
    completedAt: 3,
  };
}

function input(records: JournalRecord[], fakeJobs: FakeJob[]): CheckInput {
  return {
    records,
    torn: [],
    fakeJobs,
    ghosts: [],
    found: new Map(),
    generations: [],
    quarantinedSpans: [],
    health: { failures: [], polls: 1, answers: {} } as unknown as HealthPoller,
    forges: [],
    statusLeaks: [],
    forgedRepo: 'evil/spoofed',
  };
}

test('an unknown-job record is recognised by its source and empty metadata only', () => {
  assert.equal(isUnknownJob(rec(1, true)), true);
  assert.equal(isUnknownJob(rec(1)), false);
  assert.equal(isUnknownJob({ ...rec(1), source: 'after-the-fact' }), false, 'a trace record names its job');
});

test("a job whose only record is an unknown job's is credited, not lost, and shown apart", () => {
  const inv = checkInvariants(input([rec(1), rec(2, true)], [fakeJob(1), fakeJob(2)]));
  assert.equal(inv.lost, 0);
  assert.equal(inv.unnamed, 1);
  assert.equal(inv.unknownWithoutJob, 0);
  assert.deepEqual(inv.broken, []);
  assert.ok(inv.lines.some((l) => l.includes('UNNAMED: run 2')));
});

test('a job with no record at all is still lost', () => {
  const inv = checkInvariants(input([rec(1)], [fakeJob(1), fakeJob(2)]));
  assert.equal(inv.lost, 1);
  assert.ok(inv.broken.includes('1 lost journal records'));
});

test("an unknown-job record beside the job's own record is a duplicate", () => {
  const inv = checkInvariants(input([rec(1), rec(1, true)], [fakeJob(1)]));
  assert.equal(inv.lost, 1);
  assert.ok(inv.lines.some((l) => l.startsWith('  DUPLICATE: run 1')));
});

test('an unknown-job record for a runner that ran no job credits no job and is reported', () => {
  // Runner 3's job was assigned and abandoned, never started: it ran nothing.
  const inv = checkInvariants(input([rec(1), rec(3, true)], [fakeJob(1), fakeJob(2), fakeJob(3, false)]));
  assert.equal(inv.lost, 1, 'job 2 has no record; the unknown one of runner 3 does not stand in for it');
  assert.equal(inv.unknownWithoutJob, 1);
  assert.ok(inv.lines.some((l) => l.includes('UNKNOWN WITHOUT A JOB') && l.includes('#3')));
});
