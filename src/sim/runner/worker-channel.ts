/**
 * What the simulated listener and worker share: the messages on the worker's stdin and the
 * env handling both mains do first.
 */
import type { SimJob } from './broker.js';
import type { RunnerSettings } from './files.js';

/** Why a job is being cancelled: the runner shuts down, or the server cancelled the job. */
export type CancelReason = 'shutdown' | 'server';

/** The first message on the worker's stdin. */
export interface WorkerJobMessage {
  type: 'job';
  job: SimJob;
  settings: RunnerSettings;
}

/** A later message on the worker's stdin. */
export interface WorkerCancelMessage {
  type: 'cancel';
  reason: CancelReason;
}

/** Env vars the bin/ wrappers set for the simulator itself; each main removes them at start. */
export const WRAPPER_ENV = ['RUNNER_SIM_ROOT', 'TSX_DISABLE_CACHE'] as const;

/** True for the values .NET's StringUtil.ConvertToBoolean accepts as true ("1", "true", "$true"). */
export function envTrue(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', '$true'].includes(v.trim().toLowerCase());
}
