/**
 * Job end → host ready (verified): the whole cleanup pipeline the agent runs (defaultSteps: the
 * processes, workdir renames into the trash, credentials, home, temp, system, runner-install
 * steps) and the independent verify, with 200,000 small files in `_work` against the same with
 * 10,000 files, measured in the same run. The trash deletion runs afterwards in the background and
 * is not on this path.
 * Targets: ≤ 1.0 s with 200,000 files, and ≤ 1.2× the 10,000-file figure.
 *
 *   node --import tsx bench/cleanup-ready.ts [rounds=3]
 *
 * Runs as root with a throwaway runner user (test/helpers/lab.ts).
 */
import { promises as fsp } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { createLab, runAs } from '../src/sim/lab.js';
import { defaultSteps, runCleanup } from '../src/cleanup/pipeline.js';
import { verify } from '../src/cleanup/verify.js';
import { takeBaseline } from '../src/cleanup/baseline.js';
import { takeInstallManifest } from '../src/cleanup/install-manifest.js';
import { installSimulatedRunner } from '../src/sim/runner/install.js';
import { Trash } from '../src/cleanup/trash.js';
import type { CleanupContext, Slot } from '../src/cleanup/types.js';
import { DEFAULT_POLICY } from '../src/policy/types.js';
import { systemClock } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/log.js';

const ROUNDS = Number(process.argv[2] ?? 3);

/** A checkout-like _work: _work/repo/repo/<dir>/<file>, plus a few top-level leftovers. */
function fillWork(lab: { user: Parameters<typeof runAs>[0] }, workDir: string, files: number): void {
  runAs(
    lab.user,
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function main(): Promise<void> {
  const lab = await createLab('rw-bench-ready-');
  const trashes: Trash[] = [];
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
    await fsp.mkdir(slot.workDir, { recursive: true });
    await fsp.chown(slot.workDir, lab.user.uid, lab.user.gid);
    await fsp.mkdir(slot.jobRoot, { recursive: true, mode: 0o711 });
    await takeBaseline(slot);
    await takeInstallManifest(slot);
    const trash = new Trash(slot.trashDir, silentLogger());
    trashes.push(trash);
    const tmp = path.join(lab.root, 'sys-tmp');
    await fsp.mkdir(tmp, { mode: 0o1777 });
    await fsp.chmod(tmp, 0o1777);
    // The default policy, with its temp sweep pointed inside the lab (never the real /tmp) and no engine.
    const policy = {
      ...DEFAULT_POLICY,
      cleanup: {
        ...DEFAULT_POLICY.cleanup,
        temp: { ...DEFAULT_POLICY.cleanup.temp, paths: [tmp] },
        containers: { ...DEFAULT_POLICY.cleanup.containers, socket: path.join(lab.root, 'no-engine.sock') },
      },
    };
    const results: Record<number, number[]> = { 10_000: [], 200_000: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const files of [10_000, 200_000]) {
        fillWork(lab, slot.workDir, files);
        // The job's leftovers: two daemons that exit on SIGTERM. (One that ignores SIGTERM adds the
        // policy's grace period, processes.graceSeconds, to this path by design.)
        runAs(lab.user, `setsid nohup sleep 1000 >/dev/null 2>&1 & setsid nohup sleep 1001 >/dev/null 2>&1 &`);
        execFileSync('sync', ['-f', slot.workDir]);
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
        const report = await runCleanup(ctx, defaultSteps({ trash }), verify);
        const ms = report.readyMs;
        const split = report.steps.filter((st) => st.durationMs >= 5).map((st) => `${st.name} ${st.durationMs} ms`);
        split.push(`verify ${report.verify.durationMs} ms`);
        if (!report.clean) {
          throw new Error(
            `not clean: ${JSON.stringify([...report.steps.filter((st) => st.outcome !== 'ok' && st.outcome !== 'skipped'), ...report.verify.problems])}`,
          );
        }
        results[files]?.push(ms);
        console.log(`  round ${round + 1}, ${files} files: ${ms.toFixed(0)} ms (${split.join(', ')})`);
        // Not timed: the background deletion, finished before the next round so rounds are alike.
        await trash.drain();
      }
    }
    const small = median(results[10_000] ?? []);
    const big = median(results[200_000] ?? []);
    console.log(`job end → host ready (every cleanup step + verify), median of ${ROUNDS}`);
    console.log(`  10,000 files   ${small.toFixed(0)} ms  (${(results[10_000] ?? []).map((x) => x.toFixed(0)).join(', ')})`);
    console.log(
      `  200,000 files  ${big.toFixed(0)} ms  (${(results[200_000] ?? []).map((x) => x.toFixed(0)).join(', ')})  target ≤ 1000 ms`,
    );
    console.log(`  ratio 200k/10k ${(big / small).toFixed(2)}×  (target ≤ 1.2×)`);
  } finally {
    for (const t of trashes) await t.drain().catch(() => undefined);
    await new Promise<void>((resolve) => {
      spawn('rm', ['-rf', '--one-file-system', '--', path.join(lab.root, 'runner'), path.join(lab.root, 'trash')], {
        stdio: 'ignore',
      }).once('exit', () => resolve());
    });
    await lab.dispose();
  }
}

await main();
