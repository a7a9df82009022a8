/**
 * Every series the agent exports, declared in one place: name, help text, labels and buckets.
 * AgentMetrics (metrics.ts) moves them; this file only says what they are.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Prefix of every metric name (user-facing: dashboards and alerts rely on it). */
export const METRIC_PREFIX = 'runner_warden_';

const JOB_DURATION_BUCKETS = [10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600];
const STEP_DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Around the ~30 s a fresh registration takes and the 120 s alert threshold. */
const READY_BUCKETS = [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600];

/** Event-loop delay percentiles in seconds. */
export interface LoopFigures {
  p50: number;
  p99: number;
  max: number;
}

/** What the series that are computed at scrape time read. */
export interface ScrapeSources {
  /** Agent version for `runner_warden_build_info`. */
  version: string;
  /** Unix time (s) the agent started, for `runner_warden_start_time_seconds`. */
  startedAtSeconds: number;
  /** Length of the event-loop window, for the help text. */
  loopWindowMs: number;
  /** The event-loop percentiles, read at every scrape. */
  loopFigures: () => LoopFigures;
}

/** The agent's metrics, registered on `registry`; the typed methods of AgentMetrics move them. */
export type MetricSet = ReturnType<typeof defineMetrics>;

/** Declares every series on `registry` (the fixed ones already set) and returns those that move. */
export function defineMetrics(registry: Registry, src: ScrapeSources) {
  const registers = [registry];
  const p = METRIC_PREFIX;
  const set = {
    state: new Gauge({
      name: `${p}state`,
      help: 'Lifecycle state of the agent: 1 for the current state, 0 for the others.',
      labelNames: ['state'],
      registers,
    }),
    stateSince: new Gauge({
      name: `${p}state_since_timestamp_seconds`,
      help: 'Unix time at which the agent entered its current state.',
      registers,
    }),
    jobs: new Counter({
      name: `${p}jobs_total`,
      help: 'Jobs ended, by result (succeeded, failed, cancelled, unknown...).',
      labelNames: ['result'],
      registers,
    }),
    jobDuration: new Histogram({
      name: `${p}job_duration_seconds`,
      help: 'Job duration from start to end.',
      buckets: JOB_DURATION_BUCKETS,
      registers,
    }),
    jobsServed: new Gauge({
      name: `${p}host_jobs_served`,
      help: 'Jobs this host has served since it was provisioned (the max-jobs policy counts these).',
      registers,
    }),
    cleanups: new Counter({
      name: `${p}cleanups_total`,
      help: 'Cleanup passes by result: clean (reusable) or dirty (must be recycled or quarantined).',
      labelNames: ['result'],
      registers,
    }),
    cleanupDuration: new Histogram({
      name: `${p}cleanup_duration_seconds`,
      help: 'Whole cleanup pass from job end to host clean (steps and verification).',
      buckets: STEP_DURATION_BUCKETS,
      registers,
    }),
    stepDuration: new Histogram({
      name: `${p}cleanup_step_duration_seconds`,
      help: 'Duration of each cleanup step (and of the verification, step="verify").',
      labelNames: ['step'],
      buckets: STEP_DURATION_BUCKETS,
      registers,
    }),
    stepOutcomes: new Counter({
      name: `${p}cleanup_step_outcomes_total`,
      help: 'Cleanup step outcomes: ok, skipped, failed, dirty.',
      labelNames: ['step', 'outcome'],
      registers,
    }),
    removedItems: new Counter({
      name: `${p}cleanup_removed_items_total`,
      help: 'Items removed by cleanup, by step and kind (file, dir, process, container...).',
      labelNames: ['step', 'kind'],
      registers,
    }),
    removedBytes: new Counter({
      name: `${p}cleanup_removed_bytes_total`,
      help: 'Bytes removed by cleanup, by step and kind.',
      labelNames: ['step', 'kind'],
      registers,
    }),
    verifyFailures: new Counter({
      name: `${p}verification_failures_total`,
      help: 'Verifications after cleanup that found the host not clean.',
      registers,
    }),
    recycles: new Counter({
      name: `${p}recycles_total`,
      help: 'Recycles signalled to the infrastructure, by reason and provider.',
      labelNames: ['reason', 'provider'],
      registers,
    }),
    recycleFailures: new Counter({
      name: `${p}recycle_failures_total`,
      help: 'Recycle attempts a provider failed to carry out, by provider.',
      labelNames: ['provider'],
      registers,
    }),
    listenerExits: new Counter({
      name: `${p}listener_exits_total`,
      help: 'Runner.Listener exits by exit code (or "signal:NAME").',
      labelNames: ['code'],
      registers,
    }),
    githubRequests: new Counter({
      name: `${p}github_requests_total`,
      help: 'GitHub API requests by endpoint template and HTTP status.',
      labelNames: ['endpoint', 'status'],
      registers,
    }),
    rateRemaining: new Gauge({
      name: `${p}github_rate_limit_remaining`,
      help: 'x-ratelimit-remaining of the last GitHub response.',
      registers,
    }),
    readyTime: new Histogram({
      name: `${p}time_to_ready_seconds`,
      help: 'Job end to the next runner registered and idle.',
      buckets: READY_BUCKETS,
      registers,
    }),
    fsFreeBytes: new Gauge({
      name: `${p}work_fs_free_bytes`,
      help: 'Free bytes (available to unprivileged users) of the work filesystem.',
      registers,
    }),
    fsFreeRatio: new Gauge({
      name: `${p}work_fs_free_ratio`,
      help: 'Free share (0..1) of the work filesystem blocks.',
      registers,
    }),
    fsFreeInodes: new Gauge({
      name: `${p}work_fs_free_inodes`,
      help: 'Free inodes of the work filesystem.',
      registers,
    }),
    fsFreeInodesRatio: new Gauge({
      name: `${p}work_fs_free_inodes_ratio`,
      help: 'Free share (0..1) of the work filesystem inodes.',
      registers,
    }),
    cpuLoad: new Gauge({
      name: `${p}host_cpu_load_ratio`,
      help: 'Host CPU load (0..1) over the last sampling interval.',
      registers,
    }),
    memUsed: new Gauge({
      name: `${p}host_memory_used_ratio`,
      help: 'Host memory in use (0..1), not counting reclaimable cache.',
      registers,
    }),
    engineUp: new Gauge({
      name: `${p}container_engine_up`,
      help: '1 while the container engine of the policy answers, 0 when its socket exists but it does not; absent on hosts without one.',
      registers,
    }),
    dockerMode: new Gauge({
      name: `${p}docker_mode`,
      help: '1 for the docker mode jobs get on this host (isolated, host, none); jobs_can_act_as_root="true" in host mode.',
      labelNames: ['mode', 'jobs_can_act_as_root'],
      registers,
    }),
    policyReloads: new Counter({
      name: `${p}policy_reloads_total`,
      help: 'Policy hot reloads by result (ok, error).',
      labelNames: ['result'],
      registers,
    }),
    quarantined: new Gauge({
      name: `${p}quarantined`,
      help: '1 while the host is quarantined (not reused, kept for inspection).',
      registers,
    }),
  };
  // prom-client calls collect() with `this` bound to the gauge; the figures come from `src`.
  new Gauge({
    name: `${p}event_loop_delay_seconds`,
    help: `Event-loop delay percentiles over the last ${src.loopWindowMs / 1000} s window.`,
    labelNames: ['percentile'],
    registers,
    collect() {
      const v = src.loopFigures();
      this.set({ percentile: 'p50' }, v.p50);
      this.set({ percentile: 'p99' }, v.p99);
      this.set({ percentile: 'max' }, v.max);
    },
  });
  new Gauge({
    name: `${p}build_info`,
    help: 'Always 1; labels carry the agent and Node.js versions.',
    labelNames: ['version', 'node_version'],
    registers,
  }).set({ version: src.version, node_version: process.versions.node }, 1);
  new Gauge({
    name: `${p}start_time_seconds`,
    help: 'Unix time at which the agent process started.',
    registers,
  }).set(src.startedAtSeconds);
  return set;
}
