/**
 * A fleet on one GitHub App installation: N simulated hosts (default 1,000) in this process,
 * sharing one fake GitHub (with the documented primary and secondary limits) and one simulated
 * clock that jumps from one sleeper to the next once every HTTP exchange in flight has finished.
 *
 * Real: each host's GitHub adapter (src/github/octokit.ts: App token cache, per-host gate,
 * jittered retries, request deadline, and with `--fleet` (the default) the host's slots from the
 * host config's fleet section, github/fleet-pacing.ts) over real HTTP on loopback; the
 * registration loop's rules (a fresh name, the next number on 409, the wait between attempts from
 * the agent's own registrationRetryWait with DEFAULT_TIMEOUTS, the stale registration deleted
 * first); the reuse/recycle decision
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
 * (5) a fleet-wide recycle: every host calls its recycle provider (the real aws-asg, gcp-mig and
 * azure-vmss code, with its full-jitter backoff on throttling, or with the fleet section its
 * slots sized from the API's documented rate, recycle/cloud-slots.ts) at the same instant against
 * the fake cloud API's default rate; the time until every host's call was accepted and the
 * throttling answers per host, beside the bound the rate allows and the slot window.
 *
 *   node --import tsx bench/fleet.ts [hosts=1000] [seed=1] [all|outage|recycle] [provider prefix] [--jitter|--hashed]
 *
 * Each host knows its place (fleet.size = hosts, fleet.index = its number) unless `--jitter` (no
 * fleet section: full jitter alone, the agent's behaviour without the config) or `--hashed` (no
 * index: each host's index is the hash of its host name, as when an image pipeline sets none).
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { generateKeyPairSync } from 'node:crypto';
import { startFakeGitHub, type FakeGitHub } from '../src/sim/github/server.js';
import { createOctokitPort } from '../src/github/octokit.js';
import type { GitHubPort } from '../src/github/port.js';
import { seededRandom, type RandomSource } from '../src/lib/backoff.js';
import { DEFAULT_TIMEOUTS } from '../src/agent/timeouts.js';
import { registrationRetryWait } from '../src/agent/registrar.js';
import { githubSlots } from '../src/github/fleet-pacing.js';
import { fleetPlace, type FleetSlots } from '../src/lib/fleet-slots.js';
import { decide } from '../src/recycle/decision.js';
import { DEFAULT_POLICY } from '../src/policy/types.generated.js';
import type { CleanupReport } from '../src/cleanup/types.js';
import { GitHubApiError } from '../src/lib/errors.js';
import { silentLogger } from '../src/lib/log.js';
import type { Clock } from '../src/lib/clock.js';
import { awsAsgProvider } from '../src/recycle/aws-asg.js';
import { azureVmssProvider } from '../src/recycle/azure-vmss.js';
import { gcpMigProvider } from '../src/recycle/gcp-mig.js';
import type { RecycleProvider } from '../src/recycle/port.js';
import type { ThrottleDeps } from '../src/recycle/throttle.js';
import { CLOUD_API_RATES, recycleWindowMs } from '../src/recycle/cloud-slots.js';
import type { CloudRate } from '../src/sim/cloud-rate.js';
import { DEFAULT_AWS_RATE, startFakeAws } from '../src/sim/aws/fake-aws.js';
import { DEFAULT_AZURE_RATE, startFakeAzure } from '../src/sim/azure/fake-azure.js';
import { DEFAULT_GCP_RATE, startFakeGcp } from '../src/sim/gcp/fake-gcp.js';

const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const HOSTS = Number(args[0] ?? 1000);
const SEED = Number(args[1] ?? 1);
/** How hosts pace their retries: by their place in the fleet (the default), a hashed place, or full jitter alone. */
const PACING: 'fleet' | 'hashed' | 'jitter' = flags.includes('--jitter') ? 'jitter' : flags.includes('--hashed') ? 'hashed' : 'fleet';
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
/** 'all', 'outage' for the outage figure alone, 'recycle' for the fleet-wide recycle alone. */
const PHASES = args[2] ?? 'all';

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
      signal?.addEventListener(
        'abort',
        () => {
          this.sleepers = this.sleepers.filter((x) => x !== s);
          reject(signal.reason);
        },
        { once: true },
      );
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
  for (let idle = 0; idle < 3;) {
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
  /** The host's GitHub slots, as wire.ts builds them from the host config's fleet section. */
  readonly slots: FleetSlots | undefined;
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
    const section = PACING === 'fleet' ? { size: HOSTS, index } : { size: HOSTS };
    this.slots = PACING === 'jitter' ? undefined : githubSlots(fleetPlace(section, `host-${index}`, 'bench'));
    this.port = createOctokitPort({
      apiUrl: world.fake.url,
      scope: { kind: 'org', org: 'octo' },
      auth: { kind: 'app', appId: APP.appId, installationId: APP.installationId, privateKey: appKeys.privateKey },
      clock: world.clock,
      log: silentLogger(),
      fetch: countingFetch,
      random,
      ...(this.slots ? { slots: this.slots } : {}),
      onRequest: (r) => {
        if (r.limit) this.limitAnswers++;
        if (r.limit === 'secondary') {
          this.secondaryAnswers++;
          world.secondaryByEndpoint.set(r.endpoint, (world.secondaryByEndpoint.get(r.endpoint) ?? 0) + 1);
        }
      },
    });
  }

  /** Registers with the agent's rules: stale registration first, the next number on 409, the agent's wait between attempts. */
  async register(): Promise<void> {
    for (let failures = 0; ;) {
      try {
        if (this.runnerId !== undefined) {
          await this.port.deleteRunner(this.runnerId);
          this.runnerId = undefined;
        }
        const group = await this.port.resolveRunnerGroup(null);
        const reg = await this.port.generateJitConfig({
          name: `host-${this.index}-${this.seq}`,
          labels: ['self-hosted'],
          runnerGroupId: group,
          workFolder: '_work',
        });
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
        const auth = err instanceof GitHubApiError && err.isAuth;
        const now = this.world.clock.now();
        const wait = { failures, auth, now, timeouts: DEFAULT_TIMEOUTS, random: this.random };
        await this.world.clock.sleep(registrationRetryWait(this.slots ? { ...wait, slots: this.slots } : wait));
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
      const d = decide({
        policy,
        report: cleanReport,
        jobsServed: this.jobsServed,
        jobsThisRun: this.jobsServed,
        agentMaxJobs: 0,
        hostStartedAt: 0,
        now: this.world.clock.now(),
        consecutiveFailures: 0,
        draining: false,
      });
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
  /** Secondary-limit answers per endpoint (route template), for the outage figure's breakdown. */
  readonly secondaryByEndpoint = new Map<string, number>();
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
  const limitAnswers =
    after.primary +
    after.secondaryPoints +
    after.secondaryConcurrent -
    (before.primary + before.secondaryPoints + before.secondaryConcurrent);
  return { limitAnswers, jobsPerHour: (served / STEADY_MS) * 3_600_000 };
}

interface OutageFigures {
  recoverMs: number;
  boundMs: number;
  maxSecondary: number;
  hostsWithTwo: number;
  mintsPerHostHour: number;
  /** Secondary answers by cause (points or concurrency) and by endpoint. */
  byCause: { points: number; concurrent: number };
  byEndpoint: [string, number][];
}

async function outageRun(world: World): Promise<OutageFigures> {
  try {
    // Every host loses its registration during the outage (the worst case: all must register again).
    const t0 = world.clock.now();
    outage = true;
    for (const h of world.hosts) {
      h.registered = false;
      h.secondaryAnswers = 0;
    }
    world.secondaryByEndpoint.clear();
    const limits0 = world.fake.limitAnswers();
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
      byCause: {
        points: world.fake.limitAnswers().secondaryPoints - limits0.secondaryPoints,
        concurrent: world.fake.limitAnswers().secondaryConcurrent - limits0.secondaryConcurrent,
      },
      byEndpoint: [...world.secondaryByEndpoint].sort((a, b) => b[1] - a[1]),
      mintsPerHostHour: mints,
    };
  } finally {
    world.stop();
    await quiesce();
    await world.fake.close();
  }
}

/** Hosts of the fleet-wide recycle that connect in one real-time batch (the simulated clock stands still meanwhile). */
const LAUNCH_BATCH = 50;

/**
 * One process and one fake stand for a thousand machines and their metadata servers here: a
 * request may wait its turn for seconds of real time, which is not what the per-call timeouts
 * (2 s for a metadata server) are about.
 */
const SLOW_SIM = { timeoutSeconds: 120 };

/** One cloud of the fleet-wide recycle: its fake with `hosts` instances and one provider per host. */
interface RecycleCloud {
  name: string;
  /** The provider, whose documented rate (CLOUD_API_RATES) sizes its slots. */
  provider: keyof typeof CLOUD_API_RATES;
  rate: CloudRate;
  start(
    clock: Clock,
    hosts: number,
  ): Promise<{
    providers: (deps: ThrottleDeps, i: number) => RecycleProvider;
    throttledOf: (i: number) => number;
    close: () => Promise<void>;
  }>;
}

const RECYCLE_CLOUDS: RecycleCloud[] = [
  {
    name: 'aws-asg (Auto Scaling)',
    provider: 'aws-asg',
    rate: DEFAULT_AWS_RATE,
    async start(clock, hosts) {
      const ids = Array.from({ length: hosts }, (_, i) => `i-0${i.toString(16).padStart(16, '0')}`);
      const fake = await startFakeAws({
        instanceId: ids[0],
        moreInstances: ids.slice(1),
        clock,
        group: { name: 'runners', min: 0, desired: hosts, max: hosts },
      });
      const credentials = { accessKeyId: 'AKIDFLEET', secretAccessKey: 'fleet' };
      return {
        providers: (deps, i) =>
          awsAsgProvider(
            { provider: 'aws-asg', ...SLOW_SIM, endpoint: fake.url, region: 'eu-west-1', instanceId: ids[i] },
            { credentials, ...deps },
          ),
        throttledOf: (i) =>
          fake.calls.filter((c) => c.params.InstanceId === ids[i] && c.status === 400 && c.action === 'TerminateInstanceInAutoScalingGroup')
            .length,
        close: () => fake.close(),
      };
    },
  },
  {
    name: 'gcp-mig (Compute Engine)',
    provider: 'gcp-mig',
    rate: DEFAULT_GCP_RATE,
    async start(clock, hosts) {
      const names = Array.from({ length: hosts }, (_, i) => `runner-${i}`);
      const fake = await startFakeGcp({ instanceName: names[0], moreInstances: names.slice(1), clock, targetSize: hosts });
      const group = 'projects/my-project/zones/us-central1-a/instanceGroupManagers/runners';
      return {
        providers: (deps, i) =>
          gcpMigProvider(
            {
              provider: 'gcp-mig',
              ...SLOW_SIM,
              metadataTimeoutSeconds: SLOW_SIM.timeoutSeconds,
              metadataEndpoint: fake.url,
              computeEndpoint: fake.url,
              project: 'my-project',
              zone: 'us-central1-a',
              instanceName: names[i],
              instanceGroupManager: group,
            },
            deps,
          ),
        throttledOf: (i) =>
          fake.calls.filter((c) => c.status === 429 && JSON.stringify(c.body).includes(`/instances/${names[i] as string}"`)).length,
        close: () => fake.close(),
      };
    },
  },
  {
    name: 'azure-vmss (Resource Manager)',
    provider: 'azure-vmss',
    rate: DEFAULT_AZURE_RATE,
    async start(clock, hosts) {
      const ids = Array.from({ length: hosts }, (_, i) => String(i));
      const fake = await startFakeAzure({ instanceId: ids[0], moreInstances: ids.slice(1), clock, capacity: hosts });
      const where = { subscriptionId: '00000000-1111-2222-3333-444444444444', resourceGroup: 'ci', scaleSet: 'runners' };
      return {
        providers: (deps, i) =>
          azureVmssProvider(
            {
              provider: 'azure-vmss',
              ...SLOW_SIM,
              imdsTimeoutSeconds: SLOW_SIM.timeoutSeconds,
              imdsEndpoint: fake.url,
              managementEndpoint: fake.url,
              ...where,
              instanceId: ids[i],
            },
            deps,
          ),
        throttledOf: (i) =>
          fake.calls.filter((c) => c.status === 429 && c.path.endsWith(`/virtualMachines/${ids[i] as string}/reimage`)).length,
        close: () => fake.close(),
      };
    },
  },
];

/**
 * Every host recycles at the same instant. The clock moves only when no host is between two
 * sleeps (a host's HTTP exchanges run in real time, its backoff on the simulated clock).
 */
async function fleetRecycle(
  cloud: RecycleCloud,
  seed: number,
): Promise<{ doneMs: number; boundMs: number; meanThrottled: number; maxThrottled: number; failed: number }> {
  const clock = new SimClock(Date.UTC(2026, 0, 1));
  let active = 0;
  const hostClock: Clock = {
    now: () => clock.now(),
    sleep: async (ms, signal) => {
      active--;
      try {
        await clock.sleep(ms, signal);
      } finally {
        active++;
      }
    },
  };
  const world = await cloud.start(clock, HOSTS);
  try {
    const master = seededRandom(seed * 104729);
    const t0 = clock.now();
    let doneAt = t0;
    let failed = 0;
    const runs: Promise<void>[] = [];
    for (let i = 0; i < HOSTS; i++) {
      // The same simulated instant for all (the clock stands still until every host is launched),
      // but a thousand connects in one real millisecond overflow the loopback listen queue (one
      // machine stands for a thousand here): a batch goes once the previous one is asleep or done.
      while (i % LAUNCH_BATCH === 0 && active > 0) await new Promise((r) => setTimeout(r, 5));
      // As wire.ts gives it: the host's place in the fleet (the provider sizes its slots from its API's rate).
      const place =
        PACING === 'jitter'
          ? undefined
          : fleetPlace(PACING === 'fleet' ? { size: HOSTS, index: i } : { size: HOSTS }, `host-${i}`, 'bench');
      const provider = world.providers(
        { clock: hostClock, random: seededRandom(Math.floor(master() * 2 ** 32)), ...(place ? { fleet: place } : {}) },
        i,
      );
      active++;
      runs.push(
        provider
          .recycle(
            {
              reason: 'runner-version-deprecated',
              host: `h${i}`,
              team: 'fleet',
              jobsServed: 1,
              at: new Date(t0).toISOString(),
              idempotencyKey: `h${i}:recycle`,
            },
            new AbortController().signal,
          )
          .then((r) => {
            if (!r.ok && failed++ === 0) console.log(`    first failure: ${r.detail}`);
            doneAt = Math.max(doneAt, clock.now());
          })
          .finally(() => active--),
      );
    }
    let settled = false;
    void Promise.all(runs).then(() => (settled = true));
    while (!settled) {
      // Wait until every host is asleep or done, then wake the next sleepers.
      for (let idle = 0; idle < 3 && !settled;) {
        await new Promise((r) => setTimeout(r, active > 0 ? 2 : 0));
        idle = active > 0 ? 0 : idle + 1;
      }
      const next = clock.nextDue();
      if (settled || next === undefined) break;
      clock.advanceTo(next + CLOCK_GRANULE_MS);
    }
    await Promise.all(runs);
    const throttled = Array.from({ length: HOSTS }, (_, i) => world.throttledOf(i));
    // A bucket admits its burst at once, then one call per 1/perSecond.
    const boundMs = Math.max(0, Math.ceil(((HOSTS - cloud.rate.burst) / cloud.rate.perSecond) * 1000));
    return {
      doneMs: doneAt - t0,
      boundMs,
      meanThrottled: throttled.reduce((a, b) => a + b, 0) / HOSTS,
      maxThrottled: Math.max(...throttled),
      failed,
    };
  } finally {
    await world.close();
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

async function printFleetRecycle(): Promise<void> {
  console.log(`fleet-wide recycle: ${HOSTS} hosts at once, each through its real provider against the fake cloud API's default rate`);
  for (const cloud of RECYCLE_CLOUDS.filter((c) => c.name.startsWith(args[3] ?? ''))) {
    const t = performance.now();
    const known = CLOUD_API_RATES[cloud.provider];
    if (known.burst !== cloud.rate.burst || known.perSecond !== cloud.rate.perSecond)
      console.log(`  NOTE: the provider sizes its slots for ${known.burst} at once, ${known.perSecond}/s; the fake enforces another rate`);
    const r = await fleetRecycle(cloud, SEED);
    const ratio = r.boundMs > 0 ? `ratio ${(r.doneMs / r.boundMs).toFixed(2)}` : 'the burst holds the fleet';
    const slots = PACING === 'jitter' ? '' : `; slot window ${(recycleWindowMs(HOSTS, known) / 1000).toFixed(0)} s`;
    console.log(
      `  ${cloud.name.padEnd(30)} rate ${cloud.rate.burst} at once, ${cloud.rate.perSecond}/s: every call accepted after ${(r.doneMs / 1000).toFixed(0)} s ` +
        `(bound ${(r.boundMs / 1000).toFixed(0)} s, ${ratio}${slots}); throttling answers per host mean ${r.meanThrottled.toFixed(2)}, max ${r.maxThrottled}` +
        `${r.failed > 0 ? `; ${r.failed} hosts NOT recycled` : ''} [${((performance.now() - t) / 1000).toFixed(0)} s wall]`,
    );
  }
}

function world0Window(): number {
  return githubSlots({ size: HOSTS, index: 0 }).windowMs;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const callsPerJob = 2; // generate-jitconfig + the spent registration's DELETE; the group id is cached
  const budgetRate = INSTALLATION_BUDGET / callsPerJob;
  console.log(
    `fleet: ${HOSTS} hosts on one App installation (${INSTALLATION_BUDGET}/h, ${POINTS_PER_MINUTE} points/min per endpoint), seed ${SEED}; ` +
      `retries paced by ${PACING === 'fleet' ? 'slots (fleet.size and fleet.index set)' : PACING === 'hashed' ? 'slots (fleet.size set, index from a hash of the host name)' : 'full jitter alone (no fleet section)'}` +
      (PACING === 'jitter' ? '' : `, window ${(world0Window() / 1000).toFixed(1)} s`),
  );
  if (PHASES === 'recycle') {
    await printFleetRecycle();
    return;
  }
  const world = await makeWorld(SEED);
  await boot(world);
  console.log(
    `  booted ${HOSTS} hosts (${(BOOT_SPREAD_MS / 60_000).toFixed(0)} min rollout) in ${((performance.now() - t0) / 1000).toFixed(0)} s of wall time`,
  );
  let best: { rate: number; jobsPerHour: number } | undefined;
  // Ascending: the first rate that meets a limit ends the search.
  for (const f of PHASES === 'outage' ? [] : [0.95, 0.97, 0.99, 1.0, 1.02]) {
    const rate = Math.round(budgetRate * f);
    const r = await steadyRun(world, rate);
    console.log(`  steady ${rate} jobs/h offered: ${r.jobsPerHour.toFixed(0)} jobs/h served, ${r.limitAnswers} limit answers`);
    if (r.limitAnswers > 0) break;
    best = { rate, jobsPerHour: r.jobsPerHour };
  }
  if (PHASES !== 'outage')
    console.log(
      `highest steady job rate with zero limit answers: ${best ? best.jobsPerHour.toFixed(0) : 'none'} jobs/h ` +
        `(bound of the installation budget: ${budgetRate} jobs/h, ratio ${best ? (best.jobsPerHour / budgetRate).toFixed(2) : '-'})`,
    );
  const o = await outageRun(world);
  console.log(
    `after a ${OUTAGE_MS / 60_000}-minute outage: every host registered again in ${(o.recoverMs / 1000).toFixed(0)} s; ` +
      `lower bound of the secondary limit ${(o.boundMs / 1000).toFixed(0)} s; ratio ${(o.recoverMs / o.boundMs).toFixed(2)} ` +
      `(target <= 1.20: ${o.recoverMs <= 1.2 * o.boundMs ? 'met' : 'NOT met'})`,
  );
  console.log(
    `  most secondary-limit answers of one host: ${o.maxSecondary} (target <= 1: ${o.maxSecondary <= 1 ? 'met' : 'NOT met'}; ` +
      `hosts with more than one: ${o.hostsWithTwo})`,
  );
  console.log(
    `  secondary answers: ${o.byCause.points} for points, ${o.byCause.concurrent} for concurrency; by endpoint: ${o.byEndpoint.map(([e, n]) => `${e} ${n}`).join(', ') || 'none'}`,
  );
  console.log(`  installation token mints per host in the last hour: ${o.mintsPerHostHour.toFixed(2)}`);
  await printFleetRecycle();
  const perHost = await memoryPerHost();
  console.log(`memory per simulated host (adapter, token cache, gate): ${(perHost / 1024).toFixed(1)} KiB of heap`);
  console.log(`wall time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

await main();
