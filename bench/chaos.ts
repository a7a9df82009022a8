/**
 * Chaos figure: the soak's engine (bench/lib/soak.ts) with only the faults of an ordinary bad day,
 * at a higher rate: 5xx and 429 answers to generate-jitconfig, listener crashes (exit 2),
 * self-updates, registrations deleted on the server while idle, jobs that SIGKILL their own
 * listener, and SIGKILL of the agent at random moments (restarted at once, like systemd would).
 * No API stalls, full disks, forged reports or tampering: bench/soak.ts adds those.
 *
 *   node --import tsx bench/chaos.ts [--jobs 100] [--seed 1] [--baseline-jobs 8]
 *
 * Prints lost journal records, ghost registrations and the other soak invariants, and job end →
 * next listener as a ratio of the same host without faults (--baseline-jobs first, same run).
 * Needs root. About 4 to 8 s per job on two shared cores.
 */
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { printSoak, runSoak, wholeNumberArg, type FaultChances } from './lib/soak.js';

/** Chances per opportunity (per job, per registration, per listener session); a few of each in 100 jobs. */
export const CHAOS_P: FaultChances = {
  api5xx: 0.1,
  api429: 0.06,
  apiStall: 0,
  listenerCrash: 0.06,
  selfUpdate: 0.05,
  serverDelete: 0.06,
  listenerKillJob: 0.08,
  agentKill: 0.1,
  enospc: 0,
  forge: 0,
  taint: 0,
  quarantineKill: 0,
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '100' },
      seed: { type: 'string', default: '1' },
      'baseline-jobs': { type: 'string', default: '8' },
    },
  });
  printSoak(
    await runSoak({
      jobs: wholeNumberArg('jobs', values.jobs),
      seed: wholeNumberArg('seed', values.seed),
      baselineJobs: wholeNumberArg('baseline-jobs', values['baseline-jobs']),
      p: CHAOS_P,
      progress: (l) => void process.stderr.write(`${l}\n`),
    }),
    'chaos',
  );
}

// Runs only as a command: importing this file (a test, run-all's listing) must not start a run.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
