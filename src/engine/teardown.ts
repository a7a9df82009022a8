/**
 * Stopping a job's engine for good: every process it started, its cgroup, its directory. Works
 * from the root-owned record alone, so a restarted agent can stop an engine it did not start.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { openProcessContainer } from '../lib/cgroup.js';
import { runCommand, signalGroup } from '../lib/process.js';
import { isInside } from '../lib/fs.js';
import type { HostNet } from './host-net.js';
import type { SubidRange } from './host-checks.js';
import { killPids } from './id-processes.js';
import { scanProcesses } from '../cleanup/proc.js';
import type { EngineLayout } from './rootless-engine.js';

/**
 * Deleting a data root of vfs layers is a plain `rm -rf`; an hour covers millions of files on a
 * slow disk. It runs in the background, so it never holds the next job.
 */
const DELETE_TIMEOUT_MS = 3_600_000;
/** After SIGKILL the kernel tears the pid namespace down in milliseconds; poll briefly. */
const KILL_POLL_MS = 10;
/** Give up waiting for killed processes after this long (a member stuck in D state). */
const KILL_WAIT_MS = 5_000;

/** What prepare wrote before the engine could do anything (root-owned, in the job's directory). */
export interface EngineRecord {
  pid?: number;
  cgroup?: string;
  cgroupKind?: 'v2' | 'v1-freezer';
  subuids: SubidRange[];
  net: HostNet;
  startedAt: string;
  /** The engine directory when it is not `<job.dir>/engine` (a warm engine the job took). */
  dir?: string;
}

export async function readRecord(file: string): Promise<EngineRecord | undefined> {
  const text = await fsp.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as EngineRecord;
  } catch {
    return undefined;
  }
}

/**
 * Pids with any of their four uids in one of `ranges`: only a user namespace of the runner user
 * (its engine's containers) can run as them. One scan that reads each process's status in place
 * (cleanup/proc.ts): the thread pool's reads made this scan most of release's time.
 */
export async function subidProcesses(ranges: SubidRange[], procRoot?: string): Promise<number[]> {
  if (ranges.length === 0) return [];
  const inRange = (id: number): boolean => ranges.some((r) => id >= r.start && id < r.start + r.count);
  const found = await scanProcesses((uids) => uids.some(inRange), undefined, procRoot);
  return found.map((p) => p.pid);
}

/** Kills the engine's process tree: its group, its cgroup, then anything under its subordinate ids. */
export async function killEngine(rec: EngineRecord): Promise<{ killed: number; left: number[] }> {
  let killed = 0;
  if (rec.pid !== undefined && signalGroup(rec.pid, 'SIGKILL')) killed++;
  if (rec.cgroup !== undefined) {
    const c = openProcessContainer(rec.cgroup, rec.cgroupKind);
    killed += (await c.killAll().catch(() => [])).length;
    await c.remove().catch(() => undefined);
  }
  const deadline = Date.now() + KILL_WAIT_MS;
  let left = await subidProcesses(rec.subuids);
  while (left.length > 0 && Date.now() < deadline) {
    killed += killPids(left);
    await new Promise((r) => setTimeout(r, KILL_POLL_MS));
    left = await subidProcesses(rec.subuids);
  }
  return { killed, left };
}

/** Mount points under `dir` in the host's mount table (a rootless engine should leave none). */
export async function mountsUnder(dir: string, mountinfo = '/proc/self/mountinfo'): Promise<string[]> {
  const text = await fsp.readFile(mountinfo, 'utf8').catch(() => '');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp && isInside(dir, mp) && mp !== dir) out.push(mp);
  }
  return out;
}

/**
 * Moves the engine directory aside (so the next check sees it gone at once) and deletes it in
 * the background; resolves with the background deletion. Mounts under it are detached first so
 * the delete can never reach through one.
 */
export async function moveAsideAndDelete(layout: EngineLayout): Promise<{ moved: boolean; done: Promise<void> }> {
  for (const mp of (await mountsUnder(layout.dir)).reverse())
    await runCommand('umount', ['-l', mp], { timeoutMs: 10_000 }).catch(() => undefined);
  const aside = path.join(path.dirname(layout.dir), `.engine-deleting-${Date.now()}`);
  try {
    await fsp.rename(layout.dir, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { moved: false, done: Promise.resolve() };
    throw err;
  }
  const done = runCommand('rm', ['-rf', '--one-file-system', '--', aside], { timeoutMs: DELETE_TIMEOUT_MS }).then(
    () => undefined,
    () => undefined,
  );
  return { moved: true, done };
}
