/**
 * Job end → host ready (verified): the whole cleanup pipeline the agent runs (defaultSteps: the
 * processes, workdir renames into the trash, credentials, home, temp, system, runner-install
 * steps) and the independent verify, with 200,000 small files in `_work` against the same with
 * 10,000 files, measured in the same run. The trash deletion runs afterwards in the background and
 * is not on this path.
 * Targets: ≤ 1.0 s with 200,000 files, and ≤ 1.2× the 10,000-file figure.
 *
 * Then the temp step alone, with a job's tree of `tempFiles` files left in the temp dir (on the
 * trash's filesystem, as /tmp on a disk): deleted in place (no trash, the old path) against
 * renamed into the trash (the agent's path), in the same run, and the background drain's time.
 *
 *   node --import tsx bench/cleanup-ready.ts [rounds=3 (0: the temp step alone)] [tempFiles=50000]
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
import { TempTrash } from '../src/cleanup/steps/temp-trash.js';
import { createTempStep } from '../src/cleanup/steps/temp.js';
import type { CleanupContext, Slot } from '../src/cleanup/types.js';
import { DEFAULT_POLICY } from '../src/policy/types.js';
import { systemClock } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/log.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const TEMP_FILES = Number(process.argv[3] ?? 50_000);

/** A checkout-like tree of `files` files (1,000 per directory) at `dir`, made by the runner user. */
function fillTree(lab: { user: Parameters<typeof runAs>[0] }, dir: string, files: number): void {
  runAs(
    lab.user,
    `python3 -c "
import os
for i in range(${Math.ceil(files / 1000)}):
    p = '%s/src%d' % ('${dir}', i); os.makedirs(p)
    for j in range(1000):
        with open('%s/%d.c' % (p, j), 'w') as f: f.write('int x;')
"`,
  );
}

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

/** Prints the ready-path figures of the rounds. */
function printReady(results: Record<number, number[]>): void {
  const small = median(results[10_000] ?? []);
  const big = median(results[200_000] ?? []);
  console.log(`job end → host ready (every cleanup step + verify), median of ${ROUNDS}`);
  console.log(`  10,000 files   ${small.toFixed(0)} ms  (${(results[10_000] ?? []).map((x) => x.toFixed(0)).join(', ')})`);
  console.log(`  200,000 files  ${big.toFixed(0)} ms  (${(results[200_000] ?? []).map((x) => x.toFixed(0)).join(', ')})  target ≤ 1000 ms`);
  console.log(`  ratio 200k/10k ${(big / small).toFixed(2)}×  (target ≤ 1.2×)`);
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
    const tempTrash = new TempTrash(trash, silentLogger(), { stateDir: slot.stateDir });
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
        const report = await runCleanup(ctx, defaultSteps({ trash, tempTrash }), verify);
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
    // rounds=0 runs the temp step's figures alone.
    if (ROUNDS > 0) printReady(results);

    // The temp step alone: the job's tree deleted in place, then the same tree renamed into the trash.
    const tempCtx = (): CleanupContext => ({
      slot,
      policy: policy.cleanup,
      fullPolicy: policy,
      log: silentLogger(),
      clock: systemClock,
      // A tree this size takes minutes to delete on a loaded disk: the in-place baseline must finish.
      signal: AbortSignal.timeout(30 * 60_000),
      dryRun: false,
      protectedPids: new Set([process.pid]),
    });
    const timeStep = async (step: ReturnType<typeof createTempStep>): Promise<number> => {
      fillTree(lab, path.join(tmp, 'job-tree'), TEMP_FILES);
      execFileSync('sync', ['-f', tmp]);
      const t0 = performance.now();
      const r = await step.run(tempCtx());
      if (r.outcome !== 'ok') throw new Error(`temp step not ok: ${r.reason}`);
      return performance.now() - t0;
    };
    const inlineMs = await timeStep(createTempStep());
    const trashedMs = await timeStep(createTempStep({ trash: tempTrash }));
    const drained = await trash.drain();
    console.log(`temp step, a job's ${TEMP_FILES}-file tree in the temp dir (the trash's filesystem)`);
    console.log(`  in place      ${inlineMs.toFixed(0)} ms  (on the ready path)`);
    console.log(`  to the trash  ${trashedMs.toFixed(0)} ms  (${(inlineMs / trashedMs).toFixed(0)}× less on the ready path)`);
    console.log(`  background drain afterwards ${drained.durationMs} ms, ${drained.count} entries`);
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
