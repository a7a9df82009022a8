/**
 * Step "system": what the runner user left outside its files, where the next job (or a timer)
 * would run it again or read it:
 * - its crontab (`crontab -r -u`) and `at` jobs (`atq` as root lists every user's jobs with the
 *   owner; `atrm` removes them);
 * - lingering (systemd starts the user's units at boot and keeps them after logout):
 *   `loginctl disable-linger`, or removing the linger flag file when logind is not running;
 * - SysV IPC objects (shared memory, message queues, semaphore sets) whose owner or creator is
 *   the uid, from /proc/sysvipc, removed with `ipcrm`;
 * - POSIX message queues owned by the uid in /dev/mqueue, when that is mounted.
 * systemd user units live in the home and are the home step's. Each part whose tool or file is
 * absent is skipped with a reason; a removal that fails makes the step dirty.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { CleanupContext, CleanupStep, Removed, StepReport } from '../types.js';
import { runCommand, type CommandResult } from '../../lib/process.js';
import { describeError } from '../../lib/errors.js';

/** Options of the system step; defaults are the real system locations and tools. */
export interface SystemStepOptions {
  /** Directory of systemd's linger flag files; default /var/lib/systemd/linger. */
  lingerDir?: string;
  /** POSIX message queue filesystem; default /dev/mqueue. */
  mqueueDir?: string;
  /** SysV IPC tables; default /proc/sysvipc. */
  sysvipcDir?: string;
  /**
   * cron's spool (default /var/spool/cron/crontabs, where verify looks): when it is a readable
   * directory without the user's file, the user has no crontab and `crontab -l` is not run.
   */
  crontabDir?: string;
  /**
   * at's job spool (default /var/spool/cron/atjobs, where verify looks): when it is a readable
   * directory holding no file of the user, `atq` is not run. Elsewhere the tools decide.
   */
  atJobsDir?: string;
}

/**
 * How long each system tool may run: crontab, atq and ipcrm answer in milliseconds; ten seconds
 * covers a loaded host without letting a hung tool hold the cleanup.
 */
export const SYSTEM_TOOL_TIMEOUT_MS = 10_000;

/** Creates the "system" step. */
export function createSystemStep(opts: SystemStepOptions = {}): CleanupStep {
  return { name: 'system', run: (ctx) => runSystem(ctx, opts) };
}

/** The "system" step with default options. */
export const systemStep: CleanupStep = createSystemStep();

type Result = Omit<StepReport, 'name' | 'durationMs'>;

interface Acc {
  removed: Record<string, Removed>;
  plan: string[];
  problems: string[];
  skipped: string[];
  dryRun: boolean;
  signal: AbortSignal;
}

async function runSystem(ctx: CleanupContext, opts: SystemStepOptions): Promise<Result> {
  if (!ctx.policy.system.enabled) return { outcome: 'skipped', removed: {}, reason: 'disabled by policy' };
  const { name, uid } = ctx.slot.user;
  if (uid === 0) return { outcome: 'failed', removed: {}, reason: 'refusing to clean the system state of uid 0' };
  const acc: Acc = { removed: {}, plan: [], problems: [], skipped: [], dryRun: ctx.dryRun, signal: ctx.signal };
  const parts: Array<() => Promise<void>> = [
    async () => {
      // A fork and exec each (50-300 ms on a loaded host) for what the spool shows in a few stats.
      if (!(await spoolEmptyOf(opts.crontabDir ?? DEFAULT_CRONTAB_DIR, (n) => n === name))) await crontab(name, acc);
    },
    async () => {
      if (!(await spoolEmptyOf(opts.atJobsDir ?? DEFAULT_AT_JOBS_DIR, undefined, uid))) await atJobs(name, acc);
    },
    () => linger(name, opts.lingerDir ?? '/var/lib/systemd/linger', acc),
    () => sysvIpc(uid, opts.sysvipcDir ?? '/proc/sysvipc', acc),
    () => mqueues(uid, opts.mqueueDir ?? '/dev/mqueue', acc),
  ];
  // The parts touch different objects, so they run side by side: crontab and atq are a fork and
  // exec each (50-300 ms on a loaded host), and one after the other they were most of the step.
  await Promise.all(
    parts.map(async (part) => {
      if (ctx.signal.aborted) return;
      try {
        await part();
      } catch (err) {
        acc.problems.push(describeError(err));
      }
    }),
  );
  const reasonSkips = acc.skipped.length > 0 ? `skipped: ${acc.skipped.sort().join(', ')}` : undefined;
  if (ctx.dryRun) return { outcome: 'ok', removed: {}, plan: acc.plan, ...(reasonSkips ? { reason: reasonSkips } : {}) };
  if (acc.problems.length > 0) {
    return { outcome: 'dirty', removed: acc.removed, reason: `${acc.problems.length} problem(s): ${acc.problems[0]}` };
  }
  if (acc.skipped.length === parts.length) return { outcome: 'skipped', removed: {}, reason: reasonSkips };
  return { outcome: 'ok', removed: acc.removed, ...(reasonSkips ? { reason: reasonSkips } : {}) };
}

/** Where Debian's cron and at keep a user's crontab and at jobs (verify.ts reads the same). */
const DEFAULT_CRONTAB_DIR = '/var/spool/cron/crontabs';
const DEFAULT_AT_JOBS_DIR = '/var/spool/cron/atjobs';

/**
 * True when `dir` is a readable directory with no entry of the user: none named so (`named`),
 * or no file owned by `uid`. False whenever that cannot be shown (no such spool, unreadable):
 * the tool is asked then.
 */
async function spoolEmptyOf(dir: string, named?: (name: string) => boolean, uid?: number): Promise<boolean> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return false;
  }
  if (named && names.some(named)) return false;
  if (uid !== undefined) {
    for (const n of names) {
      const st = await fsp.lstat(path.join(dir, n)).catch(() => undefined);
      if (st === undefined || st.uid === uid) return false;
    }
  }
  return true;
}

function add(acc: Acc, kind: string, count = 1): void {
  const r = (acc.removed[kind] ??= { count: 0, bytes: 0 });
  r.count += count;
}

/** Runs a tool; undefined when it is not installed. */
async function tool(cmd: string, args: string[], signal: AbortSignal): Promise<CommandResult | undefined> {
  try {
    return await runCommand(cmd, args, {
      timeoutMs: SYSTEM_TOOL_TIMEOUT_MS,
      signal,
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function crontab(user: string, acc: Acc): Promise<void> {
  const list = await tool('crontab', ['-l', '-u', user], acc.signal);
  if (!list) {
    acc.skipped.push('no crontab tool');
    return;
  }
  // rc 1 with "no crontab for <user>" is the expected absence, not a failure.
  if (list.code !== 0) return;
  if (acc.dryRun) {
    acc.plan.push(`crontab of ${user}`);
    return;
  }
  const r = await tool('crontab', ['-r', '-u', user], acc.signal);
  if (r?.code === 0) add(acc, 'crontab');
  else acc.problems.push(`crontab -r -u ${user} failed: ${r?.stderr.trim().slice(0, 200)}`);
}

async function atJobs(user: string, acc: Acc): Promise<void> {
  const q = await tool('atq', [], acc.signal);
  if (!q) {
    acc.skipped.push('no atq');
    return;
  }
  if (q.code !== 0) {
    acc.problems.push(`atq failed: ${q.stderr.trim().slice(0, 200)}`);
    return;
  }
  // "<id>\t<date> <queue> <owner>": the owner is the last field.
  const ids: string[] = [];
  for (const line of q.stdout.split('\n')) {
    const [id, rest] = line.split('\t');
    if (!id || !rest || !/^\d+$/.test(id)) continue;
    if (rest.trim().split(/\s+/).pop() === user) ids.push(id);
  }
  if (ids.length === 0) return;
  if (acc.dryRun) {
    acc.plan.push(...ids.map((id) => `at job ${id} of ${user}`));
    return;
  }
  const r = await tool('atrm', ids, acc.signal);
  if (r?.code === 0) add(acc, 'at-job', ids.length);
  else acc.problems.push(`atrm ${ids.join(' ')} failed: ${r?.stderr.trim().slice(0, 200)}`);
}

async function linger(user: string, dir: string, acc: Acc): Promise<void> {
  const flag = path.join(dir, user);
  try {
    await fsp.lstat(flag);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return;
  }
  if (acc.dryRun) {
    acc.plan.push(`linger of ${user}`);
    return;
  }
  const r = await tool('loginctl', ['disable-linger', user], acc.signal);
  // Without a running logind (containers, this kind of VM) loginctl fails; the flag file is what
  // logind reads at boot, so removing it has the same lasting effect.
  if (r?.code !== 0) await fsp.rm(flag, { force: true });
  add(acc, 'linger');
}

const IPC_TABLES = [
  { file: 'shm', idColumn: 'shmid', flag: '-m', kind: 'ipc-shm' },
  { file: 'msg', idColumn: 'msqid', flag: '-q', kind: 'ipc-msg' },
  { file: 'sem', idColumn: 'semid', flag: '-s', kind: 'ipc-sem' },
] as const;

async function sysvIpc(uid: number, dir: string, acc: Acc): Promise<void> {
  let found = false;
  for (const t of IPC_TABLES) {
    let text: string;
    try {
      text = await fsp.readFile(path.join(dir, t.file), 'utf8');
    } catch {
      continue;
    }
    found = true;
    const [header, ...rows] = text.split('\n');
    const cols = (header ?? '').trim().split(/\s+/);
    const idIx = cols.indexOf(t.idColumn);
    const uidIx = cols.indexOf('uid');
    const cuidIx = cols.indexOf('cuid');
    if (idIx < 0 || uidIx < 0 || cuidIx < 0) continue;
    const ids: string[] = [];
    for (const row of rows) {
      const f = row.trim().split(/\s+/);
      if (f.length <= Math.max(idIx, uidIx, cuidIx)) continue;
      if (Number(f[uidIx]) === uid || Number(f[cuidIx]) === uid) ids.push(f[idIx] as string);
    }
    if (ids.length === 0) continue;
    if (acc.dryRun) {
      acc.plan.push(...ids.map((id) => `${t.kind} ${id}`));
      continue;
    }
    const r = await tool(
      'ipcrm',
      ids.flatMap((id) => [t.flag, id]),
      acc.signal,
    );
    if (!r) {
      acc.skipped.push('no ipcrm');
      return;
    }
    if (r.code === 0) add(acc, t.kind, ids.length);
    else acc.problems.push(`ipcrm ${t.flag} failed: ${r.stderr.trim().slice(0, 200)}`);
  }
  if (!found) acc.skipped.push(`${dir} absent`);
}

async function mqueues(uid: number, dir: string, acc: Acc): Promise<void> {
  let names: Buffer[];
  try {
    names = await fsp.readdir(dir, { encoding: 'buffer' });
  } catch {
    acc.skipped.push(`${dir} not mounted`);
    return;
  }
  for (const name of names) {
    const entry = Buffer.concat([Buffer.from(`${dir}/`), name]);
    const st = await fsp.lstat(entry).catch(() => undefined);
    if (!st || st.uid !== uid || st.isDirectory()) continue;
    if (acc.dryRun) {
      acc.plan.push(`mqueue ${entry.toString()}`);
      continue;
    }
    try {
      await fsp.unlink(entry);
      add(acc, 'mqueue');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') acc.problems.push(`mqueue ${name.toString()}: ${describeError(err)}`);
    }
  }
}
