/**
 * The independent verification. It trusts none of the steps' results and looks
 * at the host itself: processes of the runner user, `_work`, the credential catalogue, the home
 * against its baseline, temp directories, the user's system objects (crontab, at jobs, SysV IPC,
 * POSIX message queues), the runner installation against its manifest, free disk and inodes, and
 * the engine's containers. Each problem is one line; any problem means the host is not clean and
 * must be quarantined, never reused.
 *
 * It only lstats, reads directories and hashes regular files that are not sparse (opened
 * O_NOFOLLOW|O_NONBLOCK and fstat-checked): it never opens a FIFO, socket or device and never
 * follows a symlink. Each check is bounded and checked independently: one that throws becomes a
 * problem line of its own, the others still run.
 */
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { describeError } from '../lib/errors.js';
import { openProcessContainer } from '../lib/cgroup.js';
import { processesOfUid } from './proc.js';
import { readMountInfo, mountsUnder, attributeMount } from './mounts.js';
import { bytes, fromText, joinRel, shown, isGone, safeRel } from '../lib/nofollow.js';
import { loadBaseline, tick, KeepSet, type HomeBaseline } from './baseline.js';
import { diffHome, describeDiff } from './home-diff.js';
import { hasAttrTools, findDirAttrs, recordedDirs } from './home-attrs.js';
import { loadInstallManifest, diffInstall, describeInstallDiff, strayQuarantineCopy } from './install-manifest.js';
import { leftoverCredentials, describeCredential } from './steps/credentials.js';
import { runtimeDirOf } from './steps/temp.js';
import { DockerApi, isNoEngine } from './docker-api.js';
import { listJobResources } from './steps/containers.js';
import type { CleanupContext, VerifyReport } from './types.js';

/** Problem lines kept in a report; the rest is counted in one last line. */
export const MAX_PROBLEMS = 200;
/**
 * Entries a temp directory walk looks at, at most. /tmp of a busy host holds thousands; a job that
 * leaves millions makes the check give up, and giving up is a problem line (dirty), not a pass.
 */
export const TEMP_WALK_LIMIT = 500_000;
/** Work between yields to the event loop during the temp walk. */
const YIELD_EVERY = 2_000;

/** Where verify looks for the user's system objects; tests point these into their lab. */
export interface VerifyOptions {
  procRoot?: string;
  mountinfoFile?: string;
  /** Per-user crontab spool; default /var/spool/cron/crontabs. */
  crontabDir?: string;
  /** at(1) job spool; default /var/spool/cron/atjobs. */
  atJobsDir?: string;
  /** Default /proc/sysvipc. */
  sysvipcDir?: string;
  /** Default /dev/mqueue. */
  mqueueDir?: string;
}

/** What the checks share: the home baseline is loaded once (it can be megabytes of JSON). */
interface Shared {
  baseline: () => Promise<HomeBaseline | undefined>;
}

type Check = (ctx: CleanupContext, o: VerifyOptions, out: string[], report: VerifyReport, shared: Shared) => Promise<void>;

/** Verifies the host with the default locations. */
export function verify(ctx: CleanupContext): Promise<VerifyReport> {
  return verifyWith(ctx, {});
}

/** Verifies the host; each check appends its problems. */
export async function verifyWith(ctx: CleanupContext, o: VerifyOptions): Promise<VerifyReport> {
  const started = ctx.clock.now();
  const report: VerifyReport = { clean: false, durationMs: 0, problems: [] };
  const checks: [string, Check][] = [
    ['processes', checkProcesses],
    ['mounts', checkMounts],
    ['workdir', checkWorkdir],
    ['diag', checkDiag],
    ['credentials', checkCredentials],
    ['home', checkHome],
    ['temp', checkTemp],
    ['system', checkSystem],
    ['runner-install', checkInstall],
    ['disk', checkDisk],
    ['containers', checkContainers],
  ];
  let loaded: Promise<HomeBaseline | undefined> | undefined;
  const shared: Shared = { baseline: () => (loaded ??= loadBaseline(ctx.slot)) };
  // The checks only read, each its own part of the host, so they run side by side (most of them
  // wait on the kernel or a child process); the problems keep the checks' order.
  const found = await Promise.all(
    checks.map(async ([name, check]) => {
      const out: string[] = [];
      const t0 = ctx.clock.now();
      try {
        await check(ctx, o, out, report, shared);
      } catch (err) {
        out.push(`verify ${name}: check failed: ${describeError(err)}`);
      }
      ctx.log.debug({ check: name, durationMs: ctx.clock.now() - t0, problems: out.length }, 'verify check done');
      return out;
    }),
  );
  const problems = found.flat();
  report.problems =
    problems.length > MAX_PROBLEMS
      ? [...problems.slice(0, MAX_PROBLEMS), `... and ${problems.length - MAX_PROBLEMS} more problems`]
      : problems;
  report.clean = problems.length === 0;
  report.durationMs = ctx.clock.now() - started;
  return report;
}

const checkProcesses: Check = async (ctx, o, out) => {
  if (!ctx.policy.processes.enabled) return;
  const exempt = (pid: number): boolean => pid === process.pid || ctx.protectedPids.has(pid);
  for (const p of await processesOfUid(ctx.slot.user.uid, o.procRoot)) {
    if (!exempt(p.pid)) out.push(`process ${p.pid} (${p.comm}) of the runner user is still alive`);
  }
  if (ctx.slot.cgroup) {
    let pids: number[] = [];
    try {
      pids = await openProcessContainer(ctx.slot.cgroup).pids();
    } catch (err) {
      if (!isGone(err)) throw err;
    }
    for (const pid of pids) if (!exempt(pid)) out.push(`process ${pid} is still in the job's cgroup`);
  }
};

const checkMounts: Check = async (ctx, o, out, report) => {
  const mounts = await readMountInfo(o.mountinfoFile);
  // A kept path may be a volume the admin mounts on purpose (a tool cache): not a leftover.
  const places: { dir: string; keep: string[] }[] = [
    { dir: ctx.slot.workDir, keep: ctx.policy.workdir.keep },
    { dir: ctx.slot.user.home, keep: ctx.policy.home.keep },
    ...(ctx.policy.temp.enabled ? ctx.policy.temp.paths.map((dir) => ({ dir, keep: [] })) : []),
  ];
  // Only mounts the job could have made count against it (mounts.ts attributeMount); the others
  // (a root-owned mount another service made under /tmp) are reported in the notices.
  const grants = ctx.fullPolicy as { runner?: { sudo?: string }; docker?: { mode?: string } };
  const jobMayBeRoot = (grants.runner?.sudo !== undefined && grants.runner.sudo !== 'deny') || grants.docker?.mode === 'host';
  const jobTrees = [ctx.slot.workDir, ctx.slot.user.home, ctx.slot.jobRoot];
  for (const { dir, keep } of places) {
    const kept = keep
      .map((k) => safeRel(k))
      .filter((k): k is string => k !== undefined)
      .map((k) => path.join(dir, k));
    for (const m of mountsUnder(mounts, dir)) {
      if (kept.some((k) => m.mountPointText === k || m.mountPointText.startsWith(`${k}/`))) continue;
      const rootSt = await lstatOrUndef(m.mountPoint).catch(() => undefined);
      const parentSt = await lstatOrUndef(path.dirname(m.mountPointText)).catch(() => undefined);
      const origin = attributeMount(m, {
        uid: ctx.slot.user.uid,
        jobTrees,
        jobMayBeRoot,
        ...(rootSt ? { rootUid: rootSt.uid } : {}),
        ...(parentSt ? { parentUid: parentSt.uid } : {}),
      });
      if (origin === 'job') out.push(`mount ${m.mountPointText} inside ${dir}`);
      else
        (report.notices ??= []).push(
          `mount ${m.mountPointText} (${m.fsType} from ${m.source}) inside ${dir}: not the job's (root-owned, not made by the runner user); left alone`,
        );
    }
  }
};

async function lstatOrUndef(p: Buffer | string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
}

const checkWorkdir: Check = async (ctx, _o, out) => {
  if (!ctx.policy.workdir.enabled) return;
  const work = fromText(ctx.slot.workDir);
  const st = await lstatOrUndef(bytes(work));
  if (!st) return; // no _work at all is empty
  if (!st.isDirectory()) {
    out.push(`_work ${ctx.slot.workDir} is not a directory`);
    return;
  }
  // The workdir step sets them: anything else lets another user in, or fails the next job.
  if ((st.mode & 0o7777) !== 0o755 || st.uid !== ctx.slot.user.uid)
    out.push(`_work ${ctx.slot.workDir} has mode ${(st.mode & 0o7777).toString(8)} and owner ${st.uid}, not 755 and the runner user`);
  const keep = ctx.policy.workdir.keep
    .map((k) => safeRel(k))
    .filter((k): k is string => k !== undefined)
    .map(fromText);
  // Walk only the ancestors of kept paths; anything else found is a leftover.
  const queue = [''];
  while (queue.length > 0) {
    const rel = queue.pop() as string;
    const names = await fsp.readdir(bytes(rel === '' ? work : `${work}/${rel}`), { encoding: 'buffer' });
    for (const b of names) {
      const child = joinRel(rel, b.toString('latin1'));
      const cst = await lstatOrUndef(bytes(`${work}/${child}`));
      if (!cst) continue;
      if (keep.includes(child)) {
        if (cst.isSymbolicLink()) out.push(`_work: kept entry ${shown(child)} is a symlink`);
        continue;
      }
      if (cst.isDirectory() && keep.some((k) => k.startsWith(`${child}/`))) queue.push(child);
      else out.push(`_work: ${shown(child)} left behind`);
    }
  }
};

const checkDiag: Check = async (ctx, _o, out) => {
  if (!ctx.policy.workdir.enabled) return;
  const diag = path.join(ctx.slot.runnerRoot, '_diag');
  const st = await lstatOrUndef(diag);
  if (!st) return;
  if (!st.isDirectory()) {
    out.push(`_diag ${diag} is not a directory`);
    return;
  }
  const left = await fsp.readdir(diag, { encoding: 'buffer' });
  if (left.length > 0)
    out.push(`_diag: ${left.length} runner log entr${left.length === 1 ? 'y' : 'ies'} left (the next job could read this job's output)`);
};

const checkCredentials: Check = async (ctx, _o, out, _r, shared) => {
  if (!ctx.policy.credentials.enabled) return;
  const baseline = await shared.baseline();
  const { found } = await leftoverCredentials(ctx, baseline);
  for (const f of found) out.push(`credential file ${describeCredential(f)} still present`);
};

const checkHome: Check = async (ctx, _o, out, report, shared) => {
  if (!ctx.policy.home.enabled) return;
  const baseline = await shared.baseline();
  if (!baseline) {
    out.push('home: no baseline to compare with (run runner-warden baseline)');
    return;
  }
  const diff = await diffHome(ctx.slot, baseline, { keep: ctx.policy.home.keep, clock: ctx.clock });
  out.push(...describeDiff(diff));
  if (hasAttrTools()) {
    out.push(...(await findDirAttrs(fromText(ctx.slot.user.home), recordedDirs(baseline, new KeepSet(ctx.policy.home.keep)))));
  } else {
    (report.notices ??= []).push('home: ACLs and user attributes of recorded directories not checked (needs the acl and attr packages)');
  }
};

/** The runner user's groups (primary and supplementary), from the group database. */
async function groupsOf(user: { name: string; gid: number }): Promise<Set<number>> {
  const gids = new Set([user.gid]);
  const text = await fsp.readFile('/etc/group', 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if ((f[3] ?? '').split(',').includes(user.name)) gids.add(Number(f[2]));
  }
  return gids;
}

const checkTemp: Check = async (ctx, _o, out) => {
  if (!ctx.policy.temp.enabled) return;
  const uid = ctx.slot.user.uid;
  const gids = await groupsOf(ctx.slot.user);
  // The runner user can only have created entries in directories it can write to: a directory
  // neither world- nor group-writable for it (a root 0755 tree such as a checkout's node_modules
  // in /var/tmp) cannot hold anything of the job's and is not walked.
  const writable = (st: Stats): boolean => (st.mode & 0o002) !== 0 || ((st.mode & 0o020) !== 0 && gids.has(st.gid));
  for (const dir of [...ctx.policy.temp.paths, runtimeDirOf(uid)]) {
    const root = fromText(dir);
    const rootSt = await lstatOrUndef(bytes(root));
    if (!rootSt?.isDirectory()) continue;
    let visited = 0;
    const queue = [''];
    while (queue.length > 0) {
      const rel = queue.pop() as string;
      let names: Buffer[];
      try {
        names = await fsp.readdir(bytes(rel === '' ? root : `${root}/${rel}`), { encoding: 'buffer' });
      } catch (err) {
        if (isGone(err)) continue;
        throw err;
      }
      for (const b of names) {
        if (++visited > TEMP_WALK_LIMIT) {
          out.push(`temp: ${dir} holds more than ${TEMP_WALK_LIMIT} entries; not verified`);
          return;
        }
        if (visited % YIELD_EVERY === 0) await tick();
        const child = joinRel(rel, b.toString('latin1'));
        const st = await lstatOrUndef(bytes(`${root}/${child}`));
        if (!st) continue;
        if (st.uid === uid) out.push(`temp: ${path.join(dir, shown(child))} belongs to the runner user`);
        // Its own subtree is reported as one line; another filesystem is not walked into.
        else if (st.isDirectory() && st.dev === rootSt.dev && writable(st)) queue.push(child);
      }
    }
  }
};

async function listIfDir(dir: string): Promise<string[]> {
  try {
    return await fsp.readdir(dir);
  } catch (err) {
    if (isGone(err)) return [];
    throw err;
  }
}

/** Rows of a /proc/sysvipc table owned (uid or cuid) by `uid`: the ids. */
export function sysvipcOwned(table: string, uid: number): string[] {
  const lines = table.trim().split('\n');
  const head = (lines.shift() ?? '').trim().split(/\s+/);
  const idCol = head.findIndex((h) => h === 'shmid' || h === 'semid' || h === 'msqid');
  const uidCols = [head.indexOf('uid'), head.indexOf('cuid')].filter((i) => i >= 0);
  const ids: string[] = [];
  for (const line of lines) {
    const f = line.trim().split(/\s+/);
    if (uidCols.some((i) => Number(f[i]) === uid)) ids.push(f[idCol] ?? '?');
  }
  return ids;
}

const checkSystem: Check = async (ctx, o, out) => {
  if (!ctx.policy.system.enabled) return;
  const { uid, name } = ctx.slot.user;
  const crontabs = o.crontabDir ?? '/var/spool/cron/crontabs';
  if (await lstatOrUndef(path.join(crontabs, name))) out.push(`system: crontab of ${name} exists`);
  const atDir = o.atJobsDir ?? '/var/spool/cron/atjobs';
  for (const f of await listIfDir(atDir)) {
    const st = await lstatOrUndef(path.join(atDir, f));
    if (st?.isFile() && st.uid === uid) out.push(`system: at job ${f} of ${name} queued`);
  }
  const ipc = o.sysvipcDir ?? '/proc/sysvipc';
  for (const kind of ['shm', 'sem', 'msg']) {
    let table: string;
    try {
      table = await fsp.readFile(path.join(ipc, kind), 'utf8');
    } catch (err) {
      if (isGone(err)) continue;
      throw err;
    }
    for (const id of sysvipcOwned(table, uid)) out.push(`system: SysV ${kind} ${id} of ${name} exists`);
  }
  const mq = o.mqueueDir ?? '/dev/mqueue';
  for (const f of await listIfDir(mq)) {
    const st = await lstatOrUndef(path.join(mq, f));
    if (st?.uid === uid) out.push(`system: POSIX message queue ${f} of ${name} exists`);
  }
};

const checkInstall: Check = async (ctx, _o, out) => {
  if (!ctx.policy.runnerInstall.enabled) return;
  const m = await loadInstallManifest(ctx.slot);
  if (!m) {
    out.push('runner install: no manifest to compare with (taken at boot)');
    return;
  }
  out.push(...describeInstallDiff(ctx.slot, await diffInstall(ctx.slot, m, ctx.clock)));
  const stray = await strayQuarantineCopy(ctx.slot);
  if (stray) out.push(`runner install: ${stray}`);
};

/**
 * Free space is measured and reported, never a verification problem: a host short of disk is
 * clean and is recycled by the decision (disk-low), not quarantined.
 */
const checkDisk: Check = async (ctx, _o, _out, report) => {
  report.disk = await measureWorkDisk(ctx.slot.workDir);
};

/** Free space and inodes (percent, one decimal) of the filesystem that holds `workDir`. */
export async function measureWorkDisk(workDir: string): Promise<{ freePercent: number; freeInodesPercent: number }> {
  // A missing _work (emptied, not yet recreated) is measured on the filesystem that will hold it.
  let target = path.resolve(workDir);
  while (target !== '/' && !(await lstatOrUndef(target))) target = path.dirname(target);
  const s = await fsp.statfs(target);
  const freePercent = s.blocks > 0 ? (s.bavail / s.blocks) * 100 : 100;
  // Some filesystems (btrfs) report no inode counts: they have no inode limit to run out of.
  const freeInodesPercent = s.files > 0 ? (s.ffree / s.files) * 100 : 100;
  return { freePercent: round1(freePercent), freeInodesPercent: round1(freeInodesPercent) };
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

const checkContainers: Check = async (ctx, _o, out) => {
  const p = ctx.policy.containers;
  if (!p.enabled) return;
  const api = new DockerApi(p.socket, ctx.signal);
  try {
    await api.version();
  } catch (err) {
    if (isNoEngine(err)) return; // no engine reachable: nothing to check
    throw err;
  }
  const left = await listJobResources(api, { ...ctx, policy: { ...ctx.policy, containers: { ...p, images: 'keep' } } });
  for (const c of left.containers) out.push(`container ${c.Id.slice(0, 12)} ${c.Names?.[0] ?? ''} left`.replace(/ +left$/, ' left'));
  for (const v of left.volumes) out.push(`volume ${v.Name} left`);
  for (const n of left.networks) out.push(`network ${n.Name} left`);
};
