/**
 * Takes the system baseline (`runner-warden baseline`): a snapshot of every surface, with content
 * hashes of small configuration files, and the image identity; stored root-only with its digest.
 */
import type { SurfaceName } from './types.js';
import { saveBaseline } from './baseline-store.js';
import { takeBaselineSnapshot } from './snapshot.js';
import { GlobSet } from './glob.js';

/** Where the baseline is read from and written to. */
export interface TakeSystemBaselineOptions {
  root?: string;
  proc?: string;
  stateDir: string;
  surfaces: readonly SurfaceName[];
  /** Exception patterns (exceptionPatterns(policy)): subtrees they cover wholly are not recorded. */
  exceptions?: readonly string[];
  excluded: readonly string[];
  user: { name: string; uid: number };
  skipPids?: readonly number[];
  netfilter?: boolean;
  /** The bpftool binary (tests); default: PATH, then /usr/sbin/bpftool. */
  bpftool?: string;
  now?: () => number;
}

/** What was recorded, for the command's one-line summary. */
export interface SystemBaselineSummary {
  file: string;
  files: number;
  objects: number;
  durationMs: number;
  unreadable: string[];
}

/** Records the baseline; overwrites an earlier one. */
export async function takeSystemBaseline(o: TakeSystemBaselineOptions): Promise<SystemBaselineSummary> {
  const now = o.now ?? Date.now;
  const t0 = performance.now();
  const { snapshot, identity } = await takeBaselineSnapshot({
    root: o.root ?? '/',
    proc: o.proc ?? '/proc',
    surfaces: o.surfaces,
    excluded: o.excluded,
    ...(o.exceptions ? { exceptions: new GlobSet(o.exceptions) } : {}),
    jobUser: o.user,
    ...(o.skipPids ? { skipPids: o.skipPids } : {}),
    ...(o.netfilter !== undefined ? { netfilter: o.netfilter } : {}),
    ...(o.bpftool ? { bpftool: o.bpftool } : {}),
  });
  const file = await saveBaseline(o.stateDir, {
    format: 2,
    takenAt: new Date(now()).toISOString(),
    identity,
    surfaces: [...o.surfaces],
    snapshot,
  });
  return {
    file,
    files: snapshot.files.size,
    objects: Object.keys(snapshot.objects).length,
    durationMs: Math.round(performance.now() - t0),
    unreadable: snapshot.unreadable,
  };
}
