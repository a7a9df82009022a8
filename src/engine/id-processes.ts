/**
 * Processes running under the runner user's subordinate ids: only a user namespace of that user
 * (its engine's containers) can run as them, so after the engine was stopped any such process is
 * a leftover, whichever cgroup or session it slipped into.
 */
import { promises as fsp } from 'node:fs';
import type { SubidRange } from './host-checks.js';

/** Pids whose real or effective uid lies in one of `ranges`. */
export async function processesInRanges(ranges: SubidRange[], proc = '/proc'): Promise<number[]> {
  if (ranges.length === 0) return [];
  const out: number[] = [];
  for (const name of await fsp.readdir(proc).catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const status = await fsp.readFile(`${proc}/${name}/status`, 'utf8').catch(() => '');
    const m = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
    if (!m) continue;
    const ids = [Number(m[1]), Number(m[2])];
    if (ids.some((id) => ranges.some((r) => id >= r.start && id < r.start + r.count))) out.push(Number(name));
  }
  return out;
}

/** SIGKILLs each pid (gone already is fine); returns how many were signalled. */
export function killPids(pids: number[]): number {
  let n = 0;
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
      n++;
    } catch {
      // already gone
    }
  }
  return n;
}
