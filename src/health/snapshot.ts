/**
 * The status snapshot the agent keeps current and the health server only reads. It holds
 * no secret, ever: no token, no JIT config, no environment.
 */
import type { HostFigures } from './metrics.js';

export interface JobSummary {
  repository?: string;
  workflow?: string;
  job?: string;
  runId?: string;
  startedAt?: string;
  endedAt?: string;
  result?: string;
}

export interface StatusSnapshot {
  state: string;
  stateSince: string;
  /** True while the agent's loop is making progress (the watchdog updates it). */
  loopAlive: boolean;
  quarantined: boolean;
  quarantineReason?: string;
  runner?: { name: string; id?: number; labels: string[] };
  currentJob?: JobSummary;
  jobsServed: number;
  lastJob?: JobSummary & {
    cleanup?: { clean: boolean; readyMs: number; removed: Record<string, number>; problems: string[] };
    decision?: string;
  };
  policy: { team: string; file?: string; version?: string; loadedAt?: string; lastReloadError?: string };
  /** The last host sample (health/host-figures.ts). */
  host?: HostFigures & { updatedAt?: string };
  agent: { version: string; pid: number; startedAt: string; uptimeSeconds: number };
}
