/**
 * Zero drift over many jobs, and one root-level plant in the middle caught: jobs through the
 * simulator on one reused host, the real agent with the whole-host integrity check on and
 * `runner.sudo: allow`, the check reading a copy of the stock Debian root (bench/lib/stock-root.ts)
 * where the jobs write through sudo.
 *
 *   node --import tsx bench/integrity-soak.ts [--jobs 100] [--plant-at 50]
 *
 * The benign jobs build in their workspace, write a root-owned log into the copy's /tmp through
 * sudo and leave; every one must verify with zero drift and be reused. Job --plant-at writes
 * /etc/cron.d/soak-planted through sudo: its record must name the file and the host must be
 * quarantined. The bench then does what an operator does (undoes the plant, `runner-warden
 * unquarantine`) and runs the remaining jobs on the same host. Printed: jobs, drift findings of the
 * benign jobs (must be 0), the plant caught or not, the integrity check's time (median, p95) from
 * the agent's log. Exits 1 when an invariant broke.
 *
 * The surfaces are the file surfaces, accounts and the package set: the kernel, network and process
 * surfaces are this machine's, which other work shares (a test's user, mount or daemon there is
 * not the job's); they are measured by bench/integrity.ts and tested in test/e2e/integrity.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { createLogger } from '../src/lib/log.js';
import { loadHostConfig } from '../src/policy/load.js';
import { wire } from '../src/cli/wire.js';
import { systemClock } from '../src/lib/clock.js';
import { unquarantineCli } from '../src/cli/unquarantine.js';
import { integrityPaths } from '../src/integrity/baseline-store.js';
import { takeSystemBaseline } from '../src/integrity/system-baseline.js';
import { agentExclusions, exceptionPatterns } from '../src/integrity/surfaces.js';
import type { JobRecord, JournalRecord } from '../src/agent/journal.js';
import { benchPolicy, createWorld, type World } from './lib/world.js';
import { stockRoot } from './lib/stock-root.js';

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '100' }, 'plant-at': { type: 'string', default: '50' } } });
const JOBS = Number(values.jobs);
const PLANT_AT = Number(values['plant-at']);
/** One phase of jobs: ~3-15 s a job on two shared cores; a stuck agent must not hold the bench forever. */
const PHASE_LIMIT_MS = 60 * 60_000;
const SURFACES = ['etc', 'usr-local', 'opt-srv', 'root-home', 'authorized-keys', 'cron', 'systemd', 'setuid', 'accounts', 'package-state'];

/** Runs the agent until the journal holds `records` jobs, or it is quarantined; returns the check times it logged (ms). */
async function runAgent(w: World, host: string, records: number): Promise<number[]> {
  const times: number[] = [];
  // The guard's verification time, from the agent's own log lines (a JSON line per record).
  const log = createLogger({
    level: 'info',
    destination: {
      write(line: string): void {
        const r = JSON.parse(line) as { guard?: string; durationMs?: number; msg?: string };
        if (r.guard === 'integrity' && r.msg === 'integrity checked' && typeof r.durationMs === 'number') times.push(r.durationMs);
      },
    },
  });
  const rt = await wire(await loadHostConfig(w.configFile, {}), {
    configFile: w.configFile,
    env: {},
    log,
    clock: systemClock,
    hostname: 'soakhost',
    integrityRoot: host,
  });
  // The image step on the copy, before the first job: what `runner-warden baseline --system` records.
  if (!existsSync(integrityPaths(w.stateDir).baseline)) {
    const policy = rt.policies.current();
    await takeSystemBaseline({
      root: host,
      stateDir: w.stateDir,
      surfaces: policy.host.integrity.surfaces,
      exceptions: exceptionPatterns(policy.host.integrity),
      excluded: agentExclusions(rt.slot),
      user: rt.slot.user,
      skipPids: [process.pid],
    });
  }
  const stop = new AbortController();
  const watch = setInterval(() => {
    if (rt.agent.snapshot().quarantined) stop.abort();
    else
      void journal(w).then((j) => {
        if (j.length >= records) stop.abort();
      });
  }, 500);
  try {
    await rt.agent.run(AbortSignal.any([AbortSignal.timeout(PHASE_LIMIT_MS), stop.signal]));
  } finally {
    clearInterval(watch);
    await rt.close();
  }
  return times;
}

async function journal(w: World): Promise<JobRecord[]> {
  const text = await readFile(path.join(w.stateDir, 'journal.jsonl'), 'utf8').catch(() => '');
  const out: JobRecord[] = [];
  for (const l of text.split('\n')) {
    try {
      const r = JSON.parse(l) as JournalRecord;
      if (r.type === 'job') out.push(r);
    } catch {
      // A blank line, or a record still being written.
    }
  }
  return out;
}

function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

const stock = await stockRoot({ log: (l) => console.log(l) });
const w = await createWorld();
let failed = false;
try {
  const host = path.join(w.root, 'host');
  execFileSync('cp', ['-a', stock.root, host]);
  const benign = [
    'set -e',
    'mkdir -p build && echo "int main(){return 0;}" > build/a.c && cp build/a.c build/a.o',
    `sudo -n sh -c 'echo built > ${host}/tmp/sudo-build-$$.log'`,
  ].join('\n');
  const plant = `sudo -n sh -c 'echo "* * * * * root true" > ${host}/etc/cron.d/soak-planted'`;
  // The runner user's home baseline first, under the world's own policy (integrity off): with it on,
  // that runtime would record the system baseline of this machine's root instead of the copy's.
  await w.baseline();
  await writeFile(
    path.join(w.policyDir, 'test.yaml'),
    stringify({
      ...benchPolicy(w.root, { host: { maxJobs: JOBS + 10, integrity: { enabled: true, surfaces: SURFACES } } }),
      runner: { sudo: 'allow' },
    }),
  );
  for (let i = 1; i <= JOBS; i++) {
    const hostile = i === PLANT_AT;
    w.fake.enqueueJob({
      repository: 'octo/app',
      runId: i,
      job: hostile ? 'plant' : `benign-${i}`,
      steps: [{ name: hostile ? 'plant through sudo' : 'build', run: hostile ? plant : benign }],
    });
  }
  const t0 = performance.now();
  const times = await runAgent(w, host, JOBS);
  const first = await journal(w);
  const planted = first.find((j) => j.job.job === 'plant');
  const caught = (planted?.guardFindings ?? []).some((f) => /^etc: \/etc\/cron\.d\/soak-planted added/.test(f.problem));
  console.log(`plant (job ${PLANT_AT}): ${caught ? 'caught' : 'NOT CAUGHT'}, decision ${planted?.decision ?? 'none'}`);
  if (!caught || planted?.decision !== 'quarantine') failed = true;
  // The operator: undo the plant, release the quarantine, start the agent again.
  await rm(path.join(host, 'etc/cron.d/soak-planted'), { force: true });
  const io = { stdout: { write: () => true }, stderr: { write: (s: string) => process.stderr.write(s) } };
  if ((await unquarantineCli(['--reason', 'soak: plant undone', '--config', w.configFile], io, {})) !== 0) failed = true;
  if (first.length < JOBS) times.push(...(await runAgent(w, host, JOBS)));
  const wallS = (performance.now() - t0) / 1000;
  const jobs = await journal(w);
  const benignJobs = jobs.filter((j) => j.job.job?.startsWith('benign-'));
  const drift = benignJobs.flatMap((j) => (j.guardFindings ?? []).map((f) => `${j.job.job}: ${f.guard}: ${f.problem}`));
  const notReused = benignJobs.filter((j) => j.decision !== 'reuse' || j.result !== 'Succeeded');
  console.log(`\nINTEGRITY SOAK, ${JOBS} jobs queued, plant at ${PLANT_AT}, runner.sudo allow, ${wallS.toFixed(0)} s`);
  console.log(`  jobs recorded: ${jobs.length} (benign ${benignJobs.length} of ${JOBS - 1})`);
  console.log(`  drift findings of benign jobs: ${drift.length} (must be 0)${drift.length ? `: ${drift.slice(0, 5).join('; ')}` : ''}`);
  console.log(
    `  benign jobs not succeeded or not reused: ${notReused.length}${notReused.length ? `: ${notReused.map((j) => `${j.job.job} ${j.result} ${j.decision} ${j.decisionReason}`).join('; ')}` : ''}`,
  );
  console.log(`  plant caught: ${caught ? 'yes' : 'NO'}`);
  console.log(
    `  integrity check (the guard's verify, from the agent's log): median ${pct(times, 0.5).toFixed(0)} ms, p95 ${pct(times, 0.95).toFixed(0)} ms over ${times.length} checks`,
  );
  if (drift.length > 0 || notReused.length > 0 || benignJobs.length !== JOBS - 1) failed = true;
} finally {
  await w.dispose();
}
process.exit(failed ? 1 : 0);
