/**
 * The agent's Prometheus metrics, on a registry of its own (never prom-client's global
 * one, so that tests and a second agent in one process cannot mix series). Every name starts with
 * `runner_warden_`; units are base units (seconds, bytes, ratios 0..1) as Prometheus asks.
 *
 * The agent calls the typed methods below as things happen; the health server only calls
 * `render()`. Nothing here does I/O: host figures arrive from host-figures.ts through
 * `hostFigures()`, the event-loop delay comes from perf_hooks while `run()` is active.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CleanupReport } from '../cleanup/types.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { isAbort } from '../lib/errors.js';

/** Prefix of every metric name (user-facing: dashboards and alerts rely on it). */
export const METRIC_PREFIX = 'runner_warden_';

/**
 * Distinct values one label may take before further values are folded into "other". Every label
 * here is meant to hold a short fixed vocabulary (states, step names, route templates, exit
 * codes); the cap keeps a caller's mistake (a raw URL, an error message) from growing memory and
 * the /metrics body without bound.
 */
export const MAX_LABEL_VALUES = 64;

/** Longest label value kept; longer values are cut, for the same reason as MAX_LABEL_VALUES. */
export const MAX_LABEL_LENGTH = 80;

/**
 * Window over which the event-loop delay percentiles are published: one minute is four scrapes at
 * the usual 15 s interval, long enough to catch a stall, short enough that an old one ages out.
 */
export const EVENT_LOOP_WINDOW_MS = 60_000;

/**
 * How long render() may serve its last output while no metric changed. Rendering is the only
 * real work a scrape does (~0.25 ms for this registry); a burst of scrapes or probes (several
 * Prometheus replicas, a load test) then costs one render per second, and a change still shows
 * at once because every typed method invalidates the cache.
 */
export const RENDER_CACHE_MS = 1_000;

/** Sampling resolution of the event-loop delay monitor; 20 ms costs nothing measurable. */
export const EVENT_LOOP_RESOLUTION_MS = 20;

/** Host figures as host-figures.ts samples them (percentages 0..100, as in the status snapshot). */
export interface HostFigures {
  cpuLoadPercent?: number;
  memUsedPercent?: number;
  workFsFreeBytes?: number;
  workFsFreeInodes?: number;
  workFsFreePercent?: number;
  workFsFreeInodesPercent?: number;
  /** The container engine the policy names: absent when the host has none. */
  containerEngine?: { up: boolean; version?: string; error?: string };
  /** The docker mode the policy gets on this host (isolated, host, none); host mode lets jobs act as root through the engine. */
  dockerMode?: { mode: string; jobsCanActAsRoot: boolean };
}

/** Options of AgentMetrics; defaults: system clock, 60 s event-loop window. */
export interface AgentMetricsOptions {
  /** Agent version for `runner_warden_build_info`. */
  version: string;
  clock?: Clock;
  eventLoopWindowMs?: number;
  /**
   * The lifecycle states (the composition root passes the agent's list). Their series exist from
   * the start (at 0) so that an alert on `runner_warden_state{state="cleaning"}` has a series to
   * read before the first job; a state not listed gets its series when first seen.
   */
  states?: readonly string[];
  /**
   * Recycle providers configured (primary and fallbacks); their failure series start at 0 so an
   * alert on `increase()` sees the first failure (a series born at 1 shows no increase).
   */
  recycleProviders?: readonly string[];
}

/** Folds unbounded label values into a bounded set (see MAX_LABEL_VALUES). */
class LabelGuard {
  private readonly seen = new Set<string>();
  constructor(private readonly max = MAX_LABEL_VALUES) {}

  value(raw: string | number): string {
    let v = String(raw);
    if (v.length > MAX_LABEL_LENGTH) v = v.slice(0, MAX_LABEL_LENGTH);
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(v);
    return v;
  }
}

const JOB_DURATION_BUCKETS = [10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600];
const STEP_DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Around the ~30 s a fresh registration takes and the 120 s alert threshold. */
const READY_BUCKETS = [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600];

/** The agent's metrics over its own prom-client Registry. */
export class AgentMetrics {
  /** The registry; exposed for tests and for composing with other registries. */
  readonly registry = new Registry();
  private readonly clock: Clock;
  private readonly windowMs: number;
  private readonly guards = new Map<string, LabelGuard>();
  private readonly states: Set<string>;
  private currentState: string | undefined;
  private loopMonitor: IntervalHistogram | undefined;
  private loopPublished: { p50: number; p99: number; max: number } | undefined;
  /** Bumped by every change; render() reuses its last output only within one generation. */
  private generation = 0;
  private rendered: { generation: number; at: number; text: Promise<string> } | undefined;

  private readonly state: Gauge<'state'>;
  private readonly stateSince: Gauge;
  private readonly jobs: Counter<'result'>;
  private readonly jobDuration: Histogram;
  private readonly jobsServed: Gauge;
  private readonly cleanups: Counter<'result'>;
  private readonly cleanupDuration: Histogram;
  private readonly stepDuration: Histogram<'step'>;
  private readonly stepOutcomes: Counter<'step' | 'outcome'>;
  private readonly removedItems: Counter<'step' | 'kind'>;
  private readonly removedBytes: Counter<'step' | 'kind'>;
  private readonly verifyFailures: Counter;
  private readonly recycles: Counter<'reason' | 'provider'>;
  private readonly recycleFailures: Counter<'provider'>;
  private readonly listenerExits: Counter<'code'>;
  private readonly githubRequests: Counter<'endpoint' | 'status'>;
  private readonly rateRemaining: Gauge;
  private readonly readyTime: Histogram;
  private readonly fsFreeBytes: Gauge;
  private readonly fsFreeRatio: Gauge;
  private readonly fsFreeInodes: Gauge;
  private readonly fsFreeInodesRatio: Gauge;
  private readonly cpuLoad: Gauge;
  private readonly memUsed: Gauge;
  private readonly engineUp: Gauge;
  private readonly dockerMode: Gauge<'mode' | 'jobs_can_act_as_root'>;
  private readonly policyReloads: Counter<'result'>;
  private readonly quarantinedGauge: Gauge;

  /** Content-Type of `render()`'s output (Prometheus text format 0.0.4). */
  readonly contentType: string;

  constructor(opts: AgentMetricsOptions) {
    this.clock = opts.clock ?? systemClock;
    this.windowMs = opts.eventLoopWindowMs ?? EVENT_LOOP_WINDOW_MS;
    const registers = [this.registry];
    const p = METRIC_PREFIX;
    this.contentType = this.registry.contentType;

    this.state = new Gauge({
      name: `${p}state`,
      help: 'Lifecycle state of the agent: 1 for the current state, 0 for the others.',
      labelNames: ['state'],
      registers,
    });
    this.states = new Set(opts.states ?? []);
    for (const s of this.states) this.state.set({ state: s }, 0);
    this.stateSince = new Gauge({
      name: `${p}state_since_timestamp_seconds`,
      help: 'Unix time at which the agent entered its current state.',
      registers,
    });
    this.jobs = new Counter({
      name: `${p}jobs_total`,
      help: 'Jobs ended, by result (succeeded, failed, cancelled, unknown...).',
      labelNames: ['result'],
      registers,
    });
    this.jobDuration = new Histogram({
      name: `${p}job_duration_seconds`,
      help: 'Job duration from start to end.',
      buckets: JOB_DURATION_BUCKETS,
      registers,
    });
    this.jobsServed = new Gauge({
      name: `${p}host_jobs_served`,
      help: 'Jobs this host has served since it was provisioned (the max-jobs policy counts these).',
      registers,
    });
    this.cleanups = new Counter({
      name: `${p}cleanups_total`,
      help: 'Cleanup passes by result: clean (reusable) or dirty (must be recycled or quarantined).',
      labelNames: ['result'],
      registers,
    });
    this.cleanupDuration = new Histogram({
      name: `${p}cleanup_duration_seconds`,
      help: 'Whole cleanup pass from job end to host clean (steps and verification).',
      buckets: STEP_DURATION_BUCKETS,
      registers,
    });
    this.stepDuration = new Histogram({
      name: `${p}cleanup_step_duration_seconds`,
      help: 'Duration of each cleanup step (and of the verification, step="verify").',
      labelNames: ['step'],
      buckets: STEP_DURATION_BUCKETS,
      registers,
    });
    this.stepOutcomes = new Counter({
      name: `${p}cleanup_step_outcomes_total`,
      help: 'Cleanup step outcomes: ok, skipped, failed, dirty.',
      labelNames: ['step', 'outcome'],
      registers,
    });
    this.removedItems = new Counter({
      name: `${p}cleanup_removed_items_total`,
      help: 'Items removed by cleanup, by step and kind (file, dir, process, container...).',
      labelNames: ['step', 'kind'],
      registers,
    });
    this.removedBytes = new Counter({
      name: `${p}cleanup_removed_bytes_total`,
      help: 'Bytes removed by cleanup, by step and kind.',
      labelNames: ['step', 'kind'],
      registers,
    });
    this.verifyFailures = new Counter({
      name: `${p}verification_failures_total`,
      help: 'Verifications after cleanup that found the host not clean.',
      registers,
    });
    this.recycles = new Counter({
      name: `${p}recycles_total`,
      help: 'Recycles signalled to the infrastructure, by reason and provider.',
      labelNames: ['reason', 'provider'],
      registers,
    });
    this.recycleFailures = new Counter({
      name: `${p}recycle_failures_total`,
      help: 'Recycle attempts a provider failed to carry out, by provider.',
      labelNames: ['provider'],
      registers,
    });
    this.listenerExits = new Counter({
      name: `${p}listener_exits_total`,
      help: 'Runner.Listener exits by exit code (or "signal:NAME").',
      labelNames: ['code'],
      registers,
    });
    this.githubRequests = new Counter({
      name: `${p}github_requests_total`,
      help: 'GitHub API requests by endpoint template and HTTP status.',
      labelNames: ['endpoint', 'status'],
      registers,
    });
    this.rateRemaining = new Gauge({
      name: `${p}github_rate_limit_remaining`,
      help: 'x-ratelimit-remaining of the last GitHub response.',
      registers,
    });
    this.readyTime = new Histogram({
      name: `${p}time_to_ready_seconds`,
      help: 'Job end to the next runner registered and idle.',
      buckets: READY_BUCKETS,
      registers,
    });
    this.fsFreeBytes = new Gauge({
      name: `${p}work_fs_free_bytes`,
      help: 'Free bytes (available to unprivileged users) of the work filesystem.',
      registers,
    });
    this.fsFreeRatio = new Gauge({
      name: `${p}work_fs_free_ratio`,
      help: 'Free share (0..1) of the work filesystem blocks.',
      registers,
    });
    this.fsFreeInodes = new Gauge({
      name: `${p}work_fs_free_inodes`,
      help: 'Free inodes of the work filesystem.',
      registers,
    });
    this.fsFreeInodesRatio = new Gauge({
      name: `${p}work_fs_free_inodes_ratio`,
      help: 'Free share (0..1) of the work filesystem inodes.',
      registers,
    });
    this.cpuLoad = new Gauge({
      name: `${p}host_cpu_load_ratio`,
      help: 'Host CPU load (0..1) over the last sampling interval.',
      registers,
    });
    this.memUsed = new Gauge({
      name: `${p}host_memory_used_ratio`,
      help: 'Host memory in use (0..1), not counting reclaimable cache.',
      registers,
    });
    this.engineUp = new Gauge({
      name: `${p}container_engine_up`,
      help: '1 while the container engine of the policy answers, 0 when its socket exists but it does not; absent on hosts without one.',
      registers,
    });
    this.dockerMode = new Gauge({
      name: `${p}docker_mode`,
      help: '1 for the docker mode jobs get on this host (isolated, host, none); jobs_can_act_as_root="true" in host mode.',
      labelNames: ['mode', 'jobs_can_act_as_root'],
      registers,
    });
    this.policyReloads = new Counter({
      name: `${p}policy_reloads_total`,
      help: 'Policy hot reloads by result (ok, error).',
      labelNames: ['result'],
      registers,
    });
    this.quarantinedGauge = new Gauge({
      name: `${p}quarantined`,
      help: '1 while the host is quarantined (not reused, kept for inspection).',
      registers,
    });
    this.quarantinedGauge.set(0);
    // Series that alerts read with increase() exist from the start, for the reason given above.
    for (const result of ['clean', 'dirty']) this.cleanups.inc({ result }, 0);
    for (const result of ['ok', 'error']) this.policyReloads.inc({ result: this.label('policy', result) }, 0);
    for (const provider of opts.recycleProviders ?? []) {
      this.recycleFailures.inc({ provider: this.label('provider', provider) }, 0);
      // The one recycle reason with an alert of its own (the image must be rebuilt).
      this.recycles.inc({ reason: this.label('reason', 'runner-version-deprecated'), provider: this.label('provider', provider) }, 0);
    }
    // prom-client calls collect() with `this` bound to the gauge; the figures come from this object.
    const loopFigures = () => this.loopFigures();
    new Gauge({
      name: `${p}event_loop_delay_seconds`,
      help: `Event-loop delay percentiles over the last ${this.windowMs / 1000} s window.`,
      labelNames: ['percentile'],
      registers,
      collect() {
        const v = loopFigures();
        this.set({ percentile: 'p50' }, v.p50);
        this.set({ percentile: 'p99' }, v.p99);
        this.set({ percentile: 'max' }, v.max);
      },
    });
    const buildInfo = new Gauge({
      name: `${p}build_info`,
      help: 'Always 1; labels carry the agent and Node.js versions.',
      labelNames: ['version', 'node_version'],
      registers,
    });
    buildInfo.set({ version: opts.version, node_version: process.versions.node }, 1);
    const startTime = new Gauge({
      name: `${p}start_time_seconds`,
      help: 'Unix time at which the agent process started.',
      registers,
    });
    startTime.set(Math.floor(this.clock.now() / 1000));
  }

  private label(metric: string, raw: string | number): string {
    let g = this.guards.get(metric);
    if (!g) {
      g = new LabelGuard();
      this.guards.set(metric, g);
    }
    return g.value(raw);
  }

  /** Marks `state` as the current lifecycle state (1) and every other state 0. */
  setState(state: string): void {
    this.generation++;
    const s = this.states.has(state) ? state : this.label('state', state);
    this.states.add(s);
    if (this.currentState === s) return;
    if (this.currentState !== undefined) this.state.set({ state: this.currentState }, 0);
    this.state.set({ state: s }, 1);
    this.currentState = s;
    this.stateSince.set(this.clock.now() / 1000);
    if (s === 'quarantined') this.quarantinedGauge.set(1);
  }

  /** Sets the quarantine flag directly (a host can be quarantined while stopping). */
  setQuarantined(quarantined: boolean): void {
    this.generation++;
    this.quarantinedGauge.set(quarantined ? 1 : 0);
  }

  /** Counts a finished job by result and records its duration. */
  jobEnded(result: string, seconds: number): void {
    this.generation++;
    this.jobs.inc({ result: this.label('result', result) });
    if (Number.isFinite(seconds) && seconds >= 0) this.jobDuration.observe(seconds);
  }

  /** The host's lifetime job count (the agent's own counter, restored after a restart). */
  jobsServedTotal(n: number): void {
    this.generation++;
    this.jobsServed.set(n);
  }

  /** Records a whole cleanup report: step durations and outcomes, removed items, verification. */
  cleanupReported(report: CleanupReport): void {
    this.generation++;
    this.cleanups.inc({ result: report.clean ? 'clean' : 'dirty' });
    this.cleanupDuration.observe(report.readyMs / 1000);
    for (const step of report.steps) {
      const name = this.label('step', step.name);
      this.stepDuration.observe({ step: name }, step.durationMs / 1000);
      this.stepOutcomes.inc({ step: name, outcome: step.outcome });
      for (const [kindRaw, removed] of Object.entries(step.removed)) {
        const kind = this.label('kind', kindRaw);
        if (removed.count > 0) this.removedItems.inc({ step: name, kind }, removed.count);
        if (removed.bytes > 0) this.removedBytes.inc({ step: name, kind }, removed.bytes);
      }
    }
    this.stepDuration.observe({ step: 'verify' }, report.verify.durationMs / 1000);
    if (!report.verify.clean) this.verifyFailures.inc();
  }

  /**
   * Counts a recycle signalled through `provider` for `reason`. The label is the reason's key, the
   * part before its first colon (max-jobs, disk-low, crash-loop, runner-version-deprecated,
   * quarantined...): the detail after it (percentages, counts) would make a new series each time.
   */
  recycled(reason: string, provider: string): void {
    this.generation++;
    this.recycles.inc({
      reason: this.label('reason', reason.split(':', 1)[0]?.trim() || reason),
      provider: this.label('provider', provider),
    });
  }

  /** Counts a recycle attempt that `provider` failed to carry out. */
  recycleFailed(provider: string): void {
    this.generation++;
    this.recycleFailures.inc({ provider: this.label('provider', provider) });
  }

  /** Counts a Runner.Listener exit; pass the exit code, or the signal name when killed. */
  listenerExited(code: number | string | null, signal?: string | null): void {
    this.generation++;
    const v = code === null || code === undefined ? `signal:${signal ?? 'unknown'}` : code;
    this.listenerExits.inc({ code: this.label('code', v) });
  }

  /** Counts a GitHub request; `endpoint` is the route template, never a URL with ids or tokens. */
  githubRequest(endpoint: string, status: number | string): void {
    this.generation++;
    this.githubRequests.inc({
      endpoint: this.label('endpoint', endpoint),
      status: this.label('status', status),
    });
  }

  /** Records x-ratelimit-remaining from the last GitHub response. */
  rateLimitRemaining(n: number): void {
    this.generation++;
    this.rateRemaining.set(n);
  }

  /** Records the time from a job's end to the next runner ready. */
  timeToReady(seconds: number): void {
    this.generation++;
    if (Number.isFinite(seconds) && seconds >= 0) this.readyTime.observe(seconds);
  }

  /** Stores the latest host figures (percentages become 0..1 ratios). */
  hostFigures(f: HostFigures): void {
    this.generation++;
    const set = (g: Gauge, v: number | undefined, scale = 1): void => {
      if (v !== undefined && Number.isFinite(v)) g.set(v / scale);
    };
    set(this.fsFreeBytes, f.workFsFreeBytes);
    set(this.fsFreeInodes, f.workFsFreeInodes);
    set(this.fsFreeRatio, f.workFsFreePercent, 100);
    set(this.fsFreeInodesRatio, f.workFsFreeInodesPercent, 100);
    set(this.cpuLoad, f.cpuLoadPercent, 100);
    set(this.memUsed, f.memUsedPercent, 100);
    if (f.containerEngine) this.engineUp.set(f.containerEngine.up ? 1 : 0);
    if (f.dockerMode) {
      // One series at a time: a mode that changed (policy reload) drops the old one.
      this.dockerMode.reset();
      this.dockerMode.set({ mode: this.label('docker_mode', f.dockerMode.mode), jobs_can_act_as_root: String(f.dockerMode.jobsCanActAsRoot) }, 1);
    }
  }

  /** Counts a policy reload by result ("ok" or "error"). */
  policyReload(result: string): void {
    this.generation++;
    this.policyReloads.inc({ result: this.label('policy', result) });
  }

  /**
   * The metrics in Prometheus text format. Reuses the last output for up to RENDER_CACHE_MS while
   * nothing changed through the methods above (concurrent scrapes share one render).
   */
  render(): Promise<string> {
    const now = this.clock.now();
    const r = this.rendered;
    if (r && r.generation === this.generation && now - r.at >= 0 && now - r.at < RENDER_CACHE_MS) {
      return r.text;
    }
    const text = this.registry.metrics();
    this.rendered = { generation: this.generation, at: now, text };
    // A failed render is not cached.
    text.catch(() => {
      if (this.rendered?.text === text) this.rendered = undefined;
    });
    return text;
  }

  /**
   * Measures event-loop delay until `signal` aborts, publishing p50/p99/max every window
   * (EVENT_LOOP_WINDOW_MS) so that the figures do not depend on how often anyone scrapes.
   */
  async run(signal: AbortSignal): Promise<void> {
    const h = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
    h.enable();
    this.loopMonitor = h;
    try {
      for (;;) {
        await this.clock.sleep(this.windowMs, signal);
        this.loopPublished = readLoop(h);
        this.generation++;
        h.reset();
      }
    } catch (err) {
      if (!isAbort(err) && !signal.aborted) throw err;
    } finally {
      h.disable();
      this.loopMonitor = undefined;
    }
  }

  private loopFigures(): { p50: number; p99: number; max: number } {
    if (this.loopPublished) return this.loopPublished;
    if (this.loopMonitor && this.loopMonitor.count > 0) return readLoop(this.loopMonitor);
    return { p50: 0, p99: 0, max: 0 };
  }
}

function readLoop(h: IntervalHistogram): { p50: number; p99: number; max: number } {
  if (h.count === 0) return { p50: 0, p99: 0, max: 0 };
  // The histogram is in nanoseconds; Prometheus wants seconds.
  return { p50: h.percentile(50) / 1e9, p99: h.percentile(99) / 1e9, max: h.max / 1e9 };
}
