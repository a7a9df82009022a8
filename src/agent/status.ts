/**
 * The status snapshot the health server reads (no secrets), and the watchdog's notion of a stuck
 * loop: a bounded state held far longer than its bound.
 */
import type { StatusSnapshot } from '../health/snapshot.js';
import type { AgentState } from './states.js';
import type { Timeouts } from './timeouts.js';
import type { AgentCore } from './core.js';
import { jobMetaFromVars } from './records.js';

/** Slack beyond a state's own bound before the loop counts as stuck (slow disks, a loaded host). */
export const STUCK_MARGIN_MS = 5 * 60_000;

/**
 * True when the loop has stayed in a bounded state far longer than its bound: the cleanup or a
 * recycle hung, or a job outlived its limit and the listener would not stop. /healthz then
 * answers 503 so a cloud health check replaces the host.
 */
export function isStuck(state: AgentState, sinceMs: number, now: number, t: Timeouts, maxJobMs: number): boolean {
  const inState = now - sinceMs;
  switch (state) {
    case 'cleaning':
    case 'verifying':
    case 'deciding':
    case 'recycling':
      return inState > t.cleanupTimeoutMs + STUCK_MARGIN_MS;
    case 'job-running':
    case 'draining':
      return inState > maxJobMs + t.drainGraceMs + t.listenerStopGraceMs + STUCK_MARGIN_MS;
    default:
      return false;
  }
}

/** The snapshot of the agent now. */
export function statusSnapshot(core: AgentCore, startedAt: number): StatusSnapshot {
  const { ctx, d, live } = core;
  const now = d.clock.now();
  const fact = ctx.quarantine;
  const job = live.currentJob;
  return {
    state: ctx.s.state,
    stateSince: ctx.s.since,
    loopAlive:
      now - live.lastBeat < d.timeouts.heartbeatMs * 3 && !isStuck(ctx.s.state, Date.parse(ctx.s.since), now, d.timeouts, live.maxJobMs),
    quarantined: fact !== undefined,
    ...(fact ? { quarantineReason: fact.reason } : {}),
    ...(live.currentRunner ? { runner: live.currentRunner } : {}),
    ...(job
      ? {
          currentJob: {
            ...jobMetaFromVars(job.vars),
            ...(job.name ? { job: job.name } : {}),
            startedAt: new Date(job.startedAt).toISOString(),
          },
        }
      : {}),
    jobsServed: ctx.s.jobsServed,
    ...(live.lastJob ? { lastJob: live.lastJob } : {}),
    policy: d.policies.status(),
    agent: {
      version: d.version,
      pid: process.pid,
      startedAt: new Date(startedAt).toISOString(),
      uptimeSeconds: Math.round((now - startedAt) / 1000),
    },
  };
}
