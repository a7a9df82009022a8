import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, type DecisionInput } from '../../../src/recycle/decision.js';
import { DEFAULT_POLICY } from '../../../src/policy/types.js';
import type { CleanupReport } from '../../../src/cleanup/types.js';

const clean: CleanupReport = {
  steps: [{ name: 'workdir', outcome: 'ok', durationMs: 1, removed: {} }],
  verify: { clean: true, durationMs: 1, problems: [], disk: { freePercent: 50, freeInodesPercent: 50 } },
  clean: true,
  readyMs: 5,
};
const reuse20 = { ...DEFAULT_POLICY, host: { ...DEFAULT_POLICY.host, maxJobs: 20 } };
const base: DecisionInput = {
  policy: reuse20,
  report: clean,
  jobsServed: 1,
  jobsThisRun: 1,
  agentMaxJobs: 0,
  hostStartedAt: 0,
  now: 1000,
  consecutiveFailures: 0,
  draining: false,
};

const cases: [string, Partial<DecisionInput>, string, RegExp?][] = [
  ['a verified host under its job limit is reused', {}, 'reuse'],
  ['a host whose cleanup did not finish is quarantined', { report: undefined }, 'quarantine'],
  [
    'a host that failed verification is quarantined, never reused',
    { report: { ...clean, clean: false, verify: { ...clean.verify, clean: false, problems: ['process 42 alive'] } } },
    'quarantine',
    /process 42 alive/,
  ],
  ['the default policy gives every job a fresh host', { policy: DEFAULT_POLICY }, 'recycle', /max-jobs/],
  ['a host at its job limit is recycled', { jobsServed: 20 }, 'recycle', /max-jobs/],
  [
    'a runner version GitHub refuses recycles a reusable host at once',
    { runnerVersionDeprecated: '2.310.0' },
    'recycle',
    /^runner-version-deprecated: v2\.310\.0/,
  ],
  [
    'a dirty host is quarantined even when its runner is deprecated',
    { report: undefined, runnerVersionDeprecated: '2.310.0' },
    'quarantine',
  ],
  [
    'a disk below the watermark recycles the host',
    { report: { ...clean, verify: { ...clean.verify, disk: { freePercent: 3, freeInodesPercent: 50 } } } },
    'recycle',
    /disk-low/,
  ],
  ['a crash loop recycles the host', { consecutiveFailures: 3 }, 'recycle', /crash-loop/],
  [
    'a failed job recycles the host when the policy says so',
    { jobResult: 'Failed', policy: { ...reuse20, recycle: { ...reuse20.recycle, onJobFailed: true } } },
    'recycle',
    /job-failed/,
  ],
  ['a failed job does not recycle by default', { jobResult: 'Failed' }, 'reuse'],
  [
    'a host past its lifetime is recycled',
    { policy: { ...reuse20, host: { ...reuse20.host, maxLifetimeMinutes: 1 } }, now: 61_000 },
    'recycle',
    /max-lifetime/,
  ],
  ['a draining agent stops after a clean pass', { draining: true }, 'stop'],
  [
    'a job that ran with runner.sudo recycle recycles the host',
    { jobResult: 'Succeeded', policy: { ...reuse20, runner: { ...reuse20.runner, sudo: 'recycle' } } },
    'recycle',
    /^sudo-job/,
  ],
  [
    'runner.sudo recycle without a job (listener ended idle) keeps the host',
    { policy: { ...reuse20, runner: { ...reuse20.runner, sudo: 'recycle' } } },
    'reuse',
  ],
  [
    'runner.sudo allow reuses the host after a job',
    { jobResult: 'Succeeded', policy: { ...reuse20, runner: { ...reuse20.runner, sudo: 'allow' } } },
    'reuse',
  ],
  [
    'a dirty host after a sudo job is quarantined, not just recycled',
    { jobResult: 'Succeeded', report: undefined, policy: { ...reuse20, runner: { ...reuse20.runner, sudo: 'recycle' } } },
    'quarantine',
  ],
  ['the agent stops when its own job count is reached', { agentMaxJobs: 1 }, 'stop'],
];

for (const [name, over, action, reason] of cases) {
  test(name, () => {
    const d = decide({ ...base, ...over });
    assert.equal(d.action, action, `decision reason was: ${d.reason}`);
    if (reason) assert.match(d.reason, reason);
  });
}
