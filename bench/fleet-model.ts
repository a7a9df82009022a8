/**
 * A fast model of bench/fleet.ts's outage figure (seconds instead of twenty minutes), to weigh
 * how a host spreads its retry after a secondary-limit answer. No HTTP and no adapter: the fake's
 * own SecondaryLimiter counts points, the registration loop backs off as the agent does
 * (lib/backoff.ts, DEFAULT_TIMEOUTS), network retries follow retry-policy.ts, and a host needs its
 * three calls in order (token mint, stale DELETE, generate-jitconfig). Run with the adapter's
 * policy it gives the same recovery as the full simulation (358 s for 1,000 hosts, seed 1).
 *
 * It prints, per spread, the recovery beside the limit's lower bound and how many hosts met the
 * limit more than once: the trade-off between the two targets. Then the same for hosts that come
 * back uniformly at the limit's own pace, which no host can do without knowing the fleet's size:
 * even then, independent random choices leave some windows over the limit, so a few hosts meet it
 * twice, and a spread wide enough to avoid that pushes the recovery past 1.2x.
 *
 * The last row (host i of N at its own slot) is what the agent does when the host config has a
 * `fleet` section (src/lib/fleet-slots.ts, src/github/fleet-pacing.ts, with a 5% margin where this
 * model has 2%); bench/fleet.ts prints the figures of the real code, this file only the model.
 *
 *   node --import tsx bench/fleet-model.ts [hosts=1000] [seed=1]
 */
import { SecondaryLimiter } from '../src/sim/github/secondary.js';
import { decideRetry, MAX_TRIES } from '../src/github/retry-policy.js';
import { backoffDelay, seededRandom, type RandomSource } from '../src/lib/backoff.js';
import { DEFAULT_TIMEOUTS } from '../src/agent/timeouts.js';

const HOSTS = Number(process.argv[2] ?? 1000);
const SEED = Number(process.argv[3] ?? 1);
const OUTAGE_MS = 10 * 60_000;
/** The three calls of a registration after an outage, each with its own points budget. */
const CALLS: [key: string, method: string, route: string][] = [
  ['app', 'POST', '/app/installations/{installation_id}/access_tokens'],
  ['installation', 'DELETE', '/orgs/{org}/actions/runners/{runner_id}'],
  ['installation', 'POST', '/orgs/{org}/actions/runners/generate-jitconfig'],
];

/** How a refused host picks its wait from the answer's retry-after (ms). */
type Spread = (retryAfterMs: number, random: RandomSource, attempt: number, now: number) => number;

interface Host {
  random: RandomSource;
  gate: number;
  step: number;
  attempt: number;
  failures: number;
  refusals: number;
  doneAt: number;
}

/**
 * `arrival`: instead of the agent's backoff through the outage, host `i` makes its first call at
 * the time this returns (what a host knowing the fleet's size, or its own slot in it, could do).
 */
function run(
  spread: Spread,
  arrival?: (i: number, random: RandomSource) => number,
): { recoverMs: number; twice: number; most: number; answers: number } {
  let now = 0;
  const queue: { at: number; host: Host }[] = [];
  const limiter = new SecondaryLimiter({ now: () => now, sleep: async () => {} });
  const registerBackoff = { baseMs: DEFAULT_TIMEOUTS.registerBackoffBaseMs, maxMs: DEFAULT_TIMEOUTS.registerBackoffMaxMs };
  const later = (host: Host, at: number): void => {
    queue.push({ at, host });
  };
  const giveUp = (h: Host): void => {
    h.attempt = 0;
    h.failures++;
    later(h, now + backoffDelay(h.failures - 1, registerBackoff, h.random));
  };
  const call = (h: Host): void => {
    if (now < h.gate) return later(h, h.gate);
    h.attempt++;
    if (now < OUTAGE_MS) {
      const d = decideRetry({ network: true, headers: {}, attempt: h.attempt, now, random: h.random });
      return d.retry ? later(h, now + d.waitMs) : giveUp(h);
    }
    const [key, method, route] = CALLS[h.step] as [string, string, string];
    const refused = limiter.charge(key, method, route);
    if (!refused) {
      h.attempt = 0;
      if (++h.step === CALLS.length) h.doneAt = now;
      else call(h);
      return;
    }
    h.refusals++;
    // As the adapter: after MAX_TRIES the error goes to the registration loop, which backs off.
    // The mint runs inside the auth hook of the call that needed a token, whose own retry hook
    // tries that call again: a refused mint gets MAX_TRIES tries MAX_TRIES times.
    if (h.attempt >= (h.step === 0 ? MAX_TRIES * MAX_TRIES : MAX_TRIES)) return giveUp(h);
    h.gate = Math.max(h.gate, now + spread(Number(refused.headers?.['retry-after']) * 1000, h.random, h.attempt, now));
    later(h, h.gate);
  };
  const master = seededRandom(SEED);
  const notice = seededRandom(SEED * 31);
  const hosts: Host[] = [];
  for (let i = 0; i < HOSTS; i++) {
    const h: Host = {
      random: seededRandom(Math.floor(master() * 2 ** 32)),
      gate: 0,
      step: 0,
      attempt: 0,
      failures: 0,
      refusals: 0,
      doneAt: 0,
    };
    hosts.push(h);
    later(h, arrival === undefined ? Math.floor(notice() * 60_000) : arrival(i, h.random));
  }
  while (queue.length > 0) {
    queue.sort((a, b) => a.at - b.at);
    const next = queue.shift() as { at: number; host: Host };
    now = next.at;
    call(next.host);
  }
  return {
    recoverMs: Math.max(...hosts.map((h) => h.doneAt)) - OUTAGE_MS,
    twice: hosts.filter((h) => h.refusals > 1).length,
    most: Math.max(...hosts.map((h) => h.refusals)),
    answers: hosts.reduce((s, h) => s + h.refusals, 0),
  };
}

const adapter: Spread = (retryAfterMs, random, attempt, now) => {
  // The attempt number within one call of the adapter (the mint's nested tries start over).
  const inner = ((attempt - 1) % MAX_TRIES) + 1;
  const d = decideRetry({
    status: 403,
    headers: { 'retry-after': retryAfterMs / 1000 },
    message: 'You have exceeded a secondary rate limit',
    attempt: inner,
    now,
    random,
  });
  return d.retry ? d.waitMs : 0;
};
const uniform =
  (extraMs: number): Spread =>
  (r, random) =>
    r + Math.floor(random() * extraMs);
/** Over the time in which the full window's charges leave it ([retry-after, 60 s]), plus `extraMs`. */
const whileItFrees =
  (extraMs: number): Spread =>
  (r, random) =>
    r + Math.floor(random() * (Math.max(0, 60_000 - r) + extraMs));

const boundMs = Math.floor((HOSTS - 1) / 180) * 60_000;
console.log(`model of the outage recovery: ${HOSTS} hosts, seed ${SEED}; lower bound of the secondary limit ${boundMs / 1000} s`);
console.log(`${'spread after a secondary-limit answer'.padEnd(52)} recovery  ratio  hosts >1  most  answers`);
const rows: [string, Spread][] = [
  ['the adapter (retry-after + [0, max(retry-after, 60 s)])', adapter],
  ['retry-after + [0, 60 s]', uniform(60_000)],
  ['retry-after + [0, 120 s]', uniform(120_000)],
  ['retry-after + [0, 300 s]', uniform(300_000)],
  ['while the window frees ([retry-after, 60 s])', whileItFrees(0)],
  ['while the window frees, + [0, 40 s]', whileItFrees(40_000)],
];
for (const [name, spread] of rows) {
  const r = run(spread);
  console.log(
    `${name.padEnd(52)} ${(r.recoverMs / 1000).toFixed(0).padStart(6)} s  ${(r.recoverMs / boundMs).toFixed(2).padStart(5)}  ${String(r.twice).padStart(8)}  ${String(r.most).padStart(4)}  ${String(r.answers).padStart(7)}`,
  );
}

// What a host told the fleet's size could do: come back uniformly at the limit's pace, or 10% slower.
for (const slack of [1, 1.1]) {
  const paceMs = Math.round((HOSTS / 180) * 60_000 * slack);
  console.log(`if every host came back uniformly within ${(paceMs / 1000).toFixed(0)} s of the outage's end (needs the fleet's size):`);
  for (const w of [30, 60]) {
    const r = run(uniform(w * 1000), (_i, random) => OUTAGE_MS + Math.floor(random() * paceMs));
    console.log(
      `${`  retry-after + [0, ${w} s]`.padEnd(52)} ${(r.recoverMs / 1000).toFixed(0).padStart(6)} s  ${(r.recoverMs / boundMs).toFixed(2).padStart(5)}  ${String(r.twice).padStart(8)}  ${String(r.most).padStart(4)}  ${String(r.answers).padStart(7)}`,
    );
  }
}

// A shared order instead of chance: host i of N polls, through the outage, at the phase i x slot of
// a cycle of N slots, a slot 2% longer than one registration's share of the limit (60 s / 180).
const slotMs = (60_000 / 180) * 1.02;
const cycleMs = HOSTS * slotMs;
const slotted = run(uniform(30_000), (i) => OUTAGE_MS + ((((i * slotMs - OUTAGE_MS) % cycleMs) + cycleMs) % cycleMs));
console.log(
  `if host i of ${HOSTS} polled at its own slot (${slotMs.toFixed(0)} ms) of a ${(cycleMs / 1000).toFixed(0)} s cycle (needs its index and the fleet's size):`,
);
console.log(
  `${'  retry-after + [0, 30 s]'.padEnd(52)} ${(slotted.recoverMs / 1000).toFixed(0).padStart(6)} s  ${(slotted.recoverMs / boundMs).toFixed(2).padStart(5)}  ${String(slotted.twice).padStart(8)}  ${String(slotted.most).padStart(4)}  ${String(slotted.answers).padStart(7)}`,
);
