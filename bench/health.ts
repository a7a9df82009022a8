/**
 * Health endpoint figures: requests/s and p99 latency of /healthz and /metrics on
 * loopback, against a bare node:http server answering "ok" measured in the same run; the same
 * while a 200,000-file tree is wiped by `rm -rf` in a child process; and RSS growth of the server
 * over 100,000 requests.
 *
 *   node --import tsx bench/health.ts            (about two minutes; most of it creating the trees)
 *   node --import tsx bench/health.ts --quick    (20,000-file trees, 20,000 requests for RSS)
 *
 * Targets: /healthz ≥ 5,000 req/s, /metrics ≥ 1,000 req/s, p99 ≤ 10 ms, also during the wipe;
 * RSS growth ≤ 5 MiB. Servers run in child processes (with --expose-gc, so RSS is read after a
 * collection), the load generator (autocannon) in this one; the machine's cores are shared by
 * both, so the figures are lower bounds for a host where the agent runs alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { closeSync, linkSync, mkdirSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';

const SELF = fileURLToPath(import.meta.url);
const QUICK = process.argv.includes('--quick');
const REAL_FILES = process.argv.includes('--real-files');
/** Connections the load generator keeps open: well under the server's cap of 64. */
const CONNECTIONS = 10;
/** Seconds per idle measurement: long enough for a stable average on a shared machine. */
const DURATION_S = 5;
const TREE_FILES = QUICK ? 20_000 : 200_000;
const RSS_REQUESTS = QUICK ? 20_000 : 100_000;
/** Requests before the first memory reading: JIT, connection pools and allocator arenas settle. */
const WARMUP_REQUESTS = 20_000;
const TARGETS = { healthzRps: 5000, metricsRps: 1000, p99Ms: 10, rssGrowthMiB: 5 };

// ───────────────────────────── child: the servers under test ─────────────────────────────

type ToParent = { port: number } | { rss: number; heap: number };
type ToChild = { cmd: 'rss' };

async function serve(kind: string): Promise<void> {
  let port: number;
  const stop = new AbortController();
  if (kind === 'bare') {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 3 });
      res.end('ok\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  } else {
    const { AgentMetrics } = await import('../src/health/metrics.js');
    const { startHealthServer } = await import('../src/health/server.js');
    const metrics = new AgentMetrics({ version: '0.1.0', recycleProviders: ['aws-asg', 'shutdown'] });
    const running = metrics.run(stop.signal);
    // A host that has served a few jobs: every family has series, like a real scrape.
    const steps = ['processes', 'cgroup', 'workdir', 'temp', 'credentials', 'home', 'docker', 'job-root'];
    for (let i = 0; i < 20; i++) {
      metrics.setState(i % 2 ? 'idle' : 'job-running');
      metrics.jobEnded(i % 5 ? 'succeeded' : 'failed', 60 + i * 30);
      metrics.cleanupReported({
        steps: steps.map((name, k) => ({
          name,
          outcome: 'ok' as const,
          durationMs: 10 + k * 50,
          removed: { file: { count: 100 * k, bytes: 4096 * k }, process: { count: k % 3, bytes: 0 } },
        })),
        verify: { clean: true, durationMs: 80, problems: [] },
        clean: true,
        readyMs: 1500,
      });
      metrics.listenerExited(0);
      metrics.githubRequest('POST /orgs/{org}/actions/runners/generate-jitconfig', 201);
      metrics.timeToReady(20 + i);
    }
    metrics.rateLimitRemaining(4800);
    metrics.policyReload('ok');
    metrics.hostFigures({
      cpuLoadPercent: 10,
      memUsedPercent: 30,
      workFsFreeBytes: 5e10,
      workFsFreeInodes: 3e6,
      workFsFreePercent: 60,
      workFsFreeInodesPercent: 80,
    });
    const started = new Date().toISOString();
    const snapshot = {
      state: 'idle',
      stateSince: started,
      loopAlive: true,
      quarantined: false,
      runner: { name: 'rw-bench-0001', id: 42, labels: ['self-hosted', 'linux', 'x64'] },
      jobsServed: 20,
      lastJob: {
        repository: 'octo/app',
        workflow: 'ci',
        job: 'build',
        result: 'succeeded',
        cleanup: { clean: true, readyMs: 1500, removed: { file: 2800, process: 7 }, problems: [] },
        decision: 'reuse',
      },
      policy: { team: 'default', file: '/etc/runner-warden/policies/default.yaml', version: 'v1' },
      host: { cpuLoadPercent: 10, memUsedPercent: 30, workFsFreeBytes: 5e10, workFsFreePercent: 60, updatedAt: started },
      agent: { version: '0.1.0', pid: process.pid, startedAt: started, uptimeSeconds: 1 },
    };
    // The scrub runs on every response, as in the agent (its token and the current JIT config).
    const secrets = ['ghp_BenchToken0123456789abcdefghijklmnopqr', Buffer.from('x'.repeat(600)).toString('base64')];
    // health-uncached: a metric changes before every render, so no scrape can reuse the last
    // output (the worst case; a real agent changes metrics a few times per job).
    let tick = 0;
    const source =
      kind === 'health-uncached'
        ? { contentType: metrics.contentType, render: () => (metrics.rateLimitRemaining(++tick), metrics.render()) }
        : metrics;
    const server = await startHealthServer({ listen: '127.0.0.1:0', snapshot: () => snapshot, metrics: source, secrets: () => secrets });
    port = server.address.port;
    process.on('disconnect', () => {
      stop.abort();
      void running.then(() => server.close());
    });
  }
  process.on('message', (m: ToChild) => {
    if (m.cmd === 'rss') {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      const m = process.memoryUsage();
      send({ rss: m.rss, heap: m.heapUsed });
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ port });
}

function send(m: ToParent): void {
  process.send?.(m);
}

// ───────────────────────────── parent: load and figures ─────────────────────────────

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  duration: number;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  stop(): void;
}
type Autocannon = (opts: Record<string, unknown>) => AutocannonInstance;
// autocannon ships no types; this is the part of its programmatic API used here.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

interface Server {
  child: ChildProcess;
  port: number;
  /** RSS and V8 heap in use, after two full collections in the server. */
  memory(): Promise<{ rss: number; heap: number }>;
  stop(): Promise<void>;
}

async function startServer(kind: 'bare' | 'health' | 'health-uncached'): Promise<Server> {
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', SELF, '--serve', kind], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: ToParent) => ('port' in m ? resolve(m.port) : reject(new Error('no port'))));
    child.once('exit', (code) => reject(new Error(`${kind} server exited with ${code}`)));
  });
  return {
    child,
    port,
    memory: () =>
      new Promise<{ rss: number; heap: number }>((resolve) => {
        child.once('message', (m: ToParent) => 'rss' in m && resolve(m));
        child.send({ cmd: 'rss' } satisfies ToChild);
      }),
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.disconnect();
      }),
  };
}

interface Figures {
  rps: number;
  p50: number;
  p99: number;
  max: number;
  total: number;
  bad: number;
  seconds: number;
}

/** Loads one path as fast as CONNECTIONS connections go, for a duration, an amount, or `until`. */
async function load(
  port: number,
  urlPath: string,
  opts: { duration?: number; amount?: number; until?: Promise<unknown> } = {},
): Promise<Figures> {
  const inst = autocannon({
    url: `http://127.0.0.1:${port}${urlPath}`,
    connections: CONNECTIONS,
    pipelining: 1,
    ...(opts.amount ? { amount: opts.amount } : { duration: opts.duration ?? DURATION_S }),
  });
  void opts.until?.then(() => inst.stop());
  const r = await inst;
  return {
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    max: r.latency.max,
    total: r.requests.total,
    bad: r.non2xx + r.errors + r.timeouts,
    seconds: r.duration,
  };
}

/**
 * Makes a tree of `files` entries in directories of 1,000. By default each directory holds one
 * real file and 999 hard links to it: file creation is very slow on this VM's filesystem (about
 * 0.7 ms of kernel time per inode, so 200,000 real files take minutes), while `rm -rf` still has
 * to read every directory and unlink every entry, which is the load a wipe puts on the host.
 * `--real-files` creates real inodes instead (slow).
 */
async function makeTree(root: string, files: number): Promise<number> {
  const t0 = Date.now();
  // Synchronous on purpose: nothing is being measured while the tree is made.
  mkdirSync(root);
  for (let d = 0; d < Math.ceil(files / 1000); d++) {
    const dir = path.join(root, `d${d}`);
    mkdirSync(dir);
    const first = path.join(dir, 'f0');
    closeSync(openSync(first, 'w'));
    for (let f = 1; f < Math.min(1000, files - d * 1000); f++) {
      const name = path.join(dir, `f${f}`);
      if (REAL_FILES) closeSync(openSync(name, 'w'));
      else linkSync(first, name);
    }
  }
  return (Date.now() - t0) / 1000;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'inherit' });
    c.once('error', reject);
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}`))));
  });
}

/** Starts `rm -rf tree` in a child process; resolves with its wall time when it is done. */
function wipe(tree: string): Promise<number> {
  const t0 = Date.now();
  return run('rm', ['-rf', '--one-file-system', tree]).then(() => (Date.now() - t0) / 1000);
}

const fmt = (n: number, d = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const verdict = (ok: boolean): string => (ok ? 'ok' : 'MISSED');

function row(name: string, f: Figures, base?: Figures, targetRps?: number): void {
  const ratio = base ? `  ${fmt(f.rps / base.rps, 2)}× bare` : '';
  const target =
    targetRps !== undefined
      ? `  [target ≥ ${fmt(targetRps)}/s: ${verdict(f.rps >= targetRps)}; p99 ≤ ${TARGETS.p99Ms} ms: ${verdict(f.p99 <= TARGETS.p99Ms)}]`
      : '';
  const bad = f.bad > 0 ? `  (${f.bad} errors/non-2xx!)` : '';
  console.log(
    `${name.padEnd(34)} ${fmt(f.rps).padStart(7)} req/s  p50 ${fmt(f.p50, 1)} ms  p99 ${fmt(f.p99, 1)} ms  max ${fmt(f.max)} ms  (${fmt(f.total)} in ${fmt(f.seconds, 1)} s)${ratio}${target}${bad}`,
  );
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-bench-health-'));
  const bare = await startServer('bare');
  const health = await startServer('health');
  const uncachedServer = await startServer('health-uncached');
  try {
    console.log(`health endpoint bench: ${CONNECTIONS} connections, loopback, ${os.cpus().length} cores (shared with the load generator)`);
    await load(bare.port, '/', { duration: 1 }); // warm-up
    await load(health.port, '/metrics', { duration: 1 });
    const base = await load(bare.port, '/');
    row('bare node:http "ok"', base);
    const healthz = await load(health.port, '/healthz');
    row('/healthz', healthz, base, TARGETS.healthzRps);
    const metrics = await load(health.port, '/metrics');
    row('/metrics', metrics, base, TARGETS.metricsRps);
    const status = await load(health.port, '/status');
    row('/status', status, base);
    await load(uncachedServer.port, '/metrics', { duration: 1 });
    const uncached = await load(uncachedServer.port, '/metrics');
    row('/metrics uncached (change each)', uncached, base, TARGETS.metricsRps);

    console.log(`\nduring a wipe: creating trees of ${fmt(TREE_FILES)} files in ${root} ...`);
    const treeA = path.join(root, 'a');
    const treeB = path.join(root, 'b');
    const made = (await makeTree(treeA, TREE_FILES)) + (await makeTree(treeB, TREE_FILES));
    console.log(`created in ${fmt(made, 1)} s`);
    // Each run lasts exactly as long as its wipe.
    const wipeA = wipe(treeA);
    const hzWipe = await load(health.port, '/healthz', { duration: 60, until: wipeA });
    const rmA = await wipeA;
    row(`/healthz during rm -rf (${fmt(rmA, 1)} s)`, hzWipe, base, TARGETS.healthzRps);
    console.log(`${''.padEnd(34)} ${fmt(hzWipe.rps / healthz.rps, 2)}× /healthz idle`);
    const wipeB = wipe(treeB);
    const mWipe = await load(health.port, '/metrics', { duration: 60, until: wipeB });
    const rmB = await wipeB;
    row(`/metrics during rm -rf (${fmt(rmB, 1)} s)`, mWipe, base, TARGETS.metricsRps);
    console.log(`${''.padEnd(34)} ${fmt(mWipe.rps / metrics.rps, 2)}× /metrics idle`);
    const treeC = path.join(root, 'c');
    console.log(`(third tree, for /metrics with a change before each render: ${fmt(await makeTree(treeC, TREE_FILES), 1)} s)`);
    const wipeC = wipe(treeC);
    const uWipe = await load(uncachedServer.port, '/metrics', { duration: 60, until: wipeC });
    const rmC = await wipeC;
    row('/metrics uncached during rm -rf', uWipe, base, TARGETS.metricsRps);
    console.log(`${''.padEnd(34)} ${fmt(uWipe.rps / uncached.rps, 2)}× the same idle (rm -rf took ${fmt(rmC, 1)} s)`);

    console.log(`\nmemory over ${fmt(RSS_REQUESTS)} requests, fresh servers after a ${fmt(WARMUP_REQUESTS)}-request warm-up,`);
    console.log('measured after full collections (health: a quarter each to /healthz, /readyz, /status, /metrics):');
    const mix = async (srv: Server, kind: 'bare' | 'health', total: number): Promise<void> => {
      const paths = kind === 'health' ? ['/healthz', '/readyz', '/status', '/metrics'] : ['/'];
      for (const p of paths) await load(srv.port, p, { amount: total / paths.length });
    };
    for (const kind of ['health', 'bare'] as const) {
      const srv = await startServer(kind);
      try {
        await mix(srv, kind, WARMUP_REQUESTS);
        const m0 = await srv.memory();
        // RSS after each quarter shows whether growth goes on (a leak) or levels off (warm-up).
        const steps: number[] = [];
        for (let q = 0; q < 4; q++) {
          await mix(srv, kind, RSS_REQUESTS / 4);
          steps.push((await srv.memory()).rss);
        }
        const m1 = await srv.memory();
        const growth = (m1.rss - m0.rss) / 1048576;
        const target =
          kind === 'health' ? ` [target ≤ ${TARGETS.rssGrowthMiB} MiB: ${verdict(growth <= TARGETS.rssGrowthMiB)}]` : ' (baseline)';
        console.log(
          `${(kind === 'health' ? 'health server' : 'bare server').padEnd(14)} RSS ${fmt(m0.rss / 1048576, 1)} → ` +
            `${steps.map((r) => fmt(r / 1048576, 1)).join(' → ')} MiB: growth ${fmt(growth, 2)} MiB; ` +
            `heap ${fmt(m0.heap / 1048576, 1)} → ${fmt(m1.heap / 1048576, 1)} MiB${target}`,
        );
      } finally {
        await srv.stop();
      }
    }
  } finally {
    await Promise.all([bare.stop(), health.stop(), uncachedServer.stop()]);
    await rm(root, { recursive: true, force: true });
  }
}

const serveAt = process.argv.indexOf('--serve');
if (serveAt >= 0) await serve(process.argv[serveAt + 1] ?? 'health');
else await main();
