/**
 * Reads the enabled surfaces: the metadata walk of the file surfaces, beside the account
 * databases, the package set and the kernel and network state. The baseline keeps the file entries
 * in a compact table (with content hashes of small files); a check compares each entry with that
 * table as the walk hands it over and keeps only the differences (contents read on demand).
 */
import path from 'node:path';
import type { BaselineSnapshot, DriftEntry, FileMeta, HostIdentity, Snapshot, SurfaceName } from './types.js';
import { surfaceExceptions, treeSurfaces, TRANSIENT_UNITS, type TreeSurface } from './surfaces.js';
import { walkTrees } from './walk.js';
import { FileTable } from './file-table.js';
import { compareObjects, FileComparer, sortDrift, type CompareOptions } from './compare.js';
import { inRanges, readAccounts, readIdentity, readPackageSet, readSubIds, type IdRange, type PackageSet } from './accounts.js';
import type { ByStat } from './stat-cache.js';
import { readListeners, readModules, readMounts, readProcesses, readRoutes, readSysctls, type UnitClaim } from './kernel-state.js';
import { unconfirmedUnits } from './unit-claims.js';
import type { ProcEntry } from './proc-table.js';
import { readNetfilter, type NetfilterShell } from './netfilter.js';
import type { GlobSet } from './glob.js';
import { readFileCaps, type FileCaps } from './file-caps.js';
import { readFileAcls } from './file-acls.js';
import { ToolShell } from './tool-shell.js';
import { BPF_WATERMARK_KEY, formatWatermark, readBpf, type BpfWatermark } from './bpf-state.js';

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
  /** The package database parsed once while it is unchanged (the guard keeps one across checks). */
  packageCache?: ByStat<PackageSet>;
  /** The processes, when the caller read /proc already this verification (proc-table.ts). */
  procTable?: readonly ProcEntry[];
  /**
   * eBPF objects above this watermark are reported (bpf-state.ts), each read again after a short
   * wait before it counts; undefined (the baseline) reads every one that PID 1 does not hold.
   */
  bpfSince?: BpfWatermark;
  /** The bpftool binary (tests); default: PATH, then /usr/sbin/bpftool. */
  bpftool?: string;
  /** Process keys the baseline holds (a check): their units are read only for processes new since the job. */
  knownProcess?: (key: string) => boolean;
  signal?: AbortSignal;
}

/** The surfaces whose small files the baseline hashes (configuration, not binaries). */
const HASHED: ReadonlySet<SurfaceName> = new Set<SurfaceName>(['etc', 'cron', 'systemd', 'authorized-keys', 'root-home', 'usr-local']);

/** True when every path below `dir` is excepted (a `dir/**`-style pattern). */
function coversSubtree(ex: GlobSet, dir: string): boolean {
  return ex.matches(dir) && ex.matches(`${dir}/\u0001`) && ex.matches(`${dir}/\u0001/\u0001`);
}

/** Everything a snapshot reads besides the file entries, which go to the walk's visitor. */
interface Scan {
  objects: Record<string, string>;
  unreadable: string[];
  identity: HostIdentity;
  trees: TreeSurface[];
  executables: string[];
  /** The highest eBPF ids at the read; undefined without the bpf surface or bpftool. */
  bpfWatermark?: BpfWatermark;
}

/**
 * Reads every enabled surface; file entries go to `visit`, the rest is returned. The netfilter
 * tools (children of their own shells) and the package database (the thread pool, when it
 * changed) are started first and run while the main thread reads /proc, the account databases and
 * walks the file trees, all synchronously: on two cores, work handed to more threads cost more
 * CPU than it saved in wall time (docs/integrity.md, "Cost").
 */
async function scan(o: SnapshotOptions, visit: (tree: TreeSurface, rank: number, p: string, m: FileMeta) => void): Promise<Scan> {
  const on = new Set(o.surfaces);
  const netfilter =
    on.has('netfilter') && o.netfilter !== false
      ? o.netfilterShell
        ? o.netfilterShell.read(o.signal)
        : readNetfilter(o.signal)
      : undefined;
  const packages = readPackageSet(o.root, o.packageCache);
  const bpfShell = on.has('bpf') && !o.toolShell ? new ToolShell() : undefined;
  const bpf = on.has('bpf')
    ? readBpf({
        proc: o.proc,
        shell: o.toolShell ?? (bpfShell as ToolShell),
        ...(o.bpftool ? { bpftool: o.bpftool } : {}),
        ...(o.bpfSince ? { since: o.bpfSince, settle: true } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      }).finally(() => bpfShell?.close())
    : undefined;
  const { objects: accountObjects, users } = readAccounts(o.root);
  const objects: Record<string, string> = {};
  if (on.has('accounts')) Object.assign(objects, accountObjects);
  const names = new Map(users.map((u) => [u.uid, u.name]));
  const userName = (uid: number): string => names.get(uid) ?? String(uid);
  let ranges: IdRange[] = [];
  if (o.jobUser) {
    ranges = [...readSubIds(path.join(o.root, 'etc/subuid'), o.jobUser), { start: o.jobUser.uid, count: 1 }];
  }
  // The checking process and its children (the netfilter tools) are never drift.
  const skipPids = [...new Set([...(o.skipPids ?? []), process.pid])];
  const unitClaims: UnitClaim[] = [];
  if (on.has('processes')) {
    Object.assign(
      objects,
      readProcesses(o.proc, userName, {
        jobUid: (uid) => inRanges(uid, ranges),
        skipPids: new Set(skipPids),
        skipUnits: new Set(TRANSIENT_UNITS),
        ...(o.newProcessesSinceMs !== undefined ? { newSinceMs: o.newProcessesSinceMs } : {}),
        ...(o.knownProcess ? { known: o.knownProcess } : {}),
        ...(o.procTable ? { table: o.procTable } : {}),
        unitClaims,
      }),
    );
  }
  if (on.has('modules')) Object.assign(objects, readModules(o.proc));
  if (on.has('mounts')) Object.assign(objects, readMounts(o.proc, o.excluded));
  if (on.has('routes')) Object.assign(objects, readRoutes(o.proc));
  if (on.has('sysctl')) Object.assign(objects, readSysctls(o.proc));
  if (on.has('listeners')) Object.assign(objects, readListeners(o.proc, userName, skipPids));
  const trees = treeSurfaces(
    on,
    users.map((u) => u.home).filter((h) => h.startsWith('/')),
  );
  const bySurface = surfaceExceptions();
  // A path two trees reach belongs to the first tree of its surface list: rank by surface.
  const rank = trees.map((t) => trees.findIndex((u) => u.surface === t.surface));
  const walked = await walkTrees(
    trees,
    {
      root: o.root,
      excluded: o.excluded,
      ...(o.hashSmall ? { hashSurfaces: HASHED } : {}),
      prune: (p: string, surface: SurfaceName) =>
        (o.exceptions !== undefined && coversSubtree(o.exceptions, p)) ||
        (bySurface[surface] !== undefined && coversSubtree(bySurface[surface], p)),
    },
    (tree, p, m) => visit(trees[tree] as TreeSurface, rank[tree] as number, p, m),
  );
  const pkgs = await packages;
  const unreadable = [...walked.unreadable];
  if (on.has('package-state')) Object.assign(objects, pkgs.objects);
  if (netfilter) {
    const nf = await netfilter;
    Object.assign(objects, nf.objects);
    unreadable.push(...nf.unreadable);
  }
  const bpfRead = await bpf;
  if (bpfRead) {
    Object.assign(objects, bpfRead.objects);
    unreadable.push(...bpfRead.unreadable);
  }
  if (unitClaims.length > 0) {
    const ownShell = o.toolShell ? undefined : new ToolShell();
    try {
      for (const [k, v] of Object.entries(await unconfirmedUnits(unitClaims, o.toolShell ?? (ownShell as ToolShell), o.signal)))
        objects[k] ??= v;
    } finally {
      ownShell?.close();
    }
  }
  const identity = readIdentity(o.root, o.proc, pkgs);
  return {
    objects,
    unreadable,
    identity,
    trees,
    executables: walked.executables,
    ...(bpfRead?.watermark ? { bpfWatermark: bpfRead.watermark } : {}),
  };
}

/** Every file capability under the trees (`getcap -r`): what a baseline records. */
async function allFileCaps(o: SnapshotOptions, trees: TreeSurface[]): Promise<FileCaps> {
  const ownShell = new ToolShell();
  try {
    return await readFileCaps(o.root, [...new Set(trees.flatMap((t) => t.paths))], o.excluded, o.toolShell ?? ownShell, o.signal);
  } finally {
    ownShell.close();
  }
}

/** Every file with an extended ACL under the trees (`getfacl -R -s`): what a baseline records. */
async function allFileAcls(o: SnapshotOptions, trees: TreeSurface[]): Promise<FileCaps> {
  const ownShell = new ToolShell();
  try {
    return await readFileAcls(o.root, [...new Set(trees.flatMap((t) => t.paths))], true, o.excluded, o.toolShell ?? ownShell, o.signal);
  } finally {
    ownShell.close();
  }
}

/** A snapshot held whole, as plain records (small trees and tests); the guard streams instead. */
export async function takeSnapshot(o: SnapshotOptions): Promise<{ snapshot: Snapshot; identity: HostIdentity }> {
  const files: Record<string, FileMeta> = {};
  const fileSurface: Record<string, SurfaceName> = {};
  const ranks = new Map<string, number>();
  const s = await scan(o, (tree, rank, p, m) => {
    const had = ranks.get(p);
    if (had !== undefined && had <= rank) return;
    ranks.set(p, rank);
    files[p] = m;
    fileSurface[p] = tree.surface;
  });
  if (new Set(o.surfaces).has('setuid')) {
    const c = await allFileCaps(o, s.trees);
    Object.assign(s.objects, c.objects);
    s.unreadable.push(...c.unreadable);
    const a = await allFileAcls(o, s.trees);
    Object.assign(s.objects, a.objects);
    s.unreadable.push(...a.unreadable);
  }
  if (s.bpfWatermark) s.objects[BPF_WATERMARK_KEY] = formatWatermark(s.bpfWatermark);
  return { snapshot: { files, fileSurface, objects: s.objects, unreadable: s.unreadable }, identity: s.identity };
}

/** The baseline's snapshot: file entries in a compact table, small files hashed, every file capability. */
export async function takeBaselineSnapshot(o: SnapshotOptions): Promise<{ snapshot: BaselineSnapshot; identity: HostIdentity }> {
  const files = new FileTable();
  const ranks = new Map<SurfaceName, number>();
  const s = await scan({ ...o, hashSmall: true }, (tree, rank, p, m) => {
    ranks.set(tree.surface, rank);
    const row = files.row(p);
    if (row !== undefined && (ranks.get(files.surface(row)) ?? 0) <= rank) return;
    files.set(p, m, tree.surface);
  });
  files.trim();
  if (new Set(o.surfaces).has('setuid')) {
    const c = await allFileCaps(o, s.trees);
    Object.assign(s.objects, c.objects);
    s.unreadable.push(...c.unreadable);
    const a = await allFileAcls(o, s.trees);
    Object.assign(s.objects, a.objects);
    s.unreadable.push(...a.unreadable);
  }
  // The ids the image had: at a preflight of the same boot, what is above them is new (bpf-state.ts).
  if (s.bpfWatermark) s.objects[BPF_WATERMARK_KEY] = formatWatermark(s.bpfWatermark);
  return { snapshot: { files, objects: s.objects, unreadable: s.unreadable }, identity: s.identity };
}

/** What a check finds: the drift (files and objects, sorted), what it could not read, the identity. */
export interface HostCheck {
  drift: DriftEntry[];
  unreadable: string[];
  identity: HostIdentity;
  /** Entries the walk reached: for the figures. */
  entries: number;
  /** The highest eBPF ids this check saw: the next job's starting point. */
  bpfWatermark?: BpfWatermark;
}

/** Files getcap is asked about per command line (well under ARG_MAX). */
const CAP_FILES_PER_CALL = 2_000;

/**
 * Compares the host with a baseline as it walks: only the differences are kept. File capabilities
 * are read only for the files that can have changed: setting one changes the file's ctime, so a
 * baseline file whose metadata is unchanged keeps its recorded capability; new and changed files,
 * and the executables of the setuid-only trees, are asked about (usually a handful).
 */
export async function checkHost(o: SnapshotOptions, base: BaselineSnapshot, compare: CompareOptions): Promise<HostCheck> {
  const files = new FileComparer(base.files, compare);
  let entries = 0;
  const s = await scan({ knownProcess: (k) => Object.hasOwn(base.objects, k), ...o }, (tree, rank, p, m) => {
    entries++;
    files.visit(tree.surface, rank, p, m);
  });
  if (new Set(o.surfaces).has('setuid')) {
    const asked = new Set([...s.executables, ...files.changedFiles]);
    const ask = [...asked];
    for (const [k, v] of Object.entries(base.objects)) {
      if (!k.startsWith('filecap:')) continue;
      const p = k.slice('filecap:'.length);
      if (files.reached(p) && !asked.has(p)) s.objects[k] = v;
    }
    // ACLs likewise (file-acls.ts): only files and directories whose metadata changed can have
    // another (setfacl changes the ctime, also of a directory for its default ACL).
    const aclAsked = new Set([...files.changedFiles, ...files.changedDirs]);
    for (const [k, v] of Object.entries(base.objects)) {
      if (!k.startsWith('acl:')) continue;
      const p = k.slice('acl:'.length);
      if (files.reached(p) && !aclAsked.has(p)) s.objects[k] = v;
    }
    const ownShell = new ToolShell();
    try {
      for (let i = 0; i < ask.length; i += CAP_FILES_PER_CALL) {
        const c = await readFileCaps(o.root, ask.slice(i, i + CAP_FILES_PER_CALL), o.excluded, o.toolShell ?? ownShell, o.signal);
        Object.assign(s.objects, c.objects);
        s.unreadable.push(...c.unreadable);
      }
      const aclAsk = [...aclAsked];
      for (let i = 0; i < aclAsk.length; i += CAP_FILES_PER_CALL) {
        const a = await readFileAcls(o.root, aclAsk.slice(i, i + CAP_FILES_PER_CALL), false, o.excluded, o.toolShell ?? ownShell, o.signal);
        Object.assign(s.objects, a.objects);
        s.unreadable.push(...a.unreadable);
      }
    } finally {
      ownShell.close();
    }
  }
  const drift = sortDrift([...files.finish(), ...compareObjects(base.objects, s.objects, compare)]);
  return { drift, unreadable: s.unreadable, identity: s.identity, entries, ...(s.bpfWatermark ? { bpfWatermark: s.bpfWatermark } : {}) };
}
