/**
 * Lifecycle figures, against the runner simulator and the in-process fake API:
 *
 *   node --import tsx bench/lifecycle.ts [--jobs N] [--idle-seconds S] [--only ready|prefetch|idle]
 *
 * - ready: listener exit → next listener started, `_work` of 10,000 files, median, printed beside
 *   the JIT call alone measured against the same fake in the same run; GitHub calls per job.
 * - prefetch: the same with the fake's latency at 300 ms, with and without prefetch.
 * - idle: the agent (a real `runner-warden run` process) idle: RSS, and CPU time over S seconds.
 * Needs root (it makes a throwaway runner user, like the tests).
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createWorld, type World } from './lib/world.js';
import { Journal } from '../src/agent/journal.js';
import { loadHostConfig } from '../src/policy/load.js';
import { wire, type Runtime } from '../src/cli/wire.js';
import { createOctokitPort } from '../src/github/octokit.js';
import { systemClock } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/log.js';
import { waitForChild } from '../src/lib/process.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : def;
};
const JOBS = Number(opt('jobs', '7'));
const IDLE_SECONDS = Number(opt('idle-seconds', '60'));
const ONLY = opt('only', 'all');
const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/main.ts');
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/runner-warden.js');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

/** A job that leaves `files` small files in its workspace, as a build would. */
function fileJob(i: number, files: number): { repository: string; runId: number; job: string; steps: { name: string; run: string }[] } {
  return {
    repository: 'octo/app',
    runId: 1000 + i,
    job: `bench${i}`,
    steps: [{ name: 'make files', run: `mkdir -p out && cd out && seq 1 ${files} | xargs touch && echo made $(ls | wc -l)` }],
  };
}

/** Loads the world's host config and wires a runtime (not started), as `runner-warden run` does. */
async function runtime(w: World): Promise<Runtime> {
  return wire(await loadHostConfig(w.configFile, {}), {
    configFile: w.configFile,
    env: {},
    log: silentLogger(),
    clock: systemClock,
    hostname: 'benchhost',
  });
}

/** A fresh world whose runner user's home baseline is taken (the image step), ready to run jobs. */
async function baselinedWorld(o: Parameters<typeof createWorld>[0]): Promise<World> {
  const w = await createWorld(o);
  try {
    await w.baseline();
  } catch (err) {
    await w.dispose();
    throw err;
  }
  return w;
}

async function runJobs(w: World, jobs: number, files: number): Promise<{ readyMs: number[]; restCalls: number; jit: number }> {
  for (let i = 0; i < jobs; i++) w.fake.enqueueJob(fileJob(i, files));
  const rt = await runtime(w);
  const restBefore = w.fake.restCalls();
  const jitBefore = w.fake.restCalls({ path: /generate-jitconfig/ });
  const exit = await rt.agent.run(AbortSignal.timeout(300_000));
  await rt.close();
  if (exit.code !== 0) throw new Error(`agent exit ${exit.code}: ${exit.reason}`);
  const read = await new Journal({ dir: w.stateDir }).readAll();
  if (read.skipped.length > 0) throw new Error(`${read.skipped.length} torn journal lines`);
  const records = read.records;
  const readyMs = records
    .filter((r) => r.type === 'event' && r.event === 'listener-started')
    .map((r) => Number((r as { detail?: { sinceLastJobEndMs?: number } }).detail?.sinceLastJobEndMs))
    .filter((n) => Number.isFinite(n));
  const jobRecords = records.filter((r) => r.type === 'job');
  const bad = jobRecords.filter((r) => (r as { cleanup: { clean: boolean } }).cleanup.clean !== true);
  if (bad.length > 0) throw new Error(`${bad.length} jobs did not end clean`);
  return { readyMs, restCalls: w.fake.restCalls() - restBefore, jit: w.fake.restCalls({ path: /generate-jitconfig/ }) - jitBefore };
}

async function jitAlone(w: World, n: number): Promise<number[]> {
  const port = createOctokitPort({
    apiUrl: w.fake.url,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'token', token: w.fake.defaultToken },
    clock: systemClock,
    log: silentLogger(),
  });
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await port.generateJitConfig({ name: `alone-${i}`, labels: ['bench-only'], runnerGroupId: 1, workFolder: '_work' });
    times.push(performance.now() - t0);
    await port.deleteRunner(r.runner.id);
  }
  return times;
}

async function benchReady(): Promise<void> {
  const w = await baselinedWorld({ runner: { maxJobs: JOBS } });
  try {
    const r = await runJobs(w, JOBS, 10_000);
    const jit = median(await jitAlone(w, 15));
    const m = median(r.readyMs);
    console.log(`\n[ready] ${JOBS} jobs, 10,000 files each in _work, fake API in process, no latency`);
    console.log(
      `  listener exit → next listener started: median ${m.toFixed(0)} ms (n=${r.readyMs.length}: ${r.readyMs.join(', ')}) target ≤ 300 ms`,
    );
    console.log(`  JIT call alone (same fake, same run):  median ${jit.toFixed(1)} ms → ready is ${(m / jit).toFixed(1)}× one JIT call`);
    console.log(
      `  GitHub REST calls: ${r.restCalls} for ${JOBS} jobs (${r.jit} JIT + ${r.restCalls - r.jit} runner-group lookup at the first registration)`,
    );
    console.log(`  steady state: ${((r.restCalls - 1) / JOBS).toFixed(2)} calls per job (target exactly 1)`);
  } finally {
    await w.dispose();
  }
}

async function benchPrefetch(): Promise<void> {
  const results: Record<string, number> = {};
  for (const prefetch of [false, true]) {
    const w = await baselinedWorld({ runner: { maxJobs: JOBS, prefetch }, fake: { latencyMs: 300 } });
    try {
      const r = await runJobs(w, JOBS, 1_000);
      results[prefetch ? 'with' : 'without'] = median(r.readyMs);
      console.log(
        `  prefetch ${prefetch ? 'on ' : 'off'}: job end → next listener started median ${median(r.readyMs).toFixed(0)} ms (n=${r.readyMs.length}: ${r.readyMs.join(', ')}); REST calls ${r.restCalls}`,
      );
    } finally {
      await w.dispose();
    }
  }
  console.log(
    `[prefetch] fake API latency 300 ms: with prefetch ${results.with?.toFixed(0)} ms vs without ${results.without?.toFixed(0)} ms (${((results.with ?? 0) / (results.without ?? 1)).toFixed(2)}×); target with prefetch ≤ 500 ms`,
  );
}

async function procFigures(pid: number): Promise<{ rssKiB: number; cpuTicks: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssKiB: rss, cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

async function benchIdle(): Promise<void> {
  const w = await baselinedWorld({}); // the home baseline is the image build step
  try {
    // The production way: compiled JavaScript (npm run build), as the install script and images run it.
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: path.resolve(path.dirname(MAIN), '../..'), stdio: 'inherit' });
    const agent = spawn(process.execPath, [BIN, 'run', '--config', w.configFile], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TSX_DISABLE_CACHE: '1', RUNNER_WARDEN_LOG_LEVEL: 'warn' },
    });
    const pid = agent.pid as number;
    const stateFile = path.join(w.stateDir, 'state.json');
    for (let i = 0; i < 600; i++) {
      const s = await readFile(stateFile, 'utf8').catch(() => '');
      if (s.includes('"state": "idle"')) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 3_000)); // settle after start-up
    const a = await procFigures(pid);
    const selfA = process.cpuUsage();
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    const b = await procFigures(pid);
    const smaps = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    const selfB = process.cpuUsage(selfA);
    agent.kill('SIGTERM');
    await waitForChild(agent);
    const cpuS = (b.cpuTicks - a.cpuTicks) / 100;
    console.log(`\n[idle] runner-warden run, registered and idle, ${IDLE_SECONDS} s`);
    console.log(`  RSS ${(b.rssKiB / 1024).toFixed(1)} MiB (target ≤ 80 MiB)`);
    // RSS counts every page of node's own binary and shared libraries the process has touched
    // (shared with every other node process, and the part that varies from run to run); the
    // agent's own memory is the anonymous part.
    const kib = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(smaps)?.[1] ?? NaN) / 1024;
    console.log(
      `    of which anonymous (the agent's own heap and stacks) ${kib('Anonymous').toFixed(1)} MiB, shared file-backed (node binary, libraries) ${kib('Shared_Clean').toFixed(1)} MiB; PSS ${kib('Pss').toFixed(1)} MiB`,
    );
    console.log(
      `  CPU ${cpuS.toFixed(2)} s over ${IDLE_SECONDS} s (target ≤ 0.5 s over 60 s); this bench process itself used ${((selfB.user + selfB.system) / 1e6).toFixed(2)} s as a baseline of an idle node process`,
    );
    console.log(
      `  GitHub calls while idle: ${w.fake.restCalls({ path: /^(?!.*generate-jitconfig|.*runner-groups)/ }) - w.fake.restCalls({ method: 'DELETE' })} (no polling)`,
    );
  } finally {
    await w.dispose();
  }
}

if (ONLY === 'all' || ONLY === 'ready') await benchReady();
if (ONLY === 'all' || ONLY === 'prefetch') {
  console.log('\n[prefetch]');
  await benchPrefetch();
}
if (ONLY === 'all' || ONLY === 'idle') await benchIdle();
