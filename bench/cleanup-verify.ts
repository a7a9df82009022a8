/**
 * Verification of a home of 50,000 files (target: ≤ 2 s), against `find <home> -printf`
 * over the same tree in the same run (the cost of merely walking and stat-ing it).
 *
 *   node --import tsx bench/cleanup-verify.ts [files]
 *
 * Cases: an untouched home (stat cache hits only), and one where 100 files were rewritten with the
 * same size (each is hashed). Each figure is the median of 5 runs. The tree is made of 500
 * directories of 100 small files, like a home with a few tool caches not on the keep list.
 */
import { promises as fsp, mkdirSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_POLICY } from '../src/policy/types.js';
import { systemClock } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/log.js';
import type { CleanupContext, Slot } from '../src/cleanup/types.js';
import { takeBaseline, loadBaseline } from '../src/cleanup/baseline.js';
import { diffHome } from '../src/cleanup/home-diff.js';
import { verifyWith } from '../src/cleanup/verify.js';

const run = promisify(execFile);
const FILES = Number(process.argv[2] ?? 50_000);
const PER_DIR = 100;
const RUNS = 5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function main(): Promise<void> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'rw-bench-verify-'));
  try {
    const home = path.join(root, 'home');
    const state = path.join(root, 'state');
    mkdirSync(home);
    mkdirSync(state, { mode: 0o700 });
    for (let d = 0; d < FILES / PER_DIR; d++) {
      const dir = path.join(home, `.cache-${d}`);
      mkdirSync(dir);
      for (let f = 0; f < PER_DIR; f++) writeFileSync(path.join(dir, `f${f}.txt`), `file ${d}/${f}\n`);
    }
    // A baseline is taken long after the files were written (image build); stay clear of the
    // racy-ctime window so the stat cache is trusted, as it would be on a real host.
    await new Promise((r) => setTimeout(r, 1_200));
    const slot: Slot = {
      index: 0,
      runnerRoot: path.join(root, 'runner'),
      workDir: path.join(root, 'runner', '_work'),
      user: { name: 'bench', uid: 65534, gid: 65534, home },
      stateDir: state,
      trashDir: path.join(state, 'trash'),
      jobRoot: path.join(state, 'jobs'),
    };
    const tb = await time(() => takeBaseline(slot));
    const policy = structuredClone(DEFAULT_POLICY);
    policy.cleanup.temp.paths = [];
    policy.cleanup.containers.enabled = false;
    policy.cleanup.runnerInstall.enabled = false;
    policy.cleanup.processes.enabled = false;
    const ctx: CleanupContext = {
      slot,
      policy: policy.cleanup,
      fullPolicy: policy,
      log: silentLogger(),
      clock: systemClock,
      signal: AbortSignal.timeout(600_000),
      dryRun: false,
      protectedPids: new Set([process.pid]),
    };

    const findMs: number[] = [];
    const diffMs: number[] = [];
    const verifyMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      findMs.push(await time(() => run('find', [home, '-printf', '%p %y %m %U %G %s %T@ %C@ %i\\n'], { maxBuffer: 1 << 30 })));
      diffMs.push(await time(async () => diffHome(slot, (await loadBaseline(slot))!)));
      verifyMs.push(await time(() => verifyWith(ctx, {})));
    }
    // 100 files rewritten with the same size: the stat cache misses and each is hashed.
    for (let f = 0; f < 100; f++) writeFileSync(path.join(home, `.cache-${f}`, 'f0.txt'), `FILE ${f}/0\n`.padEnd(`file ${f}/0\n`.length));
    const changedMs: number[] = [];
    let changed = 0;
    for (let i = 0; i < RUNS; i++) {
      changedMs.push(
        await time(async () => {
          const d = await diffHome(slot, (await loadBaseline(slot))!);
          changed = d.changed.length;
        }),
      );
    }
    const f = median(findMs);
    const rows: [string, number][] = [
      ['diffHome, untouched home (load manifest + walk)', median(diffMs)],
      ['verify(), untouched home (all file checks)', median(verifyMs)],
      [`diffHome, ${changed} same-size rewrites hashed`, median(changedMs)],
    ];
    console.log(`home of ${FILES} files in ${FILES / PER_DIR} directories (baseline taken in ${tb.toFixed(0)} ms)`);
    console.log(`baseline: find -printf over the same tree: ${f.toFixed(0)} ms (median of ${RUNS})`);
    for (const [name, ms] of rows) {
      console.log(`${name}: ${ms.toFixed(0)} ms = ${(ms / f).toFixed(2)}x find; target <= 2000 ms: ${ms <= 2000 ? 'met' : 'MISSED'}`);
    }
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

await main();
