/**
 * The docker mode a policy asks for, resolved on this host, and what each mode means for the
 * fleet's dashboards (host mode lets jobs act as root through the engine).
 */
import type { Policy } from '../policy/types.js';
import { engineInstalled, isolatedHostProblems, type EngineHostPaths, type HostProblem, type RunnerUser } from './host-checks.js';

/** A resolved mode (the policy's `auto` never leaves this module). */
export type DockerMode = 'isolated' | 'host' | 'none';

/** A resolved mode, and for `auto` resolved to none on a host with an engine, why. */
export interface ResolvedMode {
  mode: DockerMode;
  /** What keeps `auto` from isolated on a host where dockerd is installed (with the fixes). */
  autoProblems: HostProblem[];
}

/**
 * The explicit modes are taken as written (a host that cannot give them is unfit, never
 * downgraded). `auto` is isolated where dockerd is installed and the host can run a rootless
 * engine for `user`, and none otherwise: a safer mode, never host; the caller logs the problems.
 */
export async function resolveDockerMode(policy: Policy, paths: EngineHostPaths, user: RunnerUser | undefined): Promise<ResolvedMode> {
  const mode = policy.docker?.mode ?? 'auto';
  if (mode !== 'auto') return { mode, autoProblems: [] };
  if (!(await engineInstalled(paths))) return { mode: 'none', autoProblems: [] };
  const problems = user ? await isolatedHostProblems(user, paths) : [];
  return problems.length === 0 ? { mode: 'isolated', autoProblems: [] } : { mode: 'none', autoProblems: problems };
}

/** The figure /status, `status` and the metric label carry for a mode. */
export interface DockerModeStatus {
  mode: DockerMode;
  /** True in host mode: a job can act as root on the host through the shared engine. */
  jobsCanActAsRoot: boolean;
}

export function modeStatus(mode: DockerMode): DockerModeStatus {
  return { mode, jobsCanActAsRoot: mode === 'host' };
}
