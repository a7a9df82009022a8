/**
 * Takes a snapshot of the enabled surfaces: the metadata walk of the file surfaces, then the
 * account databases, the package set and the kernel and network state. Used for the baseline (with
 * content hashes of small files) and for every check (metadata only; contents on demand).
 */
import path from 'node:path';
import type { HostIdentity, Snapshot, SurfaceName } from './types.js';
import { treeSurfaces, TRANSIENT_UNITS, type TreeSurface } from './surfaces.js';
import { walkTrees, type WalkResult } from './walk.js';
import { inRanges, readAccounts, readIdentity, readPackageSet, readSubIds, type IdRange, type PackageSet } from './accounts.js';
import type { ByStat } from './stat-cache.js';
import { readListeners, readModules, readMounts, readProcesses, readRoutes, readSysctls } from './kernel-state.js';
import { readNetfilter, type NetfilterShell } from './netfilter.js';
import type { GlobSet } from './glob.js';
import { readFileCaps, type FileCaps } from './file-caps.js';
import { ToolShell } from './tool-shell.js';

/** Where and what a snapshot reads. */
export interface SnapshotOptions {
  /** Prefix of the file surfaces and account databases ('/' on a host, a built tree in tests). */
  root: string;
  /** The procfs to read kernel state from ('/proc'). */
  proc: string;
  surfaces: readonly SurfaceName[];
  /** Host-view directories left out (the runner root, the agent's state, job and trash dirs). */
  excluded: readonly string[];
  /** The runner user: its processes (and those of its subordinate ids) are cleanup's, not drift. */
  jobUser?: { name: string; uid: number };
  /** Pids never reported as processes (the agent itself). */
  skipPids?: readonly number[];
  /** Run iptables-save / nft (they read the caller's namespace, whatever `root` is). Default true. */
  netfilter?: boolean;
  /** Exceptions: a directory whose whole subtree they cover is not walked. */
  exceptions?: GlobSet;
  /** Report each process started since this time on its own (the job's start; see readProcesses). */
  newProcessesSinceMs?: number;
  /** Hash every small file of the configuration surfaces (the baseline does). */
  hashSmall?: boolean;
  /** The shell that runs the netfilter tools (the guard keeps one); without it a child is started. */
  netfilterShell?: NetfilterShell;
  /** The shell that runs getcap (the guard keeps one); without it one is started for this snapshot. */
  toolShell?: ToolShell;
  /** The baseline's snapshot: file capabilities are then read only where a file changed. */
  previous?: Snapshot;
  /** The package database parsed once while it is unchanged (the guard keeps one across checks). */
  packageCache?: ByStat<PackageSet>;
  signal?: AbortSignal;
}

/** The surfaces whose small files the baseline hashes (configuration, not binaries). */
const HASHED: ReadonlySet<SurfaceName> = new Set<SurfaceName>(['etc', 'cron', 'systemd', 'authorized-keys', 'root-home', 'usr-local']);

/** True when every path below `dir` is excepted (a `dir/**`-style pattern). */
function coversSubtree(ex: GlobSet, dir: string): boolean {
  return ex.matches(dir) && ex.matches(`${dir}/\u0001`) && ex.matches(`${dir}/\u0001/\u0001`);
}

/** A snapshot and the identity of the host it was taken on. */
export async function takeSnapshot(o: SnapshotOptions): Promise<{ snapshot: Snapshot; identity: HostIdentity }> {
  const on = new Set(o.surfaces);
  const { objects: accountObjects, users } = await readAccounts(o.root);
  const objects: Record<string, string> = {};
  if (on.has('accounts')) Object.assign(objects, accountObjects);
  const names = new Map(users.map((u) => [u.uid, u.name]));
  const userName = (uid: number): string => names.get(uid) ?? String(uid);
  let ranges: IdRange[] = [];
  if (o.jobUser) {
    ranges = [...(await readSubIds(path.join(o.root, 'etc/subuid'), o.jobUser)), { start: o.jobUser.uid, count: 1 }];
  }
  // The checking process and its children (the netfilter tools below) are never drift.
  const skipPids = [...new Set([...(o.skipPids ?? []), process.pid])];
  const procs = on.has('processes')
    ? readProcesses(o.proc, userName, {
        jobUid: (uid) => inRanges(uid, ranges),
        skipPids: new Set(skipPids),
        skipUnits: new Set(TRANSIENT_UNITS),
        ...(o.newProcessesSinceMs !== undefined ? { newSinceMs: o.newProcessesSinceMs } : {}),
      })
    : Promise.resolve({});
  // Everything reads at once: the netfilter tools as children, /proc and the package database
  // through the thread pool, beside the file walk.
  const netfilter =
    on.has('netfilter') && o.netfilter !== false
      ? o.netfilterShell
        ? o.netfilterShell.read(o.signal)
        : readNetfilter(o.signal)
      : undefined;
  const packages = readPackageSet(o.root, o.packageCache);
  const readers: Promise<Record<string, string>>[] = [];
  if (on.has('modules')) readers.push(readModules(o.proc));
  if (on.has('mounts')) readers.push(readMounts(o.proc, o.excluded));
  if (on.has('routes')) readers.push(readRoutes(o.proc));
  if (on.has('sysctl')) readers.push(readSysctls(o.proc));
  if (on.has('listeners')) readers.push(readListeners(o.proc, userName, skipPids));
  readers.push(procs);
  const trees = treeSurfaces(
    on,
    users.map((u) => u.home).filter((h) => h.startsWith('/')),
  );
  const walk = walkTrees(trees, {
    root: o.root,
    excluded: o.excluded,
    ...(o.hashSmall ? { hashSurfaces: HASHED } : {}),
    ...(o.exceptions ? { prune: (p: string) => coversSubtree(o.exceptions as GlobSet, p) } : {}),
  });
  const [walked, pkgs, ...rest] = await Promise.all([walk, packages, ...readers]);
  const unreadable = [...walked.unreadable];
  if (on.has('package-state')) Object.assign(objects, pkgs.objects);
  for (const r of rest) Object.assign(objects, r);
  if (netfilter) {
    const nf = await netfilter;
    Object.assign(objects, nf.objects);
    unreadable.push(...nf.unreadable);
  }
  if (on.has('setuid')) {
    const c = await fileCaps(o, trees, walked);
    Object.assign(objects, c.objects);
    unreadable.push(...c.unreadable);
  }
  const identity = await readIdentity(o.root, o.proc, pkgs);
  return { snapshot: { files: walked.files, fileSurface: walked.fileSurface, objects, unreadable }, identity };
}

/** Files getcap is asked about by name at most (a command line well under ARG_MAX). */
const MAX_CAP_FILES = 2_000;

/**
 * File capabilities. The baseline (no `previous`) reads every tree with `getcap -r`. A check asks
 * getcap only about the files that can have changed: setting a capability changes the file's ctime,
 * so a file of the recorded trees whose metadata matches the previous snapshot keeps its capability;
 * new and changed files, and the executables of the setuid-only trees, are read (usually a handful).
 */
async function fileCaps(o: SnapshotOptions, trees: TreeSurface[], walked: WalkResult): Promise<FileCaps> {
  const ownShell = new ToolShell();
  const shell = o.toolShell ?? ownShell;
  try {
    const prev = o.previous;
    if (!prev) return await readFileCaps(o.root, [...new Set(trees.flatMap((t) => t.paths))], o.excluded, shell, o.signal);
    const objects: Record<string, string> = {};
    const ask: string[] = [...walked.executables];
    for (const [p, m] of Object.entries(walked.files)) {
      if (m.type !== 'f') continue;
      const was = prev.files[p];
      const same = was && was.ino === m.ino && was.ctimeMs === m.ctimeMs && was.size === m.size && was.mode === m.mode;
      if (!same) ask.push(p);
      else if (prev.objects[`filecap:${p}`] !== undefined) objects[`filecap:${p}`] = prev.objects[`filecap:${p}`] as string;
    }
    if (ask.length === 0) return { objects, unreadable: [] };
    // Past this many, one recursive read is cheaper than a command line that long.
    if (ask.length > MAX_CAP_FILES)
      return await readFileCaps(o.root, [...new Set(trees.flatMap((t) => t.paths))], o.excluded, shell, o.signal);
    const read = await readFileCaps(o.root, [...new Set(ask)], o.excluded, shell, o.signal);
    return { objects: { ...objects, ...read.objects }, unreadable: read.unreadable };
  } finally {
    ownShell.close();
  }
}
