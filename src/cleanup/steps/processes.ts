/**
 * Step "processes": nothing the job started survives it.
 *
 * 1. The slot's cgroup, when there is one: `cgroup.kill` (v2) or freeze-kill-thaw (v1), which
 *    catches everything that stayed in it whatever it did to its process tree.
 * 2. A /proc sweep by uid, the backstop for what escaped or when there is no cgroup:
 *    SIGTERM, a grace period (policy.processes.graceSeconds, on ctx.clock), then kill rounds until
 *    a scan finds nothing. Each kill round first runs `kill(-1, SIGKILL)` as that uid: the kernel
 *    signals every process of the uid under the task-list lock, so not even a fork loop or a
 *    process that keeps changing its pid slips through. What is left (or everything, when a
 *    protected process shares the uid and kill(-1) is off) gets the stop-the-world sweep: SIGSTOP
 *    every process of the uid, rescanning until a pass finds nobody new (a stopped process cannot
 *    fork, so the chase converges), then SIGKILL them all.
 * Processes are chosen by uid, never by name, so `exec -a` renames do not matter. The agent's own
 * pid, ctx.protectedPids, pid 1 and processes of other uids are never signalled.
 */
import { spawn } from 'node:child_process';
import type { CleanupContext, CleanupStep, StepReport } from '../types.js';
import { openProcessContainer } from '../../lib/cgroup.js';
import { describeError } from '../../lib/errors.js';
import { processesOfUid, ownedBy, readProc, type ProcInfo } from '../proc.js';

/**
 * Kill rounds before giving up: each round stops and kills everything visible, so one round is
 * normally enough; the rest absorb processes that a dying parent was spawning at that instant.
 */
export const KILL_ROUNDS = 20;

/**
 * Passes of the SIGSTOP sweep per round. A pass stops every process not stopped yet; a fork loop
 * adds at most its fork rate between passes, so it converges in a few passes. 100 leaves room for
 * a deliberate fork bomb without looping forever.
 */
export const STOP_PASSES = 100;

/**
 * Real time to wait for SIGKILLed processes to disappear. SIGKILL is delivered at once; only a
 * process in uninterruptible sleep (a hung disk or NFS read) takes longer, and two seconds per
 * round is enough for a slow disk without holding the cleanup for a hung mount.
 */
export const DEATH_WAIT_MS = 2_000;

/** How often the sweep polls /proc while waiting for processes to exit (real time, kernel-paced). */
const POLL_MS = 20;

/** Longest list kept in a dry-run plan. */
const PLAN_CAP = 200;

/** Options of the processes step; defaults read the real /proc and use `kill -1` as the uid. */
export interface ProcessesStepOptions {
  procRoot?: string;
  /** Use `setpriv ... kill -KILL -1` as the runner uid in each round (default true). */
  killAsUser?: boolean;
}

/** Creates the "processes" step. */
export function createProcessesStep(opts: ProcessesStepOptions = {}): CleanupStep {
  return {
    name: 'processes',
    run: (ctx) => runProcesses(ctx, opts),
  };
}

/** The "processes" step with default options. */
export const processesStep: CleanupStep = createProcessesStep();

type Result = Omit<StepReport, 'name' | 'durationMs'>;

async function runProcesses(ctx: CleanupContext, opts: ProcessesStepOptions): Promise<Result> {
  if (!ctx.policy.processes.enabled) {
    return { outcome: 'skipped', removed: {}, reason: 'disabled by policy' };
  }
  const { uid, gid } = ctx.slot.user;
  if (uid === 0) {
    return { outcome: 'failed', removed: {}, reason: 'refusing to sweep the processes of uid 0' };
  }
  const procRoot = opts.procRoot;
  const log = ctx.log.child({ step: 'processes' });
  const exempt = (pid: number): boolean => pid <= 1 || pid === process.pid || ctx.protectedPids.has(pid);
  const targets = async (): Promise<ProcInfo[]> => (await processesOfUid(uid, procRoot)).filter((p) => !exempt(p.pid));

  const container = ctx.slot.cgroup ? openProcessContainer(ctx.slot.cgroup) : undefined;

  if (ctx.dryRun) {
    const plan = (await targets()).map((p) => `process ${p.pid} ${p.comm}`);
    if (container) {
      const inCgroup = await container.pids().catch(() => [] as number[]);
      for (const pid of inCgroup) if (!exempt(pid)) plan.push(`cgroup member ${pid}`);
    }
    return { outcome: 'ok', removed: {}, plan: cap(plan) };
  }

  // Distinct processes killed, keyed by pid and start time so that pid reuse is not counted twice.
  const killed = new Set<string>();
  const note = (p: ProcInfo): void => {
    killed.add(`${p.pid}:${p.startTime}`);
  };

  if (container) {
    try {
      const members = await container.pids();
      const spare = members.some((pid) => exempt(pid));
      if (!spare || container.kind !== 'v2') {
        const pids = await container.killAll({ signal: ctx.signal, protectedPids: ctx.protectedPids });
        for (const pid of pids) killed.add(`${pid}:cgroup`);
      } else {
        log.warn({ cgroup: container.path }, 'protected pid in job cgroup; sweeping by pid only');
      }
    } catch (err) {
      // The uid sweep below is the backstop; the cgroup is only the fast path.
      log.warn({ cgroup: container.path, err: describeError(err) }, 'cgroup kill incomplete');
    }
  }

  // The common case, a job that left nothing running, is decided by this one scan.
  let current = await targets();
  if (current.length === 0) return { outcome: 'ok', removed: { process: { count: killed.size, bytes: 0 } } };

  // Would `kill -1` as the uid reach a protected process? Then never use it. The protected pids
  // are few and known: each is read directly, no scan of the whole table.
  const protectedOfUid = async (): Promise<boolean> => {
    for (const pid of ctx.protectedPids) {
      const p = await readProc(pid, procRoot);
      if (p && ownedBy(p, uid)) return true;
    }
    return false;
  };
  const useKillAsUser = (opts.killAsUser ?? true) && !(await protectedOfUid());

  // Polite first: SIGTERM, then the grace period (cut short once everything has exited).
  for (const p of current) if (signal(p.pid, 'SIGTERM')) note(p);
  try {
    await graceWait(ctx, ctx.policy.processes.graceSeconds * 1000, targets);
  } catch (err) {
    if (!ctx.signal.aborted) throw err;
  }

  for (let round = 0; round < KILL_ROUNDS && !ctx.signal.aborted; round++) {
    current = await targets();
    if (current.length === 0) break;
    for (const p of current) note(p);
    if (useKillAsUser) {
      await killMinusOneAs(uid, gid).catch((err: unknown) => {
        log.debug({ err: describeError(err) }, 'kill -1 as runner user failed');
      });
      if (await waitGone(targets, DEATH_WAIT_MS, ctx.signal)) break;
    }
    const stopped = await stopAll(targets, note, ctx.signal);
    for (const p of stopped.values()) signal(p.pid, 'SIGKILL');
    await waitGone(targets, DEATH_WAIT_MS, ctx.signal);
  }

  const survivors = await targets();
  const removed = { process: { count: killed.size, bytes: 0 } };
  if (survivors.length > 0) {
    const sample = survivors
      .slice(0, 5)
      .map((p) => `${p.pid}(${p.comm},${p.state})`)
      .join(' ');
    return {
      outcome: 'dirty',
      removed,
      reason: `${survivors.length} process(es) of uid ${uid} survive: ${sample}`,
    };
  }
  log.debug({ killed: killed.size }, 'processes stopped');
  return { outcome: 'ok', removed };
}

/**
 * SIGSTOPs every target, rescanning until a pass finds no process that is not stopped yet.
 * Returns everything seen, by pid.
 */
async function stopAll(
  targets: () => Promise<ProcInfo[]>,
  note: (p: ProcInfo) => void,
  abort: AbortSignal,
): Promise<Map<number, ProcInfo>> {
  const seen = new Map<number, ProcInfo>();
  for (let pass = 0; pass < STOP_PASSES && !abort.aborted; pass++) {
    let fresh = 0;
    for (const p of await targets()) {
      const known = seen.get(p.pid);
      if (known && known.startTime === p.startTime && (p.state === 'T' || p.state === 't')) continue;
      seen.set(p.pid, p);
      if (signal(p.pid, 'SIGSTOP')) {
        note(p);
        fresh++;
      }
    }
    if (fresh === 0) break;
  }
  return seen;
}

/** Sends a signal; false when the process is already gone. */
function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

/** Waits up to `graceMs` on the injected clock, returning early once no target is left. */
async function graceWait(ctx: CleanupContext, graceMs: number, targets: () => Promise<ProcInfo[]>): Promise<void> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.race([
      ctx.clock.sleep(graceMs, stop.signal).catch(() => undefined),
      waitGone(targets, Number.POSITIVE_INFINITY, stop.signal),
    ]);
  } finally {
    stop.abort();
    ctx.signal.removeEventListener('abort', onAbort);
  }
}

/** Polls until no target is left, `maxMs` of real time passed, or `abort` fires. */
async function waitGone(targets: () => Promise<ProcInfo[]>, maxMs: number, abort: AbortSignal): Promise<boolean> {
  const started = Date.now();
  while (!abort.aborted && Date.now() - started < maxMs) {
    if ((await targets()).length === 0) return true;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return false;
}

/**
 * `kill(-1, SIGKILL)` from a process running as the uid: the kernel signals every process whose
 * real or saved uid is that uid, in one pass, which no /proc scan can do. Bounded by a timeout.
 */
function killMinusOneAs(uid: number, gid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', 'kill', '-KILL', '-1'], {
      stdio: 'ignore',
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // kill(-1) spares the caller itself; any exit status is fine, the next scan is the judge.
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function cap(list: string[]): string[] {
  if (list.length <= PLAN_CAP) return list;
  return [...list.slice(0, PLAN_CAP), `... and ${list.length - PLAN_CAP} more`];
}
