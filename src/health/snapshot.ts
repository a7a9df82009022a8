/**
 * The status snapshot the agent keeps current and the health server only reads (issue 6). It holds
 * no secret, ever: no token, no JIT config, no environment.
 */
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
  host?: {
    cpuLoadPercent?: number;
    memUsedPercent?: number;
    workFsFreeBytes?: number;
    workFsFreeInodes?: number;
    workFsFreePercent?: number;
    workFsFreeInodesPercent?: number;
    /** The policy's container engine, when the host has one. */
    containerEngine?: { up: boolean; version?: string; error?: string };
    updatedAt?: string;
  };
  agent: { version: string; pid: number; startedAt: string; uptimeSeconds: number };
}
