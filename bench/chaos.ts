/**
 * Chaos figure: simulated jobs on one reused host while faults are injected at random,
 * then count what leaked:
 *
 *   node --import tsx bench/chaos.ts [--jobs 100] [--seed 1] [--baseline-jobs 8]
 *
 * - lost journal records: jobs the fake saw run (renewed at least once) without exactly one job
 *   record in the journal (an `interrupted` record counts); plus torn journal lines;
 * - ghost registrations: runners left in the fake's list after the last agent drained and stopped.
 *
 * Faults, drawn from seeded PRNGs: 5xx and 429 (retry-after) answers to generate-jitconfig, listener
 * crashes (exit 2), self-updates, registrations deleted on the server while idle, jobs that SIGKILL
 * their own listener, and SIGKILL of the agent at random moments (it is restarted at once, like
 * systemd would). The agent is a real `runner-warden run` process. A seed fixes the draws, not the
 * timing of real processes, so two runs with one seed are alike rather than identical. When the
 * agent recycles the host, the bench replaces it (fresh runner install and agent state) and goes on.
 *
 * The baseline is the same host serving `--baseline-jobs` jobs without faults first, in the same run:
 * job end → next listener started (the journal's `listener-started` events) is printed as a ratio
 * of it. Needs root (it makes a throwaway runner user, like the tests). About 3 to 4 s per job on
 * two shared cores, so the default 100 jobs take 5 to 7 minutes.
 */
import { parseArgs } from 'node:util';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { benchPolicy, createWorld, replaceHost, type World } from './lib/world.js';
import { readPersistedState, startAgentProcess, type AgentProcess, type ProcessExit } from './lib/agent-process.js';
import { median, pick, prng, sleep } from './lib/prng.js';
import { Journal, type EventRecord, type JobRecord } from '../src/agent/journal.js';
import type { JobRecord as FakeJob, JobSpec } from '../src/sim/github/types.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '100' },
    seed: { type: 'string', default: '1' },
    'baseline-jobs': { type: 'string', default: '8' },
  },
});
const JOBS = Number(values.jobs);
const SEED = Number(values.seed);
const BASELINE_JOBS = Number(values['baseline-jobs']);

/** Chances per opportunity (per job, per registration, per listener session); a few of each in 100 jobs. */
const P = {
  /** Per registration: the next generate-jitconfig answers 500/502/503 once. */
  api5xx: 0.1,
  /** Per registration: the next generate-jitconfig answers 429 with retry-after: 1 once. */
  api429: 0.06,
  /** Per listener session: its next message makes it crash (exit 2). */
  listenerCrash: 0.06,
  /** Per listener session: its next message is a self-update (exit 3/4, update.finished). */
  selfUpdate: 0.05,
  /** Per job: the next listener's registration is deleted on the server while it is idle. */
  serverDelete: 0.06,
  /** Per job: the job SIGKILLs its own listener. */
  listenerKillJob: 0.08,
  /** Per job: the agent is SIGKILLed within AGENT_KILL_WINDOW_MS of the job's enqueue. */
  agentKill: 0.1,
};

/** A random moment within this much of a job's enqueue covers idle, job-running, cleaning and registering. */
const AGENT_KILL_WINDOW_MS = 5_000;
/** systemd's Restart= waits 100 ms by default; a little more keeps the fake's logs apart. */
const RESTART_DELAY_MS = 200;
/** How long a server-side deletion waits after the session opened, so the listener is polling. */
const DELETE_AFTER_MS = 300;
/** Jobs are queued one at a time, at a random gap up to this after the previous one was taken. */
const ENQUEUE_GAP_MS = 800;
/** No job completed for this long means something is stuck: print what is known and stop. */
const STALL_MS = 120_000;
/** The fake abandons a job whose lock is not renewed for this long (and frees its runner). */
const JOB_LOCK_MS = 3_000;
/** The drained last agent gets this long to stop. */
const FINAL_STOP_MS = 60_000;

/**
 * One stream per kind of opportunity, so that the faults drawn for the jobs do not shift when a
 * registration or a listener session happens earlier or later in a run (their timing is real).
 */
const jobRand = prng(SEED);
const registrationRand = prng(SEED * 7919 + 1);
const sessionRand = prng(SEED * 104_729 + 2);

const injected = {
  'api-5xx': 0,
  'api-429': 0,
  'listener-crash': 0,
  'self-update': 0,
  'server-delete': 0,
  'listener-kill-job': 0,
  'agent-kill': 0,
};
const killedIn: Record<string, number> = {};
const exits: string[] = [];
/** Why each host was replaced (the agent exited after a recycle). */
const replacements: string[] = [];

/** Restarts the agent whenever it exits or is killed, until stopped. */
class Supervisor {
  current?: AgentProcess;
  starts = 0;
  private running = true;
  private killing = false;
  private loopDone?: Promise<void>;
  constructor(private readonly w: World) {}

  start(): void {
    this.loopDone = this.loop();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const a = startAgentProcess(this.w.configFile, { logLevel: 'info' });
      this.current = a;
      this.starts += 1;
      const e: ProcessExit = await a.exited;
      this.current = undefined;
      if (!this.killing) {
        const stop = [...a.lines].reverse().find((l) => l.msg === 'agent stopped');
        const reason = typeof stop?.reason === 'string' ? stop.reason : a.tail(300).trim();
        exits.push(`code ${e.code ?? e.signal}: ${reason.slice(0, 300)}`);
        if (this.running && reason.startsWith('recycled')) {
          replacements.push(reason.slice(0, 300));
          await replaceHost(this.w);
        }
      }
      this.killing = false;
      if (this.running) await sleep(RESTART_DELAY_MS);
    }
  }

  /** SIGKILLs the agent if one runs; returns the state it died in. */
  async kill(): Promise<string | undefined> {
    const a = this.current;
    if (!a || !this.running) return undefined;
    this.killing = true;
    await a.kill('SIGKILL');
    return (await readPersistedState(this.w.stateDir))?.state ?? 'unknown';
  }

  /** Drains the agent (SIGTERM) and stops restarting it. */
  async stop(): Promise<ProcessExit | undefined> {
    this.running = false;
    // A restart may be under way: wait for its process before signalling it.
    for (let i = 0; i < 50 && !this.current; i++) await sleep(20);
    const a = this.current;
    let e: ProcessExit | undefined;
    if (a) {
      // SIGTERM before the agent installed its handlers would kill it outright instead of draining it.
      await a.waitForLog((l) => l.msg === 'state', 'the agent to start', 30_000).catch(() => undefined);
      a.child.kill('SIGTERM');
      e = await a.waitForExit(FINAL_STOP_MS).catch(() => undefined);
    }
    await this.loopDone;
    return e;
  }
}

function jobSpec(i: number, killer: boolean): JobSpec {
  if (killer) {
    return {
      repository: 'octo/app',
      runId: i,
      job: `chaos-${i}`,
      steps: [
        {
          name: 'kill the listener',
          run: 'echo secret > leftover.txt; (sleep 300 &); kill -9 $(pgrep -u $(id -u) -f "Runner.Listener|listener.(ts|mjs)" | head -n 5); sleep 30',
        },
      ],
    };
  }
  const secs = (0.1 + jobRand() * 0.3).toFixed(2);
  return {
    repository: 'octo/app',
    runId: i,
    job: `chaos-${i}`,
    steps: [
      {
        name: 'build',
        run: `mkdir -p out ~/.docker && for n in $(seq 1 50); do echo $n > out/f$n; done; echo '{"auths":{}}' > ~/.docker/config.json; (exec -a chaos-leftover-${i} sleep 300 &); sleep ${secs}`,
      },
    ],
  };
}

async function main(): Promise<void> {
  const total = BASELINE_JOBS + JOBS;
  const w = await createWorld({
    fake: { jobLockMs: JOB_LOCK_MS },
    runner: { maxJobs: 0 },
    // A recycle (a quarantine, a crash loop) ends the process; the supervisor then replaces the host
    // (replaceHost) and starts the agent on it.
    config: { recycle: { provider: 'exit', exitCode: 0 } },
  });
  const started = Date.now();
  let chaosFrom = Number.POSITIVE_INFINITY;
  let chaos = false;
  const sup = new Supervisor(w);
  try {
    await writeFile(path.join(w.policyDir, 'test.yaml'), stringify(benchPolicy(w.root, { host: { maxJobs: 10_000 } })));
    // The image step: a baseline of the runner user's home.
    await w.baseline();

    const match = { method: 'POST', path: /generate-jitconfig/ };
    let updateSeq = 400;
    let deleteNextIdle = false;
    w.fake.events.on('runner-created', () => {
      if (!chaos) return;
      const roll = registrationRand();
      if (roll < P.api5xx) {
        w.fake.faults.add({ match, times: 1, status: pick(registrationRand, [500, 502, 503]) });
        injected['api-5xx'] += 1;
      } else if (roll < P.api5xx + P.api429) {
        w.fake.faults.secondaryRateLimit({ match, times: 1, status: 429, retryAfter: 1 });
        injected['api-429'] += 1;
      }
    });
    w.fake.events.on('session-created', (s: { runnerId: number }) => {
      if (!chaos) return;
      if (deleteNextIdle) {
        setTimeout(() => {
          const r = w.fake.runners().find((x) => x.id === s.runnerId);
          // Only an idle runner: deleting a busy one is a different fault (a lost job).
          if (r && !r.busy && deleteNextIdle && w.fake.deleteRunnerServerSide(s.runnerId)) {
            deleteNextIdle = false;
            injected['server-delete'] += 1;
          }
        }, DELETE_AFTER_MS);
        return;
      }
      const roll = sessionRand();
      if (roll < P.listenerCrash) {
        w.fake.crashNext(s.runnerId);
        injected['listener-crash'] += 1;
      } else if (roll < P.listenerCrash + P.selfUpdate) {
        w.fake.requestUpdate(s.runnerId, `2.${updateSeq++}.0`);
        injected['self-update'] += 1;
      }
    });

    sup.start();
    const timers = new Set<NodeJS.Timeout>();
    let enqueued = 0;
    let lastProgress = Date.now();
    let lastDone = 0;
    const done = (): number => w.fake.jobs().filter((j) => j.status === 'completed').length;
    while (enqueued < total || done() < total) {
      const jobs = w.fake.jobs();
      const d = jobs.filter((j) => j.status === 'completed').length;
      if (d !== lastDone) {
        lastDone = d;
        lastProgress = Date.now();
        if (d % 10 === 0) process.stderr.write(`  ${d}/${total} jobs done, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
      }
      if (Date.now() - lastProgress > STALL_MS) {
        process.stderr.write(`stalled: no job completed for ${STALL_MS / 1000} s\n${sup.current?.tail(3000) ?? '(no agent running)'}\n`);
        break;
      }
      // One job waits in the queue at a time; hold it while a server-side deletion waits for an idle listener.
      if (enqueued < total && !jobs.some((j) => j.status === 'queued') && !deleteNextIdle) {
        await sleep(jobRand() * ENQUEUE_GAP_MS);
        enqueued += 1;
        chaos = enqueued > BASELINE_JOBS;
        if (enqueued === BASELINE_JOBS + 1) chaosFrom = Date.now();
        const killer = chaos && jobRand() < P.listenerKillJob;
        if (killer) injected['listener-kill-job'] += 1;
        w.fake.enqueueJob(jobSpec(enqueued, killer));
        if (chaos && jobRand() < P.agentKill) {
          const t = setTimeout(() => {
            timers.delete(t);
            void sup.kill().then((state) => {
              if (state === undefined) return;
              injected['agent-kill'] += 1;
              killedIn[state] = (killedIn[state] ?? 0) + 1;
            });
          }, jobRand() * AGENT_KILL_WINDOW_MS);
          timers.add(t);
        }
        if (chaos && jobRand() < P.serverDelete) deleteNextIdle = true;
        continue;
      }
      await sleep(100);
    }
    for (const t of timers) clearTimeout(t);
    chaos = false;
    deleteNextIdle = false;
    const last = await sup.stop();
    // The fake frees the runner of an abandoned job after its lock; then count what is left.
    const drainEnd = Date.now() + JOB_LOCK_MS + 5_000;
    while (w.fake.runners().length > 0 && Date.now() < drainEnd) await sleep(100);
    const wallS = (Date.now() - started) / 1000;

    await report(w, { wallS, chaosFrom, sup, last, total });
  } finally {
    await sup.stop().catch(() => undefined);
    await w.dispose();
  }
}

async function report(
  w: World,
  o: { wallS: number; chaosFrom: number; sup: Supervisor; last: ProcessExit | undefined; total: number },
): Promise<void> {
  const read = await new Journal({ dir: w.stateDir }).readAll();
  const records = read.records;
  const jobRecs = records.filter((r): r is JobRecord => r.type === 'job');
  const fakeJobs = w.fake.jobs();
  const ran = fakeJobs.filter((j) => j.startedAt !== null);
  const assignedOnly = fakeJobs.filter((j) => j.assignedAt !== null && j.startedAt === null);

  // Attribute records to jobs: by runner id, else by the run id from the hook; what is left
  // (a record naming neither) is matched to the nearest unclaimed job by start time and reported.
  const claims = new Map<string, JobRecord[]>();
  const unattributed: JobRecord[] = [];
  for (const r of jobRecs) {
    const fj =
      r.runnerId !== undefined
        ? fakeJobs.find((j) => j.runnerId === r.runnerId)
        : r.job.runId !== undefined
          ? fakeJobs.find((j) => j.job.runId === r.job.runId)
          : undefined;
    if (fj) claims.set(fj.id, [...(claims.get(fj.id) ?? []), r]);
    else unattributed.push(r);
  }
  const byTime: string[] = [];
  for (const r of unattributed) {
    const at = r.startedAt ? Date.parse(r.startedAt) : Number.NaN;
    const cands = ran
      .filter((j) => !claims.has(j.id) && j.startedAt !== null && Math.abs(j.startedAt - at) < 5_000)
      .sort((a, b) => Math.abs((a.startedAt as number) - at) - Math.abs((b.startedAt as number) - at));
    const fj = cands[0];
    if (fj) {
      claims.set(fj.id, [r]);
      byTime.push(`run ${fj.job.runId} <- record seq ${r.seq} (runnerName ${r.runnerName}, ${r.result}, ${r.notes?.join('; ') ?? ''})`);
    }
  }
  const lost = ran.filter((j) => (claims.get(j.id) ?? []).length === 0);
  const dup = ran.filter((j) => (claims.get(j.id) ?? []).length > 1);
  const extra = [...claims.entries()].filter(([id]) => !ran.some((j) => j.id === id));
  const ghosts = w.fake.runners();

  // Job end → next listener, per phase (the agent writes it at each listener start after an end).
  const starts = records.filter((r): r is EventRecord => r.type === 'event' && r.event === 'listener-started');
  const ms = (rs: EventRecord[]): number[] => rs.map((r) => Number(r.detail?.sinceLastJobEndMs)).filter((x) => Number.isFinite(x));
  const base = ms(starts.filter((r) => Date.parse(r.at) < o.chaosFrom));
  const faulted = ms(starts.filter((r) => Date.parse(r.at) >= o.chaosFrom));
  const results: Record<string, number> = {};
  for (const j of fakeJobs) results[j.result ?? j.status] = (results[j.result ?? j.status] ?? 0) + 1;
  const events: Record<string, number> = {};
  for (const r of records) if (r.type === 'event') events[r.event] = (events[r.event] ?? 0) + 1;

  const out = (s: string): void => void process.stdout.write(`${s}\n`);
  out(`chaos: ${JOBS} jobs with faults after ${BASELINE_JOBS} without, seed ${SEED}, wall ${o.wallS.toFixed(1)} s`);
  out(`  lost journal records: ${lost.length + dup.length + read.skipped.length}  (jobs run ${ran.length}, job records ${jobRecs.length}, no record ${lost.length}, several records ${dup.length}, torn lines ${read.skipped.length})`);
  out(`  ghost registrations:  ${ghosts.length}`);
  out(`  faults injected: ${Object.entries(injected).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out(`  agent kills landed in: ${Object.entries(killedIn).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
  out(`  agent processes started: ${o.sup.starts}; exits on their own: ${exits.length}`);
  out(`  last agent drained: ${o.last ? `exit ${o.last.code ?? o.last.signal}` : 'did not stop in time'}`);
  out(`  hosts replaced after a recycle: ${replacements.length}`);
  for (const r of replacements) out(`    ${r}`);
  out(`  fake job results: ${Object.entries(results).map(([k, v]) => `${k} ${v}`).join(', ')}; assigned but never started ${assignedOnly.length}`);
  out(`  journal events: ${Object.entries(events).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const b = median(base);
  const f = median(faulted);
  out(`  job end -> next listener, median: ${(f / 1000).toFixed(2)} s with faults (n=${faulted.length}) vs ${(b / 1000).toFixed(2)} s baseline (n=${base.length}) = ${(f / b).toFixed(2)}x`);
  if (byTime.length > 0) {
    out(`  records that name neither runner nor run (matched by start time; a defect of their own): ${byTime.length}`);
    for (const l of byTime) out(`    ${l}`);
  }
  for (const j of lost) out(`  LOST: run ${j.job.runId} on ${j.runnerName} #${j.runnerId}: ${j.status}/${j.result}, started ${new Date(j.startedAt as number).toISOString()}`);
  for (const j of dup) out(`  DUPLICATE: run ${j.job.runId}: ${JSON.stringify((claims.get(j.id) ?? []).map((r) => ({ seq: r.seq, result: r.result })))}`);
  for (const [id, rs] of extra) out(`  RECORD FOR A JOB THAT NEVER RAN: ${id}: ${rs.map((r) => `${r.seq} ${r.result}`).join(', ')}`);
  for (const s of read.skipped) out(`  TORN: ${s.file}:${s.line} ${s.reason}`);
  for (const g of ghosts) out(`  GHOST: ${g.id} ${g.name} ${g.status} busy=${g.busy}`);
  const unmatched = unattributed.length - byTime.length;
  if (unmatched > 0) out(`  job records matching no job at all: ${unmatched}`);
  if (ran.length < o.total) out(`  note: ${o.total - ran.length} of ${o.total} jobs never started (${fakeJobs.filter((j) => j.startedAt === null).map((j: FakeJob) => `${j.job.runId}:${j.result ?? j.status}`).join(' ')})`);
}

// Runs only as a command: importing this file (a test, run-all's listing) must not start a run.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
