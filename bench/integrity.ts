/**
 * The whole-host integrity check with the default policy (figure: ≤ 300 ms median on a stock
 * Debian image), printed beside `find -printf` of the same file trees in the same run (ratio ≤ 2),
 * and job end → host ready with the check included and 200,000 files in `_work` (≤ 1.0 s).
 *
 *   node --import tsx bench/integrity.ts [--runs N] [--rounds N] [--stock-cache DIR] [--no-live] [--only check|ready|memory]
 *
 * Four measurements, each labelled:
 * - a stock Debian root (bench/lib/stock-root.ts: debootstrap, built once and cached): the file
 *   surfaces, the account databases and the package set are read under that root through the
 *   check's `root` prefix. The kernel and network surfaces (modules, mounts, netfilter, routes,
 *   sysctls, listeners, processes) have no root prefix: they are this live machine's, whatever
 *   runs on it, and so is their cost.
 * - this live machine as it is (root `/`): a development host, not a stock image.
 * - job end → ready: what the agent runs after a job (src/agent/settle.ts): the guards' release
 *   (the sudo grant, the subordinate-id sweep), every cleanup step and the cleanup verification of a
 *   `_work` of 200,000 small files, then the guards' verification (the sudo rights, the integrity
 *   check of the stock root with this machine's kernel state). Printed beside the same path without
 *   the guards, measured in the same rounds.
 * - memory: the resident size (RSS) of a fresh process of its own, idle, after taking a baseline,
 *   and after checks against it (the baseline kept loaded, as the agent keeps it), for the stock
 *   root and (without --no-live) this live machine, whose /root holds toolchains.
 * The check also reads kernel and network state, which find cannot: the whole check and its file
 * walk alone are both shown against find. A baseline is taken into a temporary state directory;
 * nothing is changed on the host or in the stock root.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_POLICY } from '../src/policy/types.js';
import { silentLogger } from '../src/lib/log.js';
import { IntegrityGuard } from '../src/integrity/guard.js';
import { takeSystemBaseline } from '../src/integrity/system-baseline.js';
import { treeSurfaces, exceptionPatterns } from '../src/integrity/surfaces.js';
import { walkTrees } from '../src/integrity/walk.js';
import { readAccounts } from '../src/integrity/accounts.js';
import { GlobSet } from '../src/integrity/glob.js';
import { SudoGuard } from '../src/integrity/sudo-guard.js';
import { agentExclusions } from '../src/integrity/surfaces.js';
import { createLab, runAs } from '../src/sim/lab.js';
import { defaultSteps, runCleanup } from '../src/cleanup/pipeline.js';
import { verify } from '../src/cleanup/verify.js';
import { takeBaseline } from '../src/cleanup/baseline.js';
import { takeInstallManifest } from '../src/cleanup/install-manifest.js';
import { installSimulatedRunner } from '../src/sim/runner/install.js';
import { Trash } from '../src/cleanup/trash.js';
import type { CleanupContext, Slot } from '../src/cleanup/types.js';
import type { GuardJob, JobGuard } from '../src/lib/job-guard.js';
import type { Policy } from '../src/policy/types.js';
import { systemClock } from '../src/lib/clock.js';
import { stockRoot } from './lib/stock-root.js';

const run = promisify(execFile);
const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(arg('--runs') ?? 9);
const ROUNDS = Number(arg('--rounds') ?? 3);
const ONLY = arg('--only');
/** Files in `_work` for the job end → ready figure (its target: ≤ 1.0 s). */
const BIG_WORK = 200_000;
/** The agent's own directories, left out of every walk as the agent leaves them out (host view). */
const AGENT_DIRS = ['/opt/actions-runner', '/var/lib/runner-warden'];

/** CPU time of this process's waited-for children (cutime + cstime of /proc/self/stat), in ms. */
function childCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[13]) + Number(f[14])) * 1000) / CLOCK_TICKS;
}
/** USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** The system baseline of `root` with the default policy, as the agent takes it (the bench's own pid skipped). */
async function defaultBaseline(root: string, stateDir: string) {
  const policy = structuredClone(DEFAULT_POLICY);
  const user = { name: 'nobody', uid: 65534 };
  const excluded = [...AGENT_DIRS, stateDir];
  const b = await takeSystemBaseline({
    root,
    stateDir,
    surfaces: policy.host.integrity.surfaces,
    exceptions: exceptionPatterns(policy.host.integrity),
    excluded,
    user,
    skipPids: [process.pid],
  });
  return { b, user, excluded, policy };
}

/** The check of `root`, its walk alone and find, alternated RUNS times; one labelled block of output. */
async function measure(label: string, root: string, about: string[]): Promise<{ check: number; find: number }> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'rw-bench-integrity-'));
  try {
    const { b, user, excluded, policy } = await defaultBaseline(root, stateDir);
    const guard = new IntegrityGuard({ root, stateDir, excluded, user, skipPids: [process.pid] });
    const ctx = { log: silentLogger(), signal: AbortSignal.timeout(600_000) };
    // The same trees the check walks, for find and for the walk alone.
    const { users } = readAccounts(root);
    const trees = treeSurfaces(
      new Set(policy.host.integrity.surfaces),
      users.map((u) => u.home).filter((h) => h.startsWith('/')),
    );
    const patterns = exceptionPatterns(policy.host.integrity);
    const ex = new GlobSet(patterns);
    const prune = (p: string): boolean => ex.matches(p) && ex.matches(`${p}/\u0001`) && ex.matches(`${p}/\u0001/\u0001`);
    const real = (p: string): string => (root === '/' ? p : path.join(root, p));
    // find would walk /bin and /sbin again through their symlinks on merged-usr roots: the check walks each once.
    const findArgs = [...new Set(trees.flatMap((t) => t.paths))].filter((p) => !/^\/(bin|sbin|lib)(\/|$)/.test(p)).map(real);
    const prunes = [
      ...new Set([...patterns.filter((e) => e.startsWith('/') && e.endsWith('/**')).map((e) => e.slice(0, -3)), ...excluded]),
    ];
    const pruneExpr = prunes.flatMap((p, i) => [...(i ? ['-o'] : []), '-path', real(p)]);
    const check: number[] = [];
    const checkCpu: number[] = [];
    const walk: number[] = [];
    const find: number[] = [];
    const findCpu: number[] = [];
    let drift: string[] = [];
    let files = 0;
    for (let i = 0; i < RUNS; i++) {
      let t = performance.now();
      const cpu0 = process.cpuUsage();
      drift = (await guard.verify(undefined, policy, ctx)).map((f) => f.problem);
      check.push(performance.now() - t);
      const cpu = process.cpuUsage(cpu0);
      checkCpu.push((cpu.user + cpu.system) / 1000);
      t = performance.now();
      // Visited entries counted, nothing kept: the check itself keeps only the differences.
      files = 0;
      await walkTrees(trees, { root, excluded, prune }, () => files++);
      walk.push(performance.now() - t);
      t = performance.now();
      const c0 = childCpuMs();
      await run('find', [...findArgs, '-xdev', '(', ...pruneExpr, ')', '-prune', '-o', '-printf', '%i %s %m %U %G %T@ %C@ %p\\0'], {
        maxBuffer: 1 << 30,
      }).catch((e: unknown) => e);
      find.push(performance.now() - t);
      findCpu.push(childCpuMs() - c0);
    }
    const [c, w, f] = [median(check), median(walk), median(find)];
    const ms = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(' ');
    console.log(`\n${label}, defaults, median of ${RUNS}`);
    for (const line of about) console.log(`  ${line}`);
    console.log(`  baseline: ${b.files} files, ${b.objects} objects, taken in ${b.durationMs} ms`);
    console.log(
      `  whole check (files + accounts + packages + kernel + network): ${c.toFixed(0)} ms   (target ≤ 300 ms; runs: ${ms(check)})`,
    );
    console.log(`  file walk alone:                                  ${w.toFixed(0)} ms   (${files} entries kept; runs: ${ms(walk)})`);
    console.log(`  find -printf of the same trees:                   ${f.toFixed(0)} ms   (runs: ${ms(find)})`);
    console.log(`  ratio whole check / find: ${(c / f).toFixed(2)}   file walk / find: ${(w / f).toFixed(2)}   (target ≤ 2)`);
    // CPU time depends less than wall time on what else the machine runs.
    console.log(
      `  CPU time: whole check ${median(checkCpu).toFixed(0)} ms (this process; its netfilter tools not counted), find ${median(findCpu).toFixed(0)} ms (kernel ticks of 10 ms)`,
    );
    console.log(
      `  drift lines in the last run: ${drift.length}${drift.length ? ` (other activity on this machine), e.g. ${drift.slice(0, 3).join('; ')}` : ''}`,
    );
    return { check: c, find: f };
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
}

/** A checkout-like _work of `files` small files, written as the runner user. */
function fillWork(user: Parameters<typeof runAs>[0], workDir: string, files: number): void {
  runAs(
    user,
    `python3 -c "
import os
base = '${workDir}/repo/repo'
os.makedirs(base)
for i in range(${Math.ceil(files / 1000)}):
    p = '%s/src%d' % (base, i); os.mkdir(p)
    for j in range(1000):
        with open('%s/%d.c' % (p, j), 'w') as f: f.write('int x;')
for n in ['_temp', '_actions', '_PipelineMapping']:
    os.makedirs('${workDir}/' + n + '/x')
"`,
  );
}

/**
 * Job end → ready as the agent runs it: guards' release, cleanup (steps + verification), guards'
 * verification; alternated with the same path without the guards, ROUNDS times each.
 */
async function measureReady(stock: string): Promise<void> {
  const lab = await createLab('rw-bench-integrity-ready-');
  const trash = { t: undefined as Trash | undefined };
  try {
    const runnerRoot = path.join(lab.root, 'runner');
    const slot: Slot = {
      index: 0,
      runnerRoot,
      workDir: path.join(runnerRoot, '_work'),
      user: { name: lab.user.name, uid: lab.user.uid, gid: lab.user.gid, home: lab.user.home },
      stateDir: path.join(lab.root, 'state'),
      trashDir: path.join(lab.root, 'trash'),
      jobRoot: path.join(lab.root, 'jobs'),
    };
    await installSimulatedRunner(runnerRoot, { owner: { uid: lab.user.uid, gid: lab.user.gid } });
    await mkdir(slot.workDir, { recursive: true });
    await chown(slot.workDir, lab.user.uid, lab.user.gid);
    await mkdir(slot.jobRoot, { recursive: true, mode: 0o711 });
    await takeBaseline(slot);
    await takeInstallManifest(slot);
    trash.t = new Trash(slot.trashDir, silentLogger());
    const tmp = path.join(lab.root, 'sys-tmp');
    await mkdir(tmp, { mode: 0o1777 });
    await chmod(tmp, 0o1777);
    // The default policy (integrity on, sudo deny), its temp sweep inside the lab and no engine.
    const policy: Policy = structuredClone(DEFAULT_POLICY);
    policy.cleanup.temp.paths = [tmp];
    policy.cleanup.containers.socket = path.join(lab.root, 'no-engine.sock');
    const excluded = agentExclusions(slot);
    const user = { name: lab.user.name, uid: lab.user.uid };
    await takeSystemBaseline({
      root: stock,
      stateDir: slot.stateDir,
      surfaces: policy.host.integrity.surfaces,
      exceptions: exceptionPatterns(policy.host.integrity),
      excluded,
      user,
      skipPids: [process.pid],
    });
    const guards: JobGuard<Policy>[] = [
      new SudoGuard({ root: stock, user: slot.user }),
      new IntegrityGuard({ root: stock, stateDir: slot.stateDir, excluded, user, skipPids: [process.pid] }),
    ];
    const job: GuardJob = { key: 'bench', dir: slot.jobRoot, user: slot.user, runnerRoot, stateDir: slot.stateDir };
    const results: Record<'with' | 'without', number[]> = { with: [], without: [] };
    let findings: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of ['without', 'with'] as const) {
        fillWork(lab.user, slot.workDir, BIG_WORK);
        runAs(lab.user, `setsid nohup sleep 1000 >/dev/null 2>&1 & setsid nohup sleep 1001 >/dev/null 2>&1 &`);
        execFileSync('sync', ['-f', slot.workDir]);
        const gctx = { log: silentLogger(), signal: AbortSignal.timeout(120_000) };
        if (mode === 'with') for (const g of guards) await g.prepare(job, policy, gctx);
        const ctx: CleanupContext = {
          slot,
          policy: policy.cleanup,
          fullPolicy: policy,
          log: silentLogger(),
          clock: systemClock,
          signal: AbortSignal.timeout(120_000),
          dryRun: false,
          protectedPids: new Set([process.pid]),
        };
        // Timed from the listener's exit, as src/agent/settle.ts times readyMs.
        const t0 = performance.now();
        const split: string[] = [];
        if (mode === 'with') {
          for (const g of guards) {
            const t = performance.now();
            await g.release(job, policy, gctx);
            split.push(`release ${g.name} ${(performance.now() - t).toFixed(0)} ms`);
          }
        }
        const report = await runCleanup(ctx, defaultSteps({ trash: trash.t }), verify);
        split.push(`cleanup+verify ${report.readyMs.toFixed(0)} ms`);
        if (!report.clean) throw new Error(`not clean: ${JSON.stringify(report.verify.problems)}`);
        if (mode === 'with') {
          findings = [];
          for (const g of guards) {
            const t = performance.now();
            findings.push(...(await g.verify(job, policy, gctx)).map((f) => `${g.name}: ${f.problem}`));
            split.push(`verify ${g.name} ${(performance.now() - t).toFixed(0)} ms`);
          }
        }
        const ms = performance.now() - t0;
        results[mode].push(ms);
        console.log(`  round ${round + 1}, ${mode} the guards: ${ms.toFixed(0)} ms (${split.join(', ')})`);
        await trash.t.drain();
      }
    }
    const [w, wo] = [median(results.with), median(results.without)];
    const ms = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(' ');
    console.log(`\nJOB END → HOST READY, ${BIG_WORK.toLocaleString('en')} files in _work, defaults, median of ${ROUNDS}`);
    console.log(`  integrity check of the stock Debian root (file surfaces) and this machine's kernel state`);
    console.log(`  with the guards (sudo, integrity):    ${w.toFixed(0)} ms   (target ≤ 1000 ms; runs: ${ms(results.with)})`);
    console.log(`  without them (cleanup + verify only): ${wo.toFixed(0)} ms   (runs: ${ms(results.without)})`);
    console.log(`  the guards add ${(w - wo).toFixed(0)} ms; ratio ${(w / wo).toFixed(2)}`);
    console.log(`  findings in the last round: ${findings.length}${findings.length ? ` e.g. ${findings.slice(0, 3).join('; ')}` : ''}`);
  } finally {
    await trash.t?.drain().catch(() => undefined);
    await new Promise<void>((resolve) => {
      spawn('rm', ['-rf', '--one-file-system', '--', path.join(lab.root, 'runner'), path.join(lab.root, 'trash')], {
        stdio: 'ignore',
      }).once('exit', () => resolve());
    });
    await lab.dispose();
  }
}

const MiB = 1024 * 1024;

/**
 * In a child process (`--memory-child ROOT STATE`): RSS idle, after the baseline, after each of
 * three checks, and the highest sampled; one JSON line.
 */
async function memoryChild(root: string, stateDir: string): Promise<void> {
  let peak = 0;
  const sample = (): number => {
    const rss = process.memoryUsage.rss();
    peak = Math.max(peak, rss);
    return rss;
  };
  const timer = setInterval(sample, 20);
  const idle = sample();
  const { b, user, excluded, policy } = await defaultBaseline(root, stateDir);
  const afterBaseline = sample();
  const peakBaseline = peak;
  const guard = new IntegrityGuard({ root, stateDir, excluded, user, skipPids: [process.pid] });
  const ctx = { log: silentLogger(), signal: AbortSignal.timeout(600_000) };
  const checks: number[] = [];
  const checkMs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await guard.verify(undefined, policy, ctx);
    checkMs.push(performance.now() - t);
    checks.push(sample());
  }
  clearInterval(timer);
  console.log(JSON.stringify({ idle, afterBaseline, peakBaseline, checks, checkMs, peak, files: b.files }));
}

/** Runs memoryChild in a fresh process for `root` and prints its figures. */
async function measureMemory(label: string, root: string): Promise<void> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'rw-bench-integrity-mem-'));
  try {
    const { stdout } = await run(process.execPath, [...process.execArgv, process.argv[1] as string, '--memory-child', root, stateDir], {
      maxBuffer: 1 << 20,
    });
    const r = JSON.parse(stdout.trim().split('\n').pop() as string) as {
      idle: number;
      afterBaseline: number;
      peakBaseline: number;
      checks: number[];
      checkMs: number[];
      peak: number;
      files: number;
    };
    const m = (x: number): string => `${(x / MiB).toFixed(0)} MiB (x${(x / r.idle).toFixed(2)} idle)`;
    console.log(`\nMEMORY, ${label}: a fresh process, ${r.files.toLocaleString('en')} file entries in the baseline`);
    console.log(`  RSS idle:                         ${(r.idle / MiB).toFixed(0)} MiB (node and the loaded modules)`);
    console.log(`  RSS after taking the baseline:    ${m(r.afterBaseline)}, highest while taking it ${m(r.peakBaseline)}`);
    console.log(
      `  RSS after each of 3 checks:       ${r.checks.map((x) => (x / MiB).toFixed(0)).join(', ')} MiB; last ${m(r.checks.at(-1) as number)}; highest ${m(r.peak)}`,
    );
    console.log(`  check times: ${r.checkMs.map((x) => x.toFixed(0)).join(', ')} ms`);
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const child = process.argv.indexOf('--memory-child');
  if (child >= 0) {
    await memoryChild(process.argv[child + 1] as string, process.argv[child + 2] as string);
    return;
  }
  const cache = arg('--stock-cache');
  const stock = await stockRoot({ ...(cache ? { cache } : {}), log: (l) => console.log(l) });
  const load = (): string =>
    os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ');
  console.log(`integrity check; ${os.cpus().length} cores, load average ${load()} at start`);
  if (ONLY === 'ready') {
    await measureReady(stock.root);
    console.log(`\nload average ${load()} at the end`);
    return;
  }
  if (ONLY === undefined || ONLY === 'memory') {
    await measureMemory('STOCK DEBIAN ROOT', stock.root);
    if (!process.argv.includes('--no-live')) await measureMemory('THIS LIVE MACHINE (root /)', '/');
    if (ONLY === 'memory') return;
  }
  await measure('STOCK DEBIAN ROOT', stock.root, [
    `file surfaces, accounts, package set: ${stock.about}`,
    'kernel and network surfaces (modules, mounts, netfilter, routes, sysctl, listeners, processes): this live machine',
  ]);
  if (!process.argv.includes('--no-live') && ONLY !== 'check') {
    await measure('THIS LIVE MACHINE (root /)', '/', [
      "a development host, not a stock image: toolchains under /root, tests' trees under /tmp and /home",
    ]);
  }
  if (ONLY !== 'check') await measureReady(stock.root);
  console.log(`\nload average ${load()} at the end`);
}

await main();
