/**
 * Figure behind docs/decisions.md, "Hand-written GitHub retries, not Octokit's plugins": how a fleet
 * that GitHub refused at the same moment comes back. A local server answers every host's first
 * request with the same refusal, then 200; each host is one Octokit client making one call at the
 * same instant. Measured per rule set, in the same run:
 * - baseline: the agent's hook (src/github/request-hooks.ts with retry-policy.ts, full jitter);
 * - plugins: @octokit/plugin-retry + @octokit/plugin-throttling, retrying every refusal.
 * Printed: how the hosts' retries spread (first to last arrival, and the most arrivals in any
 * 250 ms window: the burst the server sees), requests sent per call, and calls that failed.
 * Scenarios: a 502 (server error) and a primary rate limit whose reset is 2 s away.
 *
 *   node --import tsx bench/octokit-retry.ts [hosts=50]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Octokit } from '@octokit/rest';
import { retry } from '@octokit/plugin-retry';
import { throttling } from '@octokit/plugin-throttling';
import { installRetryHook } from '../src/github/request-hooks.js';
import { HostGate } from '../src/github/host-gate.js';
import { systemClock } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/log.js';

/** Hosts refused at once; a pool of a few dozen runners behind one installation is common. */
const HOSTS = Number(process.argv[2] ?? 50);
/** The window in which arrivals count as one burst: about one round trip to GitHub and back. */
const BURST_WINDOW_MS = 250;
/** How far the reset of the rate-limit scenario lies: short, so the run takes seconds. */
const RESET_IN_S = 2;

type Scenario = '502' | 'rate-limit';

interface Server {
  url: string;
  arrivals: number[];
  close(): Promise<void>;
}

/** Refuses each client's first request (keyed by its user agent), then answers 200. */
async function refusingServer(scenario: Scenario, resetAtS: number): Promise<Server> {
  const seen = new Set<string>();
  const arrivals: number[] = [];
  const server = http.createServer((req, res) => {
    const who = req.headers['user-agent'] ?? '';
    if (!seen.has(who)) {
      seen.add(who);
      if (scenario === '502') {
        res.writeHead(502, { 'content-type': 'application/json' }).end('{"message":"Server Error"}');
      } else {
        res
          .writeHead(403, { 'content-type': 'application/json', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(resetAtS) })
          .end('{"message":"API rate limit exceeded"}');
      }
      return;
    }
    arrivals.push(performance.now());
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"total_count":0,"runners":[]}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    arrivals,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function handWritten(url: string, i: number): Octokit {
  const octokit = new Octokit({ baseUrl: url, userAgent: `host-${i}`, request: { retries: 0 }, log: quiet });
  installRetryHook(octokit, { clock: systemClock, log: silentLogger(), gate: new HostGate(systemClock) });
  return octokit;
}

const PluginOctokit = Octokit.plugin(retry, throttling);
function plugins(url: string, i: number): Octokit {
  return new PluginOctokit({
    baseUrl: url,
    userAgent: `host-${i}`,
    log: quiet,
    throttle: { onRateLimit: () => true, onSecondaryRateLimit: () => true },
  });
}

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

interface Figures {
  spreadMs: number;
  burst: number;
  failed: number;
  seconds: number;
}

async function run(scenario: Scenario, make: (url: string, i: number) => Octokit): Promise<Figures> {
  const resetAtS = Math.ceil(Date.now() / 1000) + RESET_IN_S;
  const server = await refusingServer(scenario, resetAtS);
  const clients = Array.from({ length: HOSTS }, (_, i) => make(server.url, i));
  const t0 = performance.now();
  const results = await Promise.allSettled(clients.map((c) => c.request('GET /orgs/{org}/actions/runners', { org: 'acme' })));
  const seconds = (performance.now() - t0) / 1000;
  for (const r of results) if (r.status === 'rejected' && process.env.DEBUG) console.error(r.reason);
  await server.close();
  const a = [...server.arrivals].sort((x, y) => x - y);
  let burst = 0;
  for (let i = 0, j = 0; i < a.length; i++) {
    while ((a[i] ?? 0) - (a[j] ?? 0) > BURST_WINDOW_MS) j++;
    burst = Math.max(burst, i - j + 1);
  }
  return {
    spreadMs: a.length > 1 ? (a.at(-1) ?? 0) - (a[0] ?? 0) : 0,
    burst,
    failed: results.filter((r) => r.status === 'rejected').length,
    seconds,
  };
}

const ratio = (x: number, base: number): string => (base === 0 ? 'n/a' : `${(x / base).toFixed(2)}x`);
console.log(`octokit-retry: ${HOSTS} hosts refused at once, then served; burst = most retries within ${BURST_WINDOW_MS} ms`);
for (const scenario of ['502', 'rate-limit'] as const) {
  const base = await run(scenario, handWritten);
  const plug = await run(scenario, plugins);
  for (const [name, f] of [
    ['hand-written (baseline)', base],
    ['octokit plugins', plug],
  ] as const) {
    console.log(
      `${scenario.padEnd(10)} ${name.padEnd(24)} spread ${f.spreadMs.toFixed(0).padStart(5)} ms  burst ${String(f.burst).padStart(3)}/${HOSTS}` +
        ` (${ratio(f.burst, base.burst)} of baseline)  failed ${f.failed}  took ${f.seconds.toFixed(1)} s`,
    );
  }
}
