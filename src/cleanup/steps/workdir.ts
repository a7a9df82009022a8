/**
 * Step "workdir": empty `_work` except what policy.workdir.keep names, and remove the per-job
 * directories (job-dirs.ts).
 *
 * Order, each stage refusing to go on when the previous one could not make things safe:
 * 1. check the work dir itself: a real directory reached without symlinks (a job that owns the
 *    runner root could swap `_work` for a link to /etc); a `_work` that is itself a link is
 *    unlinked (the link, never its target) and recreated;
 * 2. detach every mount under it (mounts.ts); one that stays → outcome dirty, nothing moved;
 * 3. rename each entry into the trash (trash.ts); the host is ready after this;
 * 4. delete the trash in the background: by the trash's owner when one is passed in (the agent
 *    drains it off the critical path), else right here before returning.
 * Kept entries may be nested ("_tool/node"): their parents are kept as directories and every
 * sibling is moved. A kept name that is a symlink is moved too: a tool cache is never a link.
 */
import { promises as fsp, constants as fsc } from 'node:fs';
import path from 'node:path';
import type { CleanupContext, CleanupStep, Removed, StepReport } from '../types.js';
import { describeError } from '../../lib/errors.js';
import { Trash } from '../trash.js';
import { readMountInfo, mountsUnder, unmountUnder, type MountEntry } from '../mounts.js';
import { removeJobDirs } from '../job-dirs.js';

/** Options of the workdir step; defaults: own trash drained in the step, the real mountinfo. */
export interface WorkdirStepOptions {
  /**
   * The slot's trash, owned by the caller, who drains it in the background. Without it the step
   * makes its own for slot.trashDir and drains it before returning (slower, same safety).
   */
  trash?: Trash;
  mountinfoFile?: string;
  /** The umount program (tests use `false` to simulate a mount that will not go). */
  umountCommand?: string;
}

/** Creates the "workdir" step. */
export function createWorkdirStep(opts: WorkdirStepOptions = {}): CleanupStep {
  return { name: 'workdir', run: (ctx) => runWorkdir(ctx, opts) };
}

type Result = Omit<StepReport, 'name' | 'durationMs'>;

/** A tree of kept paths: name → nested keeps (empty map = keep the whole entry). */
type KeepTree = Map<string, KeepTree>;

/** Longest list kept in a dry-run plan. */
const PLAN_CAP = 200;

async function runWorkdir(ctx: CleanupContext, opts: WorkdirStepOptions): Promise<Result> {
  if (!ctx.policy.workdir.enabled) return { outcome: 'skipped', removed: {}, reason: 'disabled by policy' };
  const { slot } = ctx;
  const log = ctx.log.child({ step: 'workdir' });
  const workDir = path.resolve(slot.workDir);
  const removed: Record<string, Removed> = {};
  const add = (kind: string, count: number, bytes = 0): void => {
    const r = (removed[kind] ??= { count: 0, bytes: 0 });
    r.count += count;
    r.bytes += bytes;
  };
  const plan: string[] = [];
  const problems: string[] = [];
  const trash = opts.trash ?? new Trash(slot.trashDir, ctx.log, { mountinfoFile: opts.mountinfoFile });

  // 1. The work dir itself.
  let st;
  try {
    st = await fsp.lstat(workDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (st?.isSymbolicLink()) {
    if (ctx.dryRun) plan.push(`unlink symlink ${workDir}`);
    else {
      await fsp.unlink(workDir);
      add('symlink', 1);
      st = undefined;
    }
  } else if (st && !st.isDirectory()) {
    return { outcome: 'dirty', removed, reason: `${workDir} is not a directory` };
  }
  if (!st && !ctx.dryRun) {
    await fsp.mkdir(workDir, { mode: 0o755 });
    await fsp.lchown(workDir, slot.user.uid, slot.user.gid);
  }
  if (!ctx.dryRun && (await fsp.realpath(workDir)) !== workDir) {
    return { outcome: 'dirty', removed, reason: `${workDir} is reached through a symlink` };
  }
  // Not through a mount on _work itself: its root is someone else's directory (a privileged job's
  // bind mount of /etc), or an admin's volume, and either way not ours to chown.
  const selfMount = mountsUnder(await readMountInfo(opts.mountinfoFile), workDir, true).some((m) =>
    m.mountPoint.equals(Buffer.from(workDir)),
  );
  if (st && !ctx.dryRun && !selfMount) await resetWorkDirMode(workDir, slot.user);
  const trashDir = path.resolve(slot.trashDir);
  const trashInside = trashDir.startsWith(`${workDir}/`);
  if (trashInside && path.dirname(trashDir) !== workDir) {
    return { outcome: 'failed', removed, reason: 'trash dir must be directly in the work dir or outside it' };
  }
  const keep = keepTree(ctx.policy.workdir.keep);
  if (trashInside) keep.set(path.basename(trashDir), new Map());

  if (ctx.dryRun) {
    if (st) {
      for (const m of mountsUnder(await readMountInfo(opts.mountinfoFile), workDir)) {
        plan.push(`unmount ${m.mountPointText}`);
      }
      await walkEntries(Buffer.from(workDir), keep, async (entry) => {
        plan.push(`move ${entry.toString()}`);
      });
    }
    const jd = await removeJobDirs(slot, trash, { dryRun: true });
    plan.push(...jd.plan);
    return { outcome: 'ok', removed, plan: capList(plan) };
  }

  // 2. Mounts.
  const un = await unmountUnder(workDir, {
    mountinfoFile: opts.mountinfoFile,
    umountCommand: opts.umountCommand,
    signal: ctx.signal,
  });
  if (un.unmounted.length > 0) add('mount', un.unmounted.length);
  if (un.remaining.length > 0) {
    return {
      outcome: 'dirty',
      removed,
      reason: `mount under work dir could not be detached: ${un.remaining[0]}`,
    };
  }

  // 3. Renames into the trash.
  try {
    await trash.ensure();
    const [w, t] = await Promise.all([fsp.stat(workDir), fsp.stat(trash.dir)]);
    if (w.dev !== t.dev) return { outcome: 'dirty', removed, reason: 'trash dir is on another filesystem than the work dir' };
  } catch (err) {
    return { outcome: 'dirty', removed, reason: `trash unusable: ${describeError(err)}` };
  }
  const mounts: MountEntry[] = await readMountInfo(opts.mountinfoFile);
  await walkEntries(Buffer.from(workDir), keep, async (entry) => {
    try {
      await trash.put(entry, { mounts });
      add('entry', 1);
    } catch (err) {
      problems.push(`${entry.toString()}: ${describeError(err)}`);
    }
  });

  // The runner's _diag: the worker log and step pages hold the job's output, readable by the next
  // job (same user). Emptied like _work; a _diag that is a symlink is replaced, never followed.
  await emptyDiag(slot.runnerRoot, trash, mounts, add, problems);

  // Per-job HOME/TMPDIR/DOCKER_CONFIG.
  const jd = await removeJobDirs(slot, trash, {
    mountinfoFile: opts.mountinfoFile,
    umountCommand: opts.umountCommand,
    signal: ctx.signal,
  });
  if (jd.count > 0) add('job-dir', jd.count, jd.bytes);
  problems.push(...jd.problems);

  // 4. Deletion: here only when nobody else owns the trash.
  if (!opts.trash) {
    const d = await trash.drain(ctx.signal);
    add('file', d.count, d.bytes);
    if (d.remaining > 0) problems.push(`${d.remaining} trash entr(ies) could not be deleted`);
  }

  if (problems.length > 0) {
    log.warn({ problems: problems.slice(0, 5) }, 'work dir not fully cleaned');
    return { outcome: 'dirty', removed, reason: `${problems.length} problem(s): ${problems[0]}` };
  }
  return { outcome: 'ok', removed };
}

/** Moves every entry of `<runnerRoot>/_diag` into the trash (the runner recreates its logs). */
async function emptyDiag(
  runnerRoot: string,
  trash: Trash,
  mounts: MountEntry[],
  add: (kind: string, count: number, bytes?: number) => void,
  problems: string[],
): Promise<void> {
  const diag = path.join(path.resolve(runnerRoot), '_diag');
  let st;
  try {
    st = await fsp.lstat(diag);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isDirectory()) {
    // A job replaced _diag by a link or a file: move the entry itself, never what it points to.
    try {
      await trash.put(diag, { mounts });
      add('diag', 1);
    } catch (err) {
      problems.push(`${diag}: ${describeError(err)}`);
    }
    return;
  }
  for (const name of await fsp.readdir(diag, { encoding: 'buffer' })) {
    const entry = Buffer.concat([Buffer.from(`${diag}/`), name]);
    try {
      await trash.put(entry, { mounts });
      add('diag', 1);
    } catch (err) {
      problems.push(`${entry.toString()}: ${describeError(err)}`);
    }
  }
}

/** Parses keep paths ("_tool", "_tool/node") into a tree; empty and ".." parts are ignored. */
/**
 * Mode and owner of `_work` itself as the agent makes it (runner user, 0755), set through a
 * no-follow handle. Only its entries go to the trash, so a job that chmods `_work` 000 would
 * otherwise fail every later job on a host called clean, and one that makes it 0777 (or setgid)
 * would let any local user plant files in the next job's workspace.
 */
async function resetWorkDirMode(workDir: string, user: { uid: number; gid: number }): Promise<void> {
  const fh = await fsp.open(workDir, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
  try {
    await fh.chown(user.uid, user.gid);
    await fh.chmod(0o755); // after chown, which clears set-id bits
  } finally {
    await fh.close();
  }
}

function keepTree(keep: string[]): KeepTree {
  const root: KeepTree = new Map();
  for (const k of keep) {
    const parts = k.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
    if (parts.length === 0) continue;
    let node = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      const existing = node.get(part);
      const last = i === parts.length - 1;
      if (existing && existing.size === 0 && !last) break; // a parent is already kept whole
      const next: KeepTree = last ? new Map<string, KeepTree>() : (existing ?? new Map<string, KeepTree>());
      node.set(part, next);
      node = next;
    }
  }
  return root;
}

/**
 * Calls `visit` for every entry of `dir` that is not kept, descending into partly kept
 * directories (lstat: a link is never descended into, it is visited).
 */
async function walkEntries(dir: Buffer, keep: KeepTree, visit: (entry: Buffer) => Promise<void>): Promise<void> {
  const names = await fsp.readdir(dir, { encoding: 'buffer' });
  for (const name of names) {
    const entry = Buffer.concat([dir, Buffer.from('/'), name]);
    const text = name.toString('utf8');
    const k = Buffer.from(text).equals(name) ? keep.get(text) : undefined;
    if (k === undefined) {
      await visit(entry);
      continue;
    }
    const st = await fsp.lstat(entry);
    if (st.isSymbolicLink()) {
      await visit(entry);
    } else if (k.size > 0) {
      if (st.isDirectory()) await walkEntries(entry, k, visit);
      else await visit(entry);
    }
    // else: kept whole.
  }
}

function capList(list: string[]): string[] {
  if (list.length <= PLAN_CAP) return list;
  return [...list.slice(0, PLAN_CAP), `... and ${list.length - PLAN_CAP} more`];
}
