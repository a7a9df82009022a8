/**
 * Soak: jobs through the simulator on one reused host while faults are injected at random, then
 * the invariants are checked; exits 1 when one broke.
 *
 *   node --import tsx bench/soak.ts [--jobs 500] [--seed 1] [--baseline-jobs 8] [--keep DIR] [--budget-minutes N]
 *
 * --budget-minutes N stops queueing jobs after N minutes; the queued ones finish and the report
 * covers the jobs that ran (it says how many of --jobs that was). The last line gives the run's rate
 * in jobs an hour and how long --jobs would take at it.
 * --keep DIR keeps the journal, the fake's jobs and runners and the agents' warnings and state
 * lines there, to look into a broken invariant. On two cores shared with other work a job takes
 * 10 to 15 s (restarts, recycles and 35 s API stalls included): 500 jobs take close to two hours.
 *
 * Faults, each kind from its own seeded PRNG (bench/lib/soak.ts): agent SIGKILLs at random moments
 * and while quarantined (restarted like systemd), generate-jitconfig stalls beyond the request
 * deadline (some completed by the service after the caller gave up), 5xx and 429, the state
 * filesystem (a tmpfs) filled by a helper process and freed, hook reports forged by a second local
 * user, listener crashes, self-updates, server-side deletions, jobs that kill their listener, jobs
 * that tamper with the runner installation (quarantine, then a recycle: the bench replaces the host).
 *
 * Invariants: 0 lost journal records, 0 ghost registrations, 0 dirty hosts reused, 0 quarantines
 * lost, 0 /healthz failures (polled every 200 ms), 0 forged reports accepted. The baseline is the
 * same host serving --baseline-jobs jobs without faults first, in the same run. Needs root.
 */
import { parseArgs } from 'node:util';
import { printSoak, runSoak, wholeNumberArg } from './lib/soak.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '500' },
    seed: { type: 'string', default: '1' },
    'baseline-jobs': { type: 'string', default: '8' },
    keep: { type: 'string' },
    'budget-minutes': { type: 'string' },
  },
});
const jobs = wholeNumberArg('jobs', values.jobs);
const res = await runSoak({
  jobs,
  seed: wholeNumberArg('seed', values.seed),
  baselineJobs: wholeNumberArg('baseline-jobs', values['baseline-jobs']),
  progress: (l) => void process.stderr.write(`${l}\n`),
  ...(values.keep ? { keepDir: values.keep } : {}),
  ...(values['budget-minutes'] ? { budgetMs: wholeNumberArg('budget-minutes', values['budget-minutes']) * 60_000 } : {}),
});
printSoak(res, 'soak');
// The rate of this run (baseline, faults, restarts and the final stop included), and what --jobs would take at it.
const perHour = res.wallS > 0 ? (res.jobsRun / res.wallS) * 3600 : 0;
process.stdout.write(
  `rate: ${perHour.toFixed(0)} jobs/hour (${res.jobsRun} jobs started in ${(res.wallS / 60).toFixed(1)} min)` +
    (perHour > 0 ? `; ${jobs} jobs at this rate: ${((jobs / perHour) * 60).toFixed(0)} min\n` : '\n'),
);
