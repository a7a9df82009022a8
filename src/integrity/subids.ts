/**
 * What belongs to the job besides the runner user's own uid: the ids of the user namespaces it can
 * create (its ranges in /etc/subuid and /etc/subgid). A process, a temp file or an IPC object owned
 * by one of them is the job's, found and removed like the user's own (cleanup handles the user's
 * own uid; this handles the ranges).
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { runCommand } from '../lib/process.js';
import { inRanges, readSubIds, type IdRange } from './accounts.js';
import { readProcTable, readTextSync, type ProcEntry } from './proc-table.js';

/** Kill rounds before a survivor is reported: a fork loop in a namespace gets a few passes. */
const KILL_ROUNDS = 5;
/** ipcrm of a handful of objects is instant; a hung call must not hold the cleanup. */
const IPCRM_TIMEOUT_MS = 5_000;

/** Where the leftovers are looked for. */
export interface JobIdsOptions {
  root: string;
  proc: string;
  /** Host-view directories swept for files of the ranges (policy cleanup.temp.paths). */
  tempDirs: readonly string[];
  /** The processes, when the caller read /proc already (the verification shares one read). */
  table?: readonly ProcEntry[];
}

/** The runner user's subordinate uid and gid ranges (empty when it has none). */
export function jobIdRanges(root: string, user: { name: string; uid: number }): Promise<{ uids: IdRange[]; gids: IdRange[] }> {
  return Promise.resolve({
    uids: readSubIds(path.join(root, 'etc/subuid'), user),
    gids: readSubIds(path.join(root, 'etc/subgid'), user),
  });
}

/** One leftover of the ranges: a process, a temp entry or an IPC object. */
export interface Leftover {
  kind: 'process' | 'file' | 'ipc';
  /** pid, host-view path, or `shm:<id>` / `sem:<id>` / `msg:<id>`. */
  id: string;
  uid: number;
}

/** Everything owned by the ranges, now. */
export async function findLeftovers(r: { uids: IdRange[]; gids: IdRange[] }, o: JobIdsOptions): Promise<Leftover[]> {
  if (r.uids.length === 0 && r.gids.length === 0) return [];
  const out: Leftover[] = [];
  for (const { pid, uids } of o.table ?? readProcTable(o.proc)) {
    const uid = uids.find((u) => inRanges(u, r.uids));
    if (uid !== undefined) out.push({ kind: 'process', id: String(pid), uid });
  }
  for (const dir of o.tempDirs) {
    const real = path.join(o.root, dir);
    const names = await readdir(real).catch(() => [] as string[]);
    const sts = await Promise.all(names.map((name) => lstat(path.join(real, name)).catch(() => undefined)));
    for (const [i, st] of sts.entries()) {
      if (st && (inRanges(st.uid, r.uids) || inRanges(st.gid, r.gids)))
        out.push({ kind: 'file', id: path.join(dir, names[i] as string), uid: st.uid });
    }
  }
  for (const kind of ['shm', 'sem', 'msg'] as const) {
    const lines = readTextSync(path.join(o.proc, 'sysvipc', kind)).split('\n');
    const cols = (lines[0] ?? '').trim().split(/\s+/);
    const [idIx, uidIx, cuidIx] = [
      cols.indexOf(kind === 'shm' || kind === 'msg' ? (kind === 'shm' ? 'shmid' : 'msqid') : 'semid'),
      cols.indexOf('uid'),
      cols.indexOf('cuid'),
    ];
    if (idIx < 0 || uidIx < 0) continue;
    for (const line of lines.slice(1)) {
      const f = line.trim().split(/\s+/);
      const uid = Number(f[uidIx]);
      const cuid = Number(f[cuidIx]);
      if (f[idIx] && (inRanges(uid, r.uids) || inRanges(cuid, r.uids))) out.push({ kind: 'ipc', id: `${kind}:${f[idIx]}`, uid });
    }
  }
  return out;
}

/** Kills, removes and deletes what the ranges own; returns what is left (empty = all gone). */
export async function removeLeftovers(
  r: { uids: IdRange[]; gids: IdRange[] },
  o: JobIdsOptions,
): Promise<{ removed: Record<string, { count: number; bytes: number }>; left: Leftover[] }> {
  const removed: Record<string, { count: number; bytes: number }> = {};
  const count = (k: string): void => {
    removed[k] = { count: (removed[k]?.count ?? 0) + 1, bytes: 0 };
  };
  // Each round reads /proc afresh: a caller's table is of before the kills.
  const { table: _table, ...fresh } = o;
  let left = await findLeftovers(r, fresh);
  for (let round = 0; round < KILL_ROUNDS && left.some((l) => l.kind === 'process'); round++) {
    for (const l of left.filter((x) => x.kind === 'process')) {
      try {
        process.kill(Number(l.id), 'SIGKILL');
        count('subid-processes');
      } catch {
        // Already gone.
      }
    }
    await new Promise((res) => setTimeout(res, 50 * (round + 1)));
    left = await findLeftovers(r, fresh);
  }
  for (const l of left) {
    if (l.kind === 'file') {
      // rm does not follow symlinks; a user namespace cannot mount in the host's mount namespace.
      await rm(path.join(o.root, l.id), { recursive: true, force: true }).then(
        () => count('subid-files'),
        () => undefined,
      );
    } else if (l.kind === 'ipc') {
      const [kind, id] = l.id.split(':') as [string, string];
      const flag = kind === 'shm' ? '-m' : kind === 'sem' ? '-s' : '-q';
      const res = await runCommand('ipcrm', [flag, id], { timeoutMs: IPCRM_TIMEOUT_MS }).catch(() => undefined);
      if (res?.code === 0) count('subid-ipc');
    }
  }
  return { removed, left: await findLeftovers(r, fresh) };
}
