/**
 * A fleet on one GitHub App installation: N simulated hosts (default 1,000) in this process,
 * sharing one fake GitHub (with the documented primary and secondary limits) and one simulated
 * clock that jumps from one sleeper to the next once every HTTP exchange in flight has finished.
 *
 * Real: each host's GitHub adapter (src/github/octokit.ts: App token cache, per-host gate,
 * jittered retries, request deadline) over real HTTP on loopback; the registration loop's rules
 * (a fresh name, the next number on 409, full-jitter backoff with the agent's DEFAULT_TIMEOUTS,
 * the stale registration deleted first) with lib/backoff.ts; the reuse/recycle decision
 * (recycle/decision.ts) after every job. Simulated: the listener and the job (a job is a sleep on
 * the clock), cleanup (a clean report), state persistence, and the job queue (Poisson arrivals
 * handed to idle registered hosts). The policy lets a host serve many jobs (host.maxJobs 1000):
 * a reusing fleet is the one whose API use is all registrations.
 *
 * Prints: (1) the highest steady job rate with zero limit answers, beside the installation
 * budget's bound; (2) after a 10-minute API outage during which every host lost its
 * registration, the time until all are registered again beside the lower bound the secondary
 * limit allows, and the most secondary-limit answers any host got; (3) token mints per host per
 * hour; (4) heap per simulated host.
 *
 *   node --import tsx bench/fleet.ts [hosts=1000] [seed=1] [all|outage]
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { generateKeyPairSync } from 'node:crypto';
import { startFakeGitHub, type FakeGitHub } from '../src/sim/github/server.js';
import { createOctokitPort } from '../src/github/octokit.js';
import type { GitHubPort } from '../src/github/port.js';
import { backoffDelay, seededRandom, type RandomSource } from '../src/lib/backoff.js';
import { DEFAULT_TIMEOUTS } from '../src/agent/timeouts.js';
import { decide } from '../src/recycle/decision.js';
import { DEFAULT_POLICY } from '../src/policy/types.generated.js';
import type { CleanupReport } from '../src/cleanup/types.js';
import { GitHubApiError } from '../src/lib/errors.js';
import { silentLogger } from '../src/lib/log.js';
import type { Clock } from '../src/lib/clock.js';

const HOSTS = Number(process.argv[2] ?? 1000);
const SEED = Number(process.argv[3] ?? 1);
/** GitHub's documented floor for an App installation. */
const INSTALLATION_BUDGET = 5000;
/** GitHub's documented secondary limit per endpoint, and a POST's cost. */
const POINTS_PER_MINUTE = 900;
const POST_POINTS = 5;
/** How long a simulated job runs: short enough that a fleet of N can reach the budget's rate. */
const JOB_MS = 10 * 60_000;
/** The outage of the second figure. */
const OUTAGE_MS = 10 * 60_000;
/** Hosts boot over this long at the start (a fleet rollout, not one instant). */
const BOOT_SPREAD_MS = 15 * 60_000;
/** Offered load of one steady-rate run lasts one primary window. */
const STEADY_MS = 60 * 60_000;
/** The simulated clock moves in steps of at least this: far below any wait that matters, and it keeps a 1,000-host run short. */
const CLOCK_GRANULE_MS = 50;
/** 'all', or 'outage' for the outage figure alone. */
const PHASES = process.argv[4] ?? 'all';

const appKeys = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  publicKeyEncoding: { type: 'spki', format: 'pem' },
});
const APP = { appId: 4242, installationId: 4343 };

/** A clock that moves only when the driver says so; sleepers are kept in deadline order. */
class SimClock implements Clock {
  private t: number;
  private sleepers: { until: number; resolve: () => void; seq: number }[] = [];
  private seq = 0;
  constructor(start: number) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const s = { until: this.t + Math.max(0, ms), resolve, seq: this.seq++ };
      this.sleepers.push(s);
      signal?.addEventListener('abort', () => {
        this.sleepers = this.sleepers.filter((x) => x !== s);
        reject(signal.reason);
      }, { once: true });
    });
  }
  nextDue(): number | undefined {
    let min: number | undefined;
    for (const s of this.sleepers) if (min === undefined || s.until < min) min = s.until;
    return min;
  }
  /** Moves to `t` and wakes every sleeper due by then. */
  advanceTo(t: number): void {
    this.t = Math.max(this.t, t);
    const due = this.sleepers.filter((s) => s.until <= this.t);
    if (due.length === 0) return;
    this.sleepers = this.sleepers.filter((s) => s.until > this.t);
    for (const s of due) s.resolve();
  }
}

/** Counts HTTP exchanges in flight, so the driver knows when the fleet is waiting on the clock only. */
let inFlight = 0;
/** While true the API is unreachable: every request fails at once as a network error. */
let outage = false;
const countingFetch: typeof fetch = async (input, init) => {
  if (outage) throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED (simulated outage)') });
  inFlight++;
  try {
    const res = await fetch(input, init);
    const body = [204, 304].includes(res.status) ? null : await res.arrayBuffer();
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  } finally {
    inFlight--;
  }
};

async function quiesce(): Promise<void> {
  for (let idle = 0; idle < 3; ) {
    await new Promise((r) => setImmediate(r));
    idle = inFlight > 0 ? 0 : idle + 1;
  }
}

/** Runs the simulation until `end` on the clock, or until `done()`. */
async function runUntil(clock: SimClock, end: number, done?: () => boolean): Promise<void> {
  for (;;) {
    await quiesce();
    if (done?.()) return;
    const next = clock.nextDue();
    if (next === undefined || next > end) {
      clock.advanceTo(end);
      await quiesce();
      return;
    }
    // Everything due within one granule wakes together: the clock is exact to CLOCK_GRANULE_MS.
    clock.advanceTo(next + CLOCK_GRANULE_MS);
  }
}

const cleanReport: CleanupReport = {
  steps: [],
  verify: { clean: true, durationMs: 0, problems: [], disk: { freePercent: 80, freeInodesPercent: 80 } },
  clean: true,
  readyMs: 0,
};
const policy = { ...DEFAULT_POLICY, host: { ...DEFAULT_POLICY.host, maxJobs: 1000 } };

/** One simulated host: a real adapter, the registration loop's rules, the decision. */
class Host {
  readonly port: GitHubPort & { fleet: { mintsLastHour(): number } };
  secondaryAnswers = 0;
  limitAnswers = 0;
  registered = false;
  runnerId: number | undefined;
  seq = 0;
  jobsServed = 0;
  private wake: ((job: boolean) => void) | undefined;
  constructor(
    readonly index: number,
    private readonly world: World,
    readonly random: RandomSource,
  ) {
    this.port = createOctokitPort({
      apiUrl: world.fake.url,
      scope: { kind: 'org', org: 'octo' },
      auth: { kind: 'app', appId: APP.appId, installationId: APP.installationId, privateKey: appKeys.privateKey },
      clock: world.clock,
      log: silentLogger(),
      fetch: countingFetch,
      random,
      onRequest: (r) => {
        if (r.limit) this.limitAnswers++;
        if (r.limit === 'secondary') this.secondaryAnswers++;
      },
    });
  }

  /** Registers with the agent's rules: stale registration first, the next number on 409, full-jitter backoff. */
  async register(): Promise<void> {
    const backoff = { baseMs: DEFAULT_TIMEOUTS.registerBackoffBaseMs, maxMs: DEFAULT_TIMEOUTS.registerBackoffMaxMs };
    for (let failures = 0; ; ) {
      try {
        if (this.runnerId !== undefined) {
          await this.port.deleteRunner(this.runnerId);
          this.runnerId = undefined;
        }
        const group = await this.port.resolveRunnerGroup(null);
        const reg = await this.port.generateJitConfig({ name: `host-${this.index}-${this.seq}`, labels: ['self-hosted'], runnerGroupId: group, workFolder: '_work' });
        this.seq++;
        this.runnerId = reg.runner.id;
        this.registered = true;
        return;
      } catch (err) {
        if (err instanceof GitHubApiError && err.status === 409) {
          this.seq++;
          continue;
        }
        failures++;
        await this.world.clock.sleep(backoffDelay(failures - 1, backoff, this.random));
      }
    }
  }

  /** Serves jobs until the world stops: register, wait for a job, run it, decide. */
  async serve(): Promise<void> {
    while (!this.world.stopped) {
      if (!this.registered) await this.register();
      const job = await new Promise<boolean>((resolve) => {
        this.wake = resolve;
        this.world.idle.push(this);
        this.world.onIdle();
      });
      if (!job || this.world.stopped) return;
      await this.world.clock.sleep(JOB_MS);
      this.registered = false;
      this.jobsServed++;
      this.world.jobsDone++;
      const d = decide({ policy, report: cleanReport, jobsServed: this.jobsServed, jobsThisRun: this.jobsServed, agentMaxJobs: 0, hostStartedAt: 0, now: this.world.clock.now(), consecutiveFailures: 0, draining: false });
      if (d.action !== 'reuse') throw new Error(`unexpected decision ${d.action}: ${d.reason}`);
    }
  }

  /** Hands this idle host a job (true) or tells it to stop (false). */
  give(job: boolean): void {
    const w = this.wake;
    this.wake = undefined;
    w?.(job);
  }
}

/** The shared fake installation, the clock, the queue of jobs. */
class World {
  stopped = false;
  idle: Host[] = [];
  queued = 0;
  jobsDone = 0;
  hosts: Host[] = [];
  constructor(
    readonly fake: FakeGitHub,
    readonly clock: SimClock,
  ) {}
  onIdle(): void {
    while (this.queued > 0 && this.idle.length > 0) {
      this.queued--;
      this.idle.shift()!.give(true);
    }
  }
  /** Poisson arrivals at `perHour` until `end`. */
  async arrivals(perHour: number, end: number, random: RandomSource): Promise<void> {
    for (;;) {
      const gap = (-Math.log(1 - random()) / perHour) * 3_600_000;
      if (this.clock.now() + gap > end) return;
      await this.clock.sleep(gap);
      this.queued++;
      this.onIdle();
    }
  }
  stop(): void {
    this.stopped = true;
    for (const h of this.idle.splice(0)) h.give(false);
  }
}

async function makeWorld(seed: number): Promise<World> {
  const clock = new SimClock(Date.UTC(2026, 0, 1));
  const fake = await startFakeGitHub({
    clock,
    app: { ...APP, publicKeyPem: appKeys.publicKey },
    installationRateLimit: INSTALLATION_BUDGET,
  });
  const world = new World(fake, clock);
  const master = seededRandom(seed);
  for (let i = 0; i < HOSTS; i++) world.hosts.push(new Host(i, world, seededRandom(Math.floor(master() * 2 ** 32))));
  return world;
}

/**
 * Boots the fleet (staggered), waits until every host is registered, then waits for the
 * installation's hourly window to reset, so that what follows is measured on a fresh budget.
 */
async function boot(world: World): Promise<void> {
  const random = seededRandom(SEED * 7919);
  const start = world.clock.now();
  for (const h of world.hosts) {
    void world.clock.sleep(Math.floor(random() * BOOT_SPREAD_MS)).then(() => h.serve());
  }
  await runUntil(world.clock, Number.MAX_SAFE_INTEGER, () => world.hosts.every((h) => h.registered));
  await runUntil(world.clock, start + 61 * 60_000);
}

/**
 * Offers `perHour` jobs for one hour on the booted `world`, lets the jobs finish, then idles past
 * the installation's hourly window so the next run starts on a fresh budget.
 */
async function steadyRun(world: World, perHour: number): Promise<{ limitAnswers: number; jobsPerHour: number }> {
  const before = world.fake.limitAnswers();
  const start = world.clock.now();
  const jobs0 = world.jobsDone;
  void world.arrivals(perHour, start + STEADY_MS, seededRandom(SEED + Math.round(perHour)));
  await runUntil(world.clock, start + STEADY_MS + JOB_MS);
  const after = world.fake.limitAnswers();
  const served = world.jobsDone - jobs0;
  await runUntil(world.clock, world.clock.now() + 61 * 60_000);
  world.fake.clearRequests();
  const limitAnswers = after.primary + after.secondaryPoints + after.secondaryConcurrent - (before.primary + before.secondaryPoints + before.secondaryConcurrent);
  return { limitAnswers, jobsPerHour: (served / STEADY_MS) * 3_600_000 };
}

async function outageRun(world: World): Promise<{ recoverMs: number; boundMs: number; maxSecondary: number; hostsWithTwo: number; mintsPerHostHour: number }> {
  try {
    // Every host loses its registration during the outage (the worst case: all must register again).
    const t0 = world.clock.now();
    outage = true;
    for (const h of world.hosts) {
      h.registered = false;
      h.secondaryAnswers = 0;
    }
    const notice = seededRandom(SEED * 31);
    // Hosts notice over the first minute (their jobs end, their listeners fail) and start registering.
    for (const h of world.idle.splice(0)) void world.clock.sleep(Math.floor(notice() * 60_000)).then(() => h.give(false));
    world.stopped = false;
    const regs = world.hosts.map((h) => world.clock.sleep(Math.floor(notice() * 60_000)).then(() => h.register()));
    await runUntil(world.clock, t0 + OUTAGE_MS);
    outage = false;
    const end = world.clock.now();
    let allAt = 0;
    void Promise.all(regs).then(() => {
      allAt = world.clock.now();
    });
    await runUntil(world.clock, Number.MAX_SAFE_INTEGER, () => allAt > 0);
    const perMinute = Math.floor(POINTS_PER_MINUTE / POST_POINTS);
    // The sliding minute admits `perMinute` registrations at once, then as many a minute later...
    const boundMs = Math.floor((HOSTS - 1) / perMinute) * 60_000;
    const mints = world.hosts.reduce((s, h) => s + h.port.fleet.mintsLastHour(), 0) / HOSTS;
    return {
      recoverMs: allAt - end,
      boundMs,
      maxSecondary: Math.max(...world.hosts.map((h) => h.secondaryAnswers)),
      hostsWithTwo: world.hosts.filter((h) => h.secondaryAnswers > 1).length,
      mintsPerHostHour: mints,
    };
  } finally {
    world.stop();
    await quiesce();
    await world.fake.close();
  }
}

function heapUsed(gc: () => void): number {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

async function memoryPerHost(): Promise<number> {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const clock = new SimClock(Date.UTC(2026, 0, 1));
  const fake = await startFakeGitHub({ clock, app: { ...APP, publicKeyPem: appKeys.publicKey } });
  const world = new World(fake, clock);
  const base = heapUsed(gc);
  for (let i = 0; i < HOSTS; i++) world.hosts.push(new Host(i, world, seededRandom(i)));
  const after = heapUsed(gc);
  await fake.close();
  return (after - base) / HOSTS;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const callsPerJob = 2; // generate-jitconfig + the spent registration's DELETE; the group id is cached
  const budgetRate = INSTALLATION_BUDGET / callsPerJob;
  console.log(`fleet: ${HOSTS} hosts on one App installation (${INSTALLATION_BUDGET}/h, ${POINTS_PER_MINUTE} points/min per endpoint), seed ${SEED}`);
  const world = await makeWorld(SEED);
  await boot(world);
  console.log(`  booted ${HOSTS} hosts (${(BOOT_SPREAD_MS / 60_000).toFixed(0)} min rollout) in ${((performance.now() - t0) / 1000).toFixed(0)} s of wall time`);
  let best: { rate: number; jobsPerHour: number } | undefined;
  // Ascending: the first rate that meets a limit ends the search.
  for (const f of PHASES === 'outage' ? [] : [0.95, 1.0, 1.05]) {
    const rate = Math.round(budgetRate * f);
    const r = await steadyRun(world, rate);
    console.log(`  steady ${rate} jobs/h offered: ${r.jobsPerHour.toFixed(0)} jobs/h served, ${r.limitAnswers} limit answers`);
    if (r.limitAnswers > 0) break;
    best = { rate, jobsPerHour: r.jobsPerHour };
  }
  if (PHASES !== 'outage') console.log(
    `highest steady job rate with zero limit answers: ${best ? best.jobsPerHour.toFixed(0) : 'none'} jobs/h ` +
      `(bound of the installation budget: ${budgetRate} jobs/h, ratio ${best ? (best.jobsPerHour / budgetRate).toFixed(2) : '-'})`,
  );
  const o = await outageRun(world);
  console.log(
    `after a ${OUTAGE_MS / 60_000}-minute outage: every host registered again in ${(o.recoverMs / 1000).toFixed(0)} s; ` +
      `lower bound of the secondary limit ${(o.boundMs / 1000).toFixed(0)} s; ratio ${(o.recoverMs / o.boundMs).toFixed(2)} (target <= 1.20)`,
  );
  console.log(`  most secondary-limit answers of one host: ${o.maxSecondary} (hosts with more than one: ${o.hostsWithTwo})`);
  console.log(`  installation token mints per host in the last hour: ${o.mintsPerHostHour.toFixed(2)}`);
  const perHost = await memoryPerHost();
  console.log(`memory per simulated host (adapter, token cache, gate): ${(perHost / 1024).toFixed(1)} KiB of heap`);
  console.log(`wall time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

await main();
