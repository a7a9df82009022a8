/**
 * The worker's orphan-process cleanup at "Complete job" (docs/runner-contract.md §5): every process of
 * the runner user whose environment carries this job's `RUNNER_TRACKING_ID` is killed, so a
 * background process a step or hook left behind dies unless it changed or cleared the variable.
 */
import { readdir, readFile, stat } from 'node:fs/promises';

/** A process found by its tracking id. */
export interface TrackedProcess {
  pid: number;
  name: string;
}

/**
 * Lists the processes of `uid` whose environ holds `RUNNER_TRACKING_ID=<trackingId>`, skipping
 * `excludePids`. Processes that vanish or cannot be read are skipped (they are not ours to see).
 */
export async function findTrackedProcesses(
  trackingId: string,
  uid: number,
  excludePids: readonly number[] = [],
  procRoot = '/proc',
): Promise<TrackedProcess[]> {
  const needle = `RUNNER_TRACKING_ID=${trackingId}`;
  const found: TrackedProcess[] = [];
  let entries: string[];
  try {
    entries = await readdir(procRoot);
  } catch {
    return found;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (excludePids.includes(pid)) continue;
    try {
      const st = await stat(`${procRoot}/${e}`);
      if (st.uid !== uid) continue;
      const environ = await readFile(`${procRoot}/${e}/environ`, 'latin1');
      if (!environ.split('\0').includes(needle)) continue;
      const name = (await readFile(`${procRoot}/${e}/comm`, 'utf8')).trim();
      found.push({ pid, name });
    } catch {
      // gone or unreadable: skip
    }
  }
  return found;
}

/** Kills the tracked processes with SIGKILL and reports each through `log`. */
export async function killOrphans(
  trackingId: string,
  uid: number,
  excludePids: readonly number[],
  log: (line: string) => void,
): Promise<TrackedProcess[]> {
  const procs = await findTrackedProcesses(trackingId, uid, excludePids);
  for (const p of procs) {
    log(`Terminate orphan process: pid (${p.pid}) (${p.name})`);
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return procs;
}
