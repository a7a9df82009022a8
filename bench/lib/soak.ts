/**
 * The soak: simulated jobs through one reused host (a real `runner-warden run` process, restarted
 * like systemd would) while faults are injected from seeded PRNGs, one stream per kind of fault;
 * then the invariants are checked. bench/soak.ts is its command line, test/e2e/agent/soak.test.ts a
 * short run of it in CI. Needs root (it makes two throwaway users and mounts a tmpfs).
 */
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { stringify } from 'yaml';
import { Journal } from '../../src/agent/journal.js';
import type { JobSpec } from '../../src/sim/github/types.js';
import { readPersistedState, startAgentProcess, type AgentProcess, type ProcessExit } from './agent-process.js';
import { prng, pick, sleep } from './prng.js';
import { BENCH_TIMEOUTS, benchPolicy, createUser, createWorld, replaceHost, sysTempDirs, type BenchUser, type World } from './world.js';
import { StateFiller, forgeAs, HealthPoller, FORGED_REPO, type ForgeOutcome } from './soak-faults.js';
import { checkInvariants, type Invariants } from './soak-check.js';

/** Chances per opportunity; a few of each per hundred jobs. */
export const DEFAULT_P = {
  /** Per registration: the next generate-jitconfig answers 500/502/503 once. */
  api5xx: 0.08,
  /** Per registration: the next generate-jitconfig answers 429 with retry-after: 1 once. */
  api429: 0.05,
  /** Per registration: the next generate-jitconfig is not answered for longer than the request deadline. */
  apiStall: 0.03,
  /** Per listener session: its next message makes it crash (exit 2). */
  listenerCrash: 0.05,
  /** Per listener session: its next message is a self-update (exit 3/4). */
  selfUpdate: 0.04,
  /** Per job: the next listener's registration is deleted on the server while it is idle. */
  serverDelete: 0.05,
  /** Per job: the job SIGKILLs its own listener. */
  listenerKillJob: 0.06,
  /** Per job: the agent is SIGKILLed within KILL_WINDOW_MS of the job's enqueue. */
  agentKill: 0.1,
  /** Per job: the state filesystem is filled within KILL_WINDOW_MS of the enqueue, for 0.5 to 4 s. */
  enospc: 0.05,
  /** Per job: a second local user tries to forge a hook report within KILL_WINDOW_MS of the enqueue. */
  forge: 0.1,
  /** Per job: the job adds a file to the runner installation (dirty: quarantine, then a recycle). */
  taint: 0.04,
  /** Per quarantine seen: the agent is SIGKILLed while quarantined (the restart must keep it). */
  quarantineKill: 0.5,
};
export type FaultChances = typeof DEFAULT_P;

/** Options of runSoak. */
export interface SoakOptions {
  jobs: number;
  seed: number;
  baselineJobs: number;
  p?: Partial<FaultChances>;
  /** Progress lines (stderr in the bench). */
  progress?: (line: string) => void;
  /** Keep the journal, the fake's jobs and runners and each agent's exit here, to look into a broken invariant. */
  keepDir?: string;
  /**
   * Stop queueing jobs after this many ms (the jobs queued still finish, then every invariant is
   * checked over the jobs that ran): a run that must end by a deadline reports what it did.
   */
  budgetMs?: number;
  /**
   * The agent's lateRegistrationMs (default the agent's own, 60 s): how long a stop or recycle waits
   * for a registration whose fate is unknown (a 5xx, a stall). A short CI run without API stalls
   * sets a few seconds; every such wait is otherwise a minute of nothing.
   */
  lateRegistrationMs?: number;
}

/** What a soak measured. */
export interface SoakResult {
  invariants: Invariants;
  /** Human-readable report lines. */
  lines: string[];
  /** One line per broken invariant; empty when all held. */
  broken: string[];
  wallS: number;
  /** Faults that landed, by kind. */
  injected: Record<string, number>;
  /** Jobs the fake saw start. */
  jobsRun: number;
}

/** A random moment within this much of a job's enqueue covers idle, job-running, cleaning and registering. */
const FAULT_WINDOW_MS = 5_000;
/** systemd's Restart= waits 100 ms by default; a little more keeps the fake's logs apart. */
const RESTART_DELAY_MS = 200;
/** A server-side deletion waits this long after the session opened, so the listener is polling. */
const DELETE_AFTER_MS = 300;
/** Jobs are queued one at a time, at a random gap up to this after the previous one was taken. */
const ENQUEUE_GAP_MS = 800;
/** No job completed for this long means something is stuck: report and stop. */
const STALL_MS = 150_000;
/** The fake abandons a job whose lock is not renewed for this long (and frees its runner). */
const JOB_LOCK_MS = 3_000;
/**
 * The drained last agent gets this long to stop: besides the drain, it may wait up to the agent's
 * lateRegistrationMs (60 s) for a stalled registration the fake may still complete.
 */
const FINAL_STOP_MS = 120_000;
/** The agent's GitHub request deadline (src/github/octokit.ts REQUEST_TIMEOUT_MS) plus margin: a stall outlives it. */
const API_STALL_MS = 35_000;
/** /healthz is polled this often. */
const HEALTH_POLL_MS = 200;
/** An answer slower than this counts as none (2 cores shared with the agent, its listener and jobs). */
const HEALTH_ANSWER_MS = 3_000;
/** The host's disk (state dir and runner install): room for the journal of thousands of jobs, work dirs and the trash; small to fill. */
const HOST_FS_BYTES = 96 * 1024 * 1024;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** The marker paths job `i` plants: the next job must find none of them. */
function markerPaths(w: World, i: number | '*'): string[] {
  return [path.join(w.user.home, `.soak-marker-${i}`), ...sysTempDirs(w.root).map((d) => path.join(d, `soak-marker-${i}`))];
}

function jobSpec(w: World, i: number, kind: 'plain' | 'killer' | 'taint', secs: string): JobSpec {
  const found = path.join(w.dropDir, `found-${i}`);
  // Look first (markers of any earlier job, a leftover process), then plant this job's own.
  const look = `f=""; for m in ${markerPaths(w, '*').join(' ')}; do [ -e "$m" ] && f="$f $m"; done; pgrep -u $(id -u) -f soak-leftover >/dev/null && f="$f leftover-process"; echo "$f" > ${found}`;
  const plant = `for m in ${markerPaths(w, i).join(' ')}; do echo ${i} > "$m"; done; (exec -a soak-leftover-${i} sleep 300 &)`;
  const work = `mkdir -p out ~/.docker && for n in $(seq 1 50); do echo $n > out/f$n; done; echo '{"auths":{}}' > ~/.docker/config.json`;
  const last =
    kind === 'killer'
      ? 'kill -9 $(pgrep -u $(id -u) -f "Runner.Listener|listener.(ts|mjs)" | head -n 5); sleep 30'
      : kind === 'taint'
        ? `echo tampered > ${path.join(w.runnerRoot, `soak-taint-${i}.sh`)}; sleep ${secs}`
        : `sleep ${secs}`;
  return { repository: 'octo/app', runId: i, job: `soak-${i}`, steps: [{ name: kind, run: `${look}; ${plant}; ${work}; ${last}` }] };
}

/** Runs the soak; never throws for a broken invariant (see `broken`), only for a broken bench. */
export async function runSoak(o: SoakOptions): Promise<SoakResult> {
  const P = { ...DEFAULT_P, ...o.p };
  const say = o.progress ?? (() => {});
  const total = o.baselineJobs + o.jobs;
  const rand = {
    job: prng(o.seed),
    registration: prng(o.seed * 7919 + 1),
    session: prng(o.seed * 104_729 + 2),
    kill: prng(o.seed * 15_485_863 + 3),
    enospc: prng(o.seed * 32_452_843 + 4),
    forge: prng(o.seed * 49_979_687 + 5),
    taint: prng(o.seed * 67_867_967 + 6),
    quarantine: prng(o.seed * 86_028_121 + 7),
  };
  const port = await freePort();
  const w = await createWorld({
    fake: { jobLockMs: JOB_LOCK_MS },
    runner: { maxJobs: 0 },
    config: {
      recycle: { provider: 'exit', exitCode: 0 },
      health: { listen: `127.0.0.1:${port}` },
      ...(o.lateRegistrationMs !== undefined ? { timeouts: { ...BENCH_TIMEOUTS, lateRegistrationMs: o.lateRegistrationMs } } : {}),
    },
    hostFsBytes: HOST_FS_BYTES,
  });
  let forger: BenchUser | undefined;
  const filler = new StateFiller(w.stateDir);
  const injected: Record<string, number> = {};
  const count = (k: string): void => void (injected[k] = (injected[k] ?? 0) + 1);
  const killedIn: Record<string, number> = {};
  const forges: ForgeOutcome[] = [];
  const statusLeaks: string[] = [];
  /** Journal record counts at each host replacement: the journal's generations. */
  const generations: number[] = [];
  const replacements: string[] = [];
  const exits: string[] = [];
  /** Intervals (ms) during which quarantine.json existed on the current host. */
  const quarantinedSpans: [number, number][] = [];
  let quarantinedSince: number | undefined;
  let quarantineKilledThisHost = false;

  const agentLogs: string[] = [];
  let running = true;
  let current: AgentProcess | undefined;
  let killing = false;
  let starts = 0;
  let replacing = false;
  const serving = (): boolean => {
    const a = current;
    if (!a || killing || replacing) return false;
    if (a.child.exitCode !== null || a.child.signalCode !== null) return false;
    return (
      a.indexOf((l) => l.msg === 'health server listening') >= 0 && a.indexOf((l) => l.msg === 'agent stopped' || l.msg === 'draining') < 0
    );
  };
  const journalCount = async (): Promise<number> => (await new Journal({ dir: w.stateDir }).readAll()).records.length;

  const killAgent = async (): Promise<string | undefined> => {
    const a = current;
    if (!a || !running) return undefined;
    killing = true;
    await a.kill('SIGKILL');
    return (await readPersistedState(w.stateDir))?.state ?? 'unknown';
  };

  const supervise = async (): Promise<void> => {
    while (running) {
      const a = startAgentProcess(w.configFile, { logLevel: 'info' });
      current = a;
      starts += 1;
      const e: ProcessExit = await a.exited;
      current = undefined;
      if (o.keepDir)
        for (const l of a.lines)
          if (l.level >= 40 || l.msg === 'state' || /regist|journal|stopped/.test(l.msg))
            agentLogs.push(JSON.stringify({ pid: a.pid, ...l }));
      if (!killing) {
        const stop = [...a.lines].reverse().find((l) => l.msg === 'agent stopped');
        const reason = typeof stop?.reason === 'string' ? stop.reason : a.tail(300).trim();
        exits.push(`code ${e.code ?? e.signal}: ${reason.slice(0, 300)}`);
        if (running && reason.startsWith('recycled')) {
          replacing = true;
          replacements.push(reason.slice(0, 200));
          generations.push(await journalCount());
          if (quarantinedSince !== undefined) quarantinedSpans.push([quarantinedSince, Date.now()]);
          quarantinedSince = undefined;
          quarantineKilledThisHost = false;
          await replaceHost(w);
          await clearMarkers(w);
          replacing = false;
        }
      }
      killing = false;
      if (running) await sleep(RESTART_DELAY_MS);
    }
  };

  // Watches the quarantine fact beside each /healthz poll; kills the agent while quarantined at times.
  const watchQuarantine = (): void => {
    if (replacing) return;
    const q = existsSync(path.join(w.stateDir, 'quarantine.json'));
    if (q && quarantinedSince === undefined) {
      quarantinedSince = Date.now();
      if (!quarantineKilledThisHost && rand.quarantine() < P.quarantineKill) {
        quarantineKilledThisHost = true;
        void killAgent().then((s) => {
          if (s === undefined) return;
          count('quarantine-kill');
          killedIn[s] = (killedIn[s] ?? 0) + 1;
        });
      }
    } else if (!q && quarantinedSince !== undefined) {
      quarantinedSpans.push([quarantinedSince, Date.now()]);
      quarantinedSince = undefined;
    }
  };
  const agentNow = (): string => {
    const a = current;
    if (!a) return 'no agent';
    const st = [...a.lines].reverse().find((l) => l.msg === 'state');
    const last = a.lines.at(-1);
    return `pid ${a.pid}, up ${((Date.now() - Date.parse(a.lines[0]?.time ?? new Date().toISOString())) / 1000).toFixed(1)} s, state ${st?.to ?? '?'}, last log "${last?.msg ?? ''}"`;
  };
  const startingUp = (): boolean => current !== undefined && current.indexOf((l) => l.msg === 'state') < 0;
  const health = new HealthPoller(
    `http://127.0.0.1:${port}/healthz`,
    serving,
    HEALTH_POLL_MS,
    HEALTH_ANSWER_MS,
    watchQuarantine,
    agentNow,
    startingUp,
  );

  const started = Date.now();
  let chaosFrom = Number.POSITIVE_INFINITY;
  let chaos = false;
  let loop: Promise<void> | undefined;
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  try {
    forger = await createUser(w.root);
    // No per-job container engine (docker.mode none): starting one is 4 to 6 s of a job here, and
    // nothing the soak checks depends on it (the engine's own tests cover its start, stop and cleanup).
    await writeFile(
      path.join(w.policyDir, 'test.yaml'),
      stringify(benchPolicy(w.root, { host: { maxJobs: 10_000 }, docker: { mode: 'none' } })),
    );
    await w.baseline();

    const match = { method: 'POST', path: /generate-jitconfig/ };
    let updateSeq = 400;
    let deleteNextIdle = false;
    w.fake.events.on('runner-created', () => {
      if (!chaos) return;
      const roll = rand.registration();
      if (roll < P.api5xx) {
        w.fake.faults.add({ match, times: 1, status: pick(rand.registration, [500, 502, 503]) });
        count('api-5xx');
      } else if (roll < P.api5xx + P.api429) {
        w.fake.faults.secondaryRateLimit({ match, times: 1, status: 429, retryAfter: 1 });
        count('api-429');
      } else if (roll < P.api5xx + P.api429 + P.apiStall) {
        // Half the stalls are finished by the service after the caller gave up (the runner exists, late).
        if (rand.registration() < 0.5) {
          w.fake.faults.add({ match, times: 1, completeWhen: sleep(API_STALL_MS) });
          count('api-stall-late-create');
        } else {
          w.fake.faults.add({ match, times: 1, delayMs: API_STALL_MS });
          count('api-stall');
        }
      }
    });
    w.fake.events.on('session-created', (s: { runnerId: number }) => {
      if (!chaos) return;
      if (deleteNextIdle) {
        setTimeout(() => {
          const r = w.fake.runners().find((x) => x.id === s.runnerId);
          if (r && !r.busy && deleteNextIdle && w.fake.deleteRunnerServerSide(s.runnerId)) {
            deleteNextIdle = false;
            count('server-delete');
          }
        }, DELETE_AFTER_MS);
        return;
      }
      const roll = rand.session();
      if (roll < P.listenerCrash) {
        w.fake.crashNext(s.runnerId);
        count('listener-crash');
      } else if (roll < P.listenerCrash + P.selfUpdate) {
        w.fake.requestUpdate(s.runnerId, `2.${updateSeq++}.0`);
        count('self-update');
      }
    });

    loop = supervise();
    health.start();
    let enqueued = 0;
    let lastProgress = Date.now();
    let lastDone = 0;
    let stalled = false;
    const done = (): number => w.fake.jobs().filter((j) => j.status === 'completed').length;
    const budgetEnd = o.budgetMs !== undefined ? started + o.budgetMs : Number.POSITIVE_INFINITY;
    let target = total;
    while (enqueued < target || done() < target) {
      if (target === total && Date.now() > budgetEnd && enqueued < total) {
        target = enqueued;
        say(`  time budget spent: no more jobs queued after ${enqueued} of ${total}`);
      }
      const jobs = w.fake.jobs();
      const d = jobs.filter((j) => j.status === 'completed').length;
      if (d !== lastDone) {
        lastDone = d;
        lastProgress = Date.now();
        if (d % 10 === 0) say(`  ${d}/${total} jobs done, ${((Date.now() - started) / 1000).toFixed(0)} s`);
      }
      if (Date.now() - lastProgress > STALL_MS) {
        stalled = true;
        say(`stalled: no job completed for ${STALL_MS / 1000} s\n${current?.tail(3000) ?? '(no agent running)'}`);
        break;
      }
      if (enqueued < target && !jobs.some((j) => j.status === 'queued') && !deleteNextIdle) {
        await sleep(rand.job() * ENQUEUE_GAP_MS);
        enqueued += 1;
        chaos = enqueued > o.baselineJobs;
        if (enqueued === o.baselineJobs + 1) chaosFrom = Date.now();
        const killer = chaos && rand.job() < P.listenerKillJob;
        const taint = chaos && !killer && rand.taint() < P.taint;
        if (killer) count('listener-kill-job');
        if (taint) count('taint-job');
        w.fake.enqueueJob(jobSpec(w, enqueued, killer ? 'killer' : taint ? 'taint' : 'plain', (0.1 + rand.job() * 0.3).toFixed(2)));
        if (chaos && rand.kill() < P.agentKill) {
          later(rand.kill() * FAULT_WINDOW_MS, () => {
            void killAgent().then((state) => {
              if (state === undefined) return;
              count('agent-kill');
              killedIn[state] = (killedIn[state] ?? 0) + 1;
            });
          });
        }
        if (chaos && rand.enospc() < P.enospc) {
          const hold = 500 + rand.enospc() * 3_500;
          later(rand.enospc() * FAULT_WINDOW_MS, () => {
            if (!running) return;
            filler.fill(hold);
            count('enospc');
          });
        }
        if (chaos && rand.forge() < P.forge) {
          later(rand.forge() * FAULT_WINDOW_MS, () => {
            if (!running || !forger) return;
            count('forged-report');
            void forgeAs(forger.user, w.stateDir).then(async (f) => {
              forges.push(f);
              await sleep(300);
              const body = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(HEALTH_ANSWER_MS) })
                .then((r) => r.text())
                .catch(() => '');
              if (body.includes(FORGED_REPO)) statusLeaks.push(body.slice(0, 300));
            });
          });
        }
        if (chaos && rand.job() < P.serverDelete) deleteNextIdle = true;
        continue;
      }
      await sleep(100);
    }
    for (const t of timers) clearTimeout(t);
    chaos = false;
    deleteNextIdle = false;
    await filler.stop();
    running = false;
    for (let i = 0; i < 50 && !current; i++) await sleep(20);
    let last: ProcessExit | undefined;
    const a = current;
    if (a) {
      await a.waitForLog((l) => l.msg === 'state', 'the agent to start', 30_000).catch(() => undefined);
      a.child.kill('SIGTERM');
      last = await a.waitForExit(FINAL_STOP_MS).catch(() => undefined);
    }
    await loop;
    await health.stop();
    if (quarantinedSince !== undefined) quarantinedSpans.push([quarantinedSince, Date.now()]);
    const drainEnd = Date.now() + JOB_LOCK_MS + 5_000;
    while (w.fake.runners().length > 0 && Date.now() < drainEnd) await sleep(100);
    const wallS = (Date.now() - started) / 1000;

    const read = await new Journal({ dir: w.stateDir }).readAll();
    if (o.keepDir) {
      const { mkdir, copyFile } = await import('node:fs/promises');
      await mkdir(o.keepDir, { recursive: true });
      await copyFile(path.join(w.stateDir, 'journal.jsonl'), path.join(o.keepDir, 'journal.jsonl')).catch(() => {});
      const fake = { jobs: w.fake.jobs(), runners: w.fake.runners(), exits, replacements, generations, quarantinedSpans };
      await writeFile(path.join(o.keepDir, 'soak.json'), JSON.stringify(fake, null, 1));
      await writeFile(path.join(o.keepDir, 'agent-logs.jsonl'), agentLogs.join('\n'));
    }
    const found = new Map<number, string>();
    for (let i = 1; i <= total; i++) {
      const t = await readFile(path.join(w.dropDir, `found-${i}`), 'utf8').catch(() => undefined);
      if (t !== undefined) found.set(i, t.trim());
    }
    const inv = checkInvariants({
      records: read.records,
      torn: read.skipped.map((s) => `${s.file}:${s.line} ${s.reason}`),
      fakeJobs: w.fake.jobs(),
      ghosts: w.fake.runners(),
      found,
      generations,
      quarantinedSpans,
      health,
      forges,
      statusLeaks,
      forgedRepo: FORGED_REPO,
    });
    const lines = [
      `soak: ${target - o.baselineJobs} jobs with faults after ${o.baselineJobs} without${target < total ? ` (of ${o.jobs} asked: the time budget ended the queueing)` : ''}, seed ${o.seed}, wall ${wallS.toFixed(1)} s (${(wallS / target).toFixed(2)} s a job)`,
      ...inv.lines,
      `  faults injected: ${
        Object.entries(injected)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || 'none'
      }`,
      `  agent kills landed in: ${
        Object.entries(killedIn)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || 'none'
      }`,
      `  agent processes started: ${starts}; exits on their own: ${exits.length}; last agent drained: ${last ? `exit ${last.code ?? last.signal}` : 'did not stop in time'}`,
      `  hosts replaced after a recycle: ${replacements.length}`,
      ...summarise(replacements).map((l) => `    ${l}`),
      ...inv.timing(chaosFrom),
    ];
    const broken = [...inv.broken];
    if (stalled) broken.push('the soak stalled: no job completed for too long');
    if (!last) broken.push('the last agent did not drain in time');
    return { invariants: inv, lines, broken, wallS, injected, jobsRun: w.fake.jobs().filter((j) => j.startedAt !== null).length };
  } finally {
    running = false;
    for (const t of timers) clearTimeout(t);
    await health.stop().catch(() => {});
    await filler.stop().catch(() => {});
    if (current) await current.kill('SIGKILL').catch(() => undefined);
    await loop?.catch(() => {});
    forger?.remove();
    await w.dispose();
  }
}

/** Removes the planted markers (a replaced host comes from the image, without them). */
async function clearMarkers(w: World): Promise<void> {
  const { readdir, rm } = await import('node:fs/promises');
  for (const dir of [w.user.home, ...sysTempDirs(w.root)]) {
    for (const n of await readdir(dir).catch(() => [] as string[])) {
      if (n.startsWith('.soak-marker-') || n.startsWith('soak-marker-')) await rm(path.join(dir, n), { force: true });
    }
  }
}

/** Counts alike lines (reasons differ only by numbers). */
function summarise(reasons: string[]): string[] {
  const m = new Map<string, number>();
  for (const r of reasons) {
    const k = r.replace(/\d+/g, 'N').slice(0, 140);
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return [...m.entries()].map(([k, v]) => `${v} x ${k}`);
}

/** A command-line count: a whole number, else an error naming the flag. */
export function wholeNumberArg(name: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: expected a whole number, got ${v}`);
  return n;
}

/** Prints a soak's report (its first word replaced by `label`); a broken invariant sets exit code 1. */
export function printSoak(res: SoakResult, label: string): void {
  for (const l of res.lines) process.stdout.write(`${l.replace(/^soak:/, `${label}:`)}\n`);
  if (res.broken.length > 0) {
    process.stdout.write(`BROKEN: ${res.broken.join('; ')}\n`);
    process.exitCode = 1;
  } else process.stdout.write('all invariants held\n');
}
