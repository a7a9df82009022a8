/**
 * bench/engine.ts, section "ready": job end → next listener polling in isolated mode (split out
 * of bench/engine.ts, which runs it: `node --import tsx bench/engine.ts 3 ready 20000`).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { EngineGuard } from '../src/engine/engine-guard.js';
import { ping } from '../src/engine/rootless-engine.js';
import { createLogger, silentLogger, type Logger } from '../src/lib/log.js';
import type { Policy } from '../src/policy/types.js';
import type { GuardJob } from '../src/lib/job-guard.js';
import { defaultSteps, runCleanup } from '../src/cleanup/pipeline.js';
import { verify as verifyHost } from '../src/cleanup/verify.js';
import { takeBaseline } from '../src/cleanup/baseline.js';
import { takeInstallManifest } from '../src/cleanup/install-manifest.js';
import { installSimulatedRunner } from '../src/sim/runner/install.js';
import { Trash } from '../src/cleanup/trash.js';
import type { CleanupContext, Slot } from '../src/cleanup/types.js';
import { systemClock } from '../src/lib/clock.js';

/** Files in _work for the ready figure (the target's 200,000; a fourth argument overrides it for a quick look). */
const READY_FILES = Number(process.argv[4] ?? 200_000);
/** The ready paths to run (a fifth argument picks some: filling 200,000 files per round takes minutes). */
const READY_KINDS = (process.argv[5] ?? 'before,cold,warm')
  .split(',')
  .filter((k): k is 'before' | 'cold' | 'warm' => ['before', 'cold', 'warm'].includes(k));

const execFileP = promisify(execFile);
const out = (s: string): void => console.log(s);
const ms = (n: number): string => `${(n / 1000).toFixed(2)} s`;
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

/** What bench/engine.ts made for every section: its throwaway runner user, root and policy. */
export interface ReadyWorld {
  root: string;
  name: string;
  uid: number;
  gid: number;
  policy: Policy;
  ctx: { log: Logger; readonly signal: AbortSignal };
  starts: number;
  cgroupParent: string;
}

/**
 * 1b. job end → next listener polling in isolated mode with 200,000 files in _work, the agent's
 * settle path step by step (settle.ts): the engine guard's release, the whole cleanup pipeline
 * and its verify with the guard's verify beside it, [prewarm], a new per-job directory, the
 * guard's prepare; each round also prints the pipeline's slow steps.
 * Not included: the decision, the journal and the JIT registration (a few ms against a local
 * fake, bench/lifecycle.ts), and the listener's own spawn. Three paths alternate in the same
 * run: before (the baseline: prepare holds the listener until the engine's first answer, as it
 * did before the socket was activated), cold (the engine spawned in prepare, not waited for)
 * and warm (prewarm at verification). Each round prints the engine guard's part (release,
 * verify, prepare) apart from the cleanup pipeline's, and when the engine first answered.
 */
export async function readyFigures(w: ReadyWorld): Promise<void> {
  const { root, name, uid, gid, policy, ctx, starts } = w;
  const runnerRoot = path.join(root, 'runner');
  const slot: Slot = {
    index: 0,
    runnerRoot,
    workDir: path.join(runnerRoot, '_work'),
    user: { name, uid, gid, home: path.join(root, name) },
    stateDir: path.join(root, 'state'),
    trashDir: path.join(root, 'trash'),
    // Short: containerd's socket under a warm engine's directory must fit 104 bytes (socketPathProblem).
    jobRoot: path.join(root, 'rj'),
  };
  await installSimulatedRunner(runnerRoot, { owner: { uid, gid } });
  await fsp.mkdir(slot.workDir, { recursive: true });
  await fsp.chown(slot.workDir, uid, gid);
  await fsp.mkdir(slot.jobRoot, { recursive: true, mode: 0o711 });
  await fsp.mkdir(slot.stateDir, { recursive: true, mode: 0o700 });
  await takeBaseline(slot);
  await takeInstallManifest(slot);
  const trash = new Trash(slot.trashDir, silentLogger());
  const tmp = path.join(root, 'sys-tmp');
  await fsp.mkdir(tmp, { mode: 0o1777 });
  await fsp.chmod(tmp, 0o1777);
  const p: Policy = structuredClone(policy);
  p.cleanup.temp.paths = [tmp];
  p.cleanup.containers.socket = path.join(root, 'no-engine.sock');
  const g = new EngineGuard({ cgroupParent: w.cgroupParent, runnerUser: { name, uid, gid }, jobRoot: slot.jobRoot, prewarm: true });
  let k = 0;
  const slotJob = async (): Promise<GuardJob> => {
    const dir = path.join(slot.jobRoot, `ready-${++k}`);
    await fsp.mkdir(dir, { mode: 0o711 });
    return { key: `ready-${k}-${name}`, dir, user: slot.user, runnerRoot, stateDir: slot.stateDir };
  };
  type Kind = 'before' | 'cold' | 'warm';
  const results: Record<Kind, number[]> = { before: [], cold: [], warm: [] };
  /** The engine guard's part of the path (release + verify + prepare), and the first answer after prepare. */
  const guardPart: Record<Kind, number[]> = { before: [], cold: [], warm: [] };
  const answerAfter: Record<Kind, number[]> = { before: [], cold: [], warm: [] };
  let job = await slotJob();
  await g.prepare(job, p, ctx);
  for (let round = 0; round < Math.max(2, Math.ceil(starts / 2)); round++) {
    for (const kind of READY_KINDS) {
      await fillWork(slot.workDir, READY_FILES, { uid, gid });
      // Off the clock: the previous round's _work is deleted first, so every round's path has the disk to itself.
      await trash.drain();
      // The verification's checks log their durations at debug level: kept to print the slow ones.
      const checkMs: string[] = [];
      const checkLog = createLogger({
        level: 'debug',
        destination: {
          write: (l: string) => {
            const r = JSON.parse(l) as { check?: string; durationMs?: number };
            if (r.check !== undefined && (r.durationMs ?? 0) >= 20) checkMs.push(`${r.check} ${ms(r.durationMs ?? 0)}`);
          },
        },
      });
      const cctx: CleanupContext = {
        slot,
        policy: p.cleanup,
        fullPolicy: p,
        log: checkLog,
        clock: systemClock,
        signal: AbortSignal.timeout(300_000),
        dryRun: false,
        protectedPids: new Set([process.pid]),
      };
      const t0 = performance.now();
      const released = await g.release(job, p, ctx);
      const tReleased = performance.now();
      // As the agent's settle path does: the guard's checks start with the pipeline's verification.
      let guardChecks: ReturnType<typeof g.verify> | undefined;
      const verifiedJob = job;
      const report = await runCleanup(cctx, defaultSteps({ trash }), (c) => {
        guardChecks = g.verify(verifiedJob, p, ctx);
        return verifyHost(c);
      });
      if (!report.clean) throw new Error(`not clean: ${JSON.stringify(report.verify.problems)}`);
      const tVerify = performance.now();
      if (kind === 'warm') g.prewarm(p, ctx);
      const findings = await (guardChecks ?? g.verify(job, p, ctx));
      if (released.outcome !== 'ok' || findings.length > 0)
        throw new Error(`engine not clean: ${released.outcome} ${JSON.stringify(findings)}`);
      const tGuardVerified = performance.now();
      job = await slotJob();
      const tPrepare = performance.now();
      const prepared = await g.prepare(job, p, ctx);
      const socket = (prepared.env?.DOCKER_HOST ?? '').replace(/^unix:\/\//, '');
      // The baseline: prepare as it was, holding the listener until the engine's first answer.
      if (kind === 'before' && !(await ping(socket, 60_000))) throw new Error('the engine did not answer');
      const t1 = performance.now();
      if (kind !== 'before' && !(await ping(socket, 60_000))) throw new Error('the engine did not answer');
      answerAfter[kind].push(performance.now() - t1);
      results[kind].push(t1 - t0);
      guardPart[kind].push(tReleased - t0 + (tGuardVerified - tVerify) + (t1 - tPrepare));
      out(
        `  round ${round + 1} ${kind}: ${ms(t1 - t0)} (release ${ms(tReleased - t0)}, pipeline+verify ${ms(tVerify - tReleased)}, guard verify ${ms(tGuardVerified - tVerify)} after the pipeline's, prepare ${ms(t1 - tPrepare)}; first answer ${ms(performance.now() - t1)} after it; ${prepared.notes?.join('; ') ?? ''})`,
      );
      // Where the pipeline's part went: every step above 10 ms, then its verification.
      const slow = report.steps.filter((s) => s.durationMs >= 10).map((s) => `${s.name} ${ms(s.durationMs)}`);
      out(`    pipeline: ${[...slow, `verify ${ms(report.verify.durationMs)} (${checkMs.join(', ')})`].join(', ')}`);
      await g.drain();
    }
  }
  await g.release(job, p, ctx);
  await g.drain();
  await trash.drain();
  out(
    `job end -> next listener polling, isolated, ${READY_FILES.toLocaleString('en')} files in _work (n=${Math.max(...READY_KINDS.map((k) => results[k].length))} each):`,
  );
  const line = (label: string, k: Kind): void =>
    out(
      `  ${label}: median ${ms(pct(results[k], 50))}, p95 ${ms(pct(results[k], 95))}; the engine guard's part ${ms(pct(guardPart[k], 50))}, the cleanup pipeline's the rest${k === 'before' ? '' : `; first answer ${ms(pct(answerAfter[k], 50))} after prepare`}${results.before.length > 0 ? `  (before/this = ${(pct(results.before, 50) / pct(results[k], 50)).toFixed(1)}x)` : ''}`,
    );
  if (READY_KINDS.includes('warm')) line('warm (engine started at verification, socket-activated)', 'warm');
  if (READY_KINDS.includes('cold')) line('cold (engine spawned in prepare, socket-activated)', 'cold');
  if (READY_KINDS.includes('before')) line('baseline before (prepare waits for the first answer)', 'before');
  out('  target <= 0.50 s for the whole path; the engine guard owns its part, the pipeline the rest');
}

/** A checkout-like _work of `files` small files, made as the runner user (not timed). */
async function fillWork(workDir: string, files: number, user: { uid: number; gid: number }): Promise<void> {
  const { uid, gid } = user;
  const script = `import os\nbase = '${workDir}/repo/repo'\nos.makedirs(base)\nfor i in range(${Math.ceil(files / 1000)}):\n    p = '%s/src%d' % (base, i); os.mkdir(p)\n    for j in range(1000):\n        open('%s/%d.c' % (p, j), 'w').write('int x;')\n`;
  await execFileP('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '/usr/bin/python3', '-c', script], {
    env: { PATH: '/usr/bin:/bin' },
  });
}
