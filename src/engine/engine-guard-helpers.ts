/**
 * The engine guard's small helpers: its refusal, the names and keys of its engines, and the
 * engine directory a job's record names.
 */
import path from 'node:path';
import { GuardUnfitError, type GuardJob } from '../lib/job-guard.js';
import type { Policy } from '../policy/types.js';
import type { HostProblem } from './host-checks.js';
import { engineLayout, engineLayoutAt, type EngineLayout } from './rootless-engine.js';
import { WARM_DIR_PREFIX } from './warm-engine.js';
import { readRecord, type EngineRecord } from './teardown.js';

/** Throws GuardUnfitError listing every problem and every fix. */
export function unfitIf(problems: HostProblem[], what: string): void {
  if (problems.length === 0) return;
  throw new GuardUnfitError('engine', `${what}: ${problems.map((p) => p.what).join('; ')}`, problems.map((p) => p.fix).join('; '));
}

/** A warm engine's layout under `jobRoot` (its name has a fixed length), for the path-length check. */
export function warmLayoutSample(jobRoot: string): EngineLayout {
  return engineLayoutAt(path.join(jobRoot, `${WARM_DIR_PREFIX}00000000`, 'engine'), '');
}

/**
 * What a warm engine was started for: the runner user, the mirror it was given and, with warm
 * images on, the team and its warm policy (its pulls are that team's: another team's job must
 * never take it).
 */
export function warmKey(user: { uid: number; gid: number }, mirror: { url?: string; hostLoopback: boolean }, policy: Policy): string {
  const w = policy.docker.warm;
  const warm = w.images.length > 0 || w.learn ? `:${policy.team}:${JSON.stringify(w)}` : '';
  return `${user.uid}:${user.gid}:${mirror.url ?? ''}:${mirror.hostLoopback}${warm}`;
}

/**
 * The engine layout a job's record names: `<job.dir>/engine`, or the warm engine's directory the
 * job took (only beside the job's own directory, under the same job root).
 */
export async function recordedLayout(job: GuardJob): Promise<{ layout: EngineLayout; rec: EngineRecord | undefined }> {
  const own = engineLayout(job.dir);
  const rec = await readRecord(own.record);
  const jobRoot = path.dirname(job.dir);
  if (
    rec?.dir !== undefined &&
    path.dirname(path.dirname(rec.dir)) === jobRoot &&
    path.basename(path.dirname(rec.dir)).startsWith(WARM_DIR_PREFIX)
  ) {
    return { layout: engineLayoutAt(rec.dir, own.record), rec };
  }
  return { layout: own, rec };
}

/** A cgroup name for the job's key (the key is the agent's; keep only safe characters). */
export function cgroupName(key: string): string {
  return `engine-${key.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100)}`;
}
