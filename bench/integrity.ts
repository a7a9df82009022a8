/**
 * The whole-host integrity check with the default policy (figure: ≤ 300 ms median on a stock
 * Debian image), printed beside `find -printf` of the same file trees in the same run (ratio ≤ 2).
 *
 *   node --import tsx bench/integrity.ts [--runs N] [--stock-cache DIR] [--no-live]
 *
 * Two measurements, each labelled:
 * - a stock Debian root (bench/lib/stock-root.ts: debootstrap, built once and cached): the file
 *   surfaces, the account databases and the package set are read under that root through the
 *   check's `root` prefix. The kernel and network surfaces (modules, mounts, netfilter, routes,
 *   sysctls, listeners, processes) have no root prefix: they are this live machine's, whatever
 *   runs on it, and so is their cost.
 * - this live machine as it is (root `/`): a development host, not a stock image.
 * The check also reads kernel and network state, which find cannot: the whole check and its file
 * walk alone are both shown against find. A baseline is taken into a temporary state directory;
 * nothing is changed on the host or in the stock root.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
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
import { stockRoot } from './lib/stock-root.js';

const run = promisify(execFile);
const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(arg('--runs') ?? 9);
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

/** The check of `root`, its walk alone and find, alternated RUNS times; one labelled block of output. */
async function measure(label: string, root: string, about: string[]): Promise<{ check: number; find: number }> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'rw-bench-integrity-'));
  try {
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
    const guard = new IntegrityGuard({ root, stateDir, excluded, user, skipPids: [process.pid] });
    const ctx = { log: silentLogger(), signal: AbortSignal.timeout(600_000) };
    // The same trees the check walks, for find and for the walk alone.
    const { users } = await readAccounts(root);
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
      files = Object.keys((await walkTrees(trees, { root, excluded, prune })).files).length;
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

async function main(): Promise<void> {
  const cache = arg('--stock-cache');
  const stock = await stockRoot({ ...(cache ? { cache } : {}), log: (l) => console.log(l) });
  const load = (): string =>
    os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ');
  console.log(`integrity check; ${os.cpus().length} cores, load average ${load()} at start`);
  await measure('STOCK DEBIAN ROOT', stock.root, [
    `file surfaces, accounts, package set: ${stock.about}`,
    'kernel and network surfaces (modules, mounts, netfilter, routes, sysctl, listeners, processes): this live machine',
  ]);
  if (!process.argv.includes('--no-live')) {
    await measure('THIS LIVE MACHINE (root /)', '/', [
      "a development host, not a stock image: toolchains under /root, tests' trees under /tmp and /home",
    ]);
  }
  console.log(`\nload average ${load()} at the end`);
}

await main();
