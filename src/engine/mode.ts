/**
 * The docker mode a policy asks for, resolved on this host, and what each mode means for the
 * fleet's dashboards (host mode lets jobs act as root through the engine).
 */
import type { Policy } from '../policy/types.js';
import { engineInstalled, type EngineHostPaths } from './host-checks.js';

/** A resolved mode (the policy's `auto` never leaves this module). */
export type DockerMode = 'isolated' | 'host' | 'none';

/** `auto` is isolated where dockerd is installed and none elsewhere; the others are taken as written. */
export async function resolveDockerMode(policy: Policy, paths: EngineHostPaths): Promise<DockerMode> {
  const mode = policy.docker?.mode ?? 'auto';
  if (mode !== 'auto') return mode;
  return (await engineInstalled(paths)) ? 'isolated' : 'none';
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
