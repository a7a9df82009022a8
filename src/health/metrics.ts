/**
 * The agent's Prometheus metrics, on a registry of its own (never prom-client's global
 * one, so that tests and a second agent in one process cannot mix series). Every name starts with
 * `runner_warden_`; units are base units (seconds, bytes, ratios 0..1) as Prometheus asks.
 *
 * The agent calls the typed methods below as things happen; the health server only calls
 * `render()`. Nothing here does I/O: host figures arrive from host-figures.ts through
 * `hostFigures()`, the event-loop delay comes from event-loop.ts while `run()` is active. The
 * series themselves are declared in metric-set.ts, label values bounded by label-guard.ts.
 */
import { Registry, type Gauge } from 'prom-client';
import type { CleanupReport } from '../cleanup/types.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { EventLoopDelay } from './event-loop.js';
import { LabelGuards } from './label-guard.js';
import { defineMetrics, type MetricSet } from './metric-set.js';

export { METRIC_PREFIX } from './metric-set.js';
export { MAX_LABEL_LENGTH, MAX_LABEL_VALUES } from './label-guard.js';
export { EVENT_LOOP_RESOLUTION_MS, EVENT_LOOP_WINDOW_MS } from './event-loop.js';

/**
 * How long render() may serve its last output while no metric changed. Rendering is the only
 * real work a scrape does (~0.25 ms for this registry); a burst of scrapes or probes (several
 * Prometheus replicas, a load test) then costs one render per second, and a change still shows
 * at once because every typed method invalidates the cache.
 */
export const RENDER_CACHE_MS = 1_000;

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
  /** The image cache the policy names (docker.mirror): absent when it names none. Down means engines pull from the upstream. */
  imageCache?: { url: string; up: boolean; error?: string; full?: boolean; bytes?: number; capBytes?: number };
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

/** The agent's metrics over its own prom-client Registry. */
export class AgentMetrics {
  /** The registry; exposed for tests and for composing with other registries. */
  readonly registry = new Registry();
  /** Content-Type of `render()`'s output (Prometheus text format 0.0.4). */
  readonly contentType: string;
  private readonly clock: Clock;
  private readonly m: MetricSet;
  private readonly labels = new LabelGuards();
  private readonly loop: EventLoopDelay;
  private readonly states: Set<string>;
  private currentState: string | undefined;
  /** Bumped by every change; render() reuses its last output only within one generation. */
  private generation = 0;
  private rendered: { generation: number; at: number; text: Promise<string> } | undefined;

  constructor(opts: AgentMetricsOptions) {
    this.clock = opts.clock ?? systemClock;
    this.contentType = this.registry.contentType;
    this.loop = new EventLoopDelay(this.clock, opts.eventLoopWindowMs);
    this.m = defineMetrics(this.registry, {
      version: opts.version,
      startedAtSeconds: Math.floor(this.clock.now() / 1000),
      loopWindowMs: this.loop.windowMs,
      loopFigures: () => this.loop.figures(),
    });
    this.states = new Set(opts.states ?? []);
    for (const s of this.states) this.m.state.set({ state: s }, 0);
    this.m.quarantined.set(0);
    // Series that alerts read with increase() exist from the start, for the reasons given in the options.
    for (const result of ['clean', 'dirty']) this.m.cleanups.inc({ result }, 0);
    for (const result of ['ok', 'error']) this.m.policyReloads.inc({ result: this.labels.value('policy', result) }, 0);
    for (const provider of opts.recycleProviders ?? []) {
      this.m.recycleFailures.inc({ provider: this.labels.value('provider', provider) }, 0);
      // The one recycle reason with an alert of its own (the image must be rebuilt).
      this.m.recycles.inc(
        { reason: this.labels.value('reason', 'runner-version-deprecated'), provider: this.labels.value('provider', provider) },
        0,
      );
    }
  }

  /** Marks `state` as the current lifecycle state (1) and every other state 0. */
  setState(state: string): void {
    this.generation++;
    const s = this.states.has(state) ? state : this.labels.value('state', state);
    this.states.add(s);
    if (this.currentState === s) return;
    if (this.currentState !== undefined) this.m.state.set({ state: this.currentState }, 0);
    this.m.state.set({ state: s }, 1);
    this.currentState = s;
    this.m.stateSince.set(this.clock.now() / 1000);
    if (s === 'quarantined') this.m.quarantined.set(1);
  }

  /** Sets the quarantine flag directly (a host can be quarantined while stopping). */
  setQuarantined(quarantined: boolean): void {
    this.generation++;
    this.m.quarantined.set(quarantined ? 1 : 0);
  }

  /** Counts a finished job by result and records its duration. */
  jobEnded(result: string, seconds: number): void {
    this.generation++;
    this.m.jobs.inc({ result: this.labels.value('result', result) });
    if (Number.isFinite(seconds) && seconds >= 0) this.m.jobDuration.observe(seconds);
  }

  /** The host's lifetime job count (the agent's own counter, restored after a restart). */
  jobsServedTotal(n: number): void {
    this.generation++;
    this.m.jobsServed.set(n);
  }

  /** Records a whole cleanup report: step durations and outcomes, removed items, verification. */
  cleanupReported(report: CleanupReport): void {
    this.generation++;
    this.m.cleanups.inc({ result: report.clean ? 'clean' : 'dirty' });
    this.m.cleanupDuration.observe(report.readyMs / 1000);
    for (const step of report.steps) {
      const name = this.labels.value('step', step.name);
      this.m.stepDuration.observe({ step: name }, step.durationMs / 1000);
      this.m.stepOutcomes.inc({ step: name, outcome: step.outcome });
      for (const [kindRaw, removed] of Object.entries(step.removed)) {
        const kind = this.labels.value('kind', kindRaw);
        if (removed.count > 0) this.m.removedItems.inc({ step: name, kind }, removed.count);
        if (removed.bytes > 0) this.m.removedBytes.inc({ step: name, kind }, removed.bytes);
      }
    }
    this.m.stepDuration.observe({ step: 'verify' }, report.verify.durationMs / 1000);
    if (!report.verify.clean) this.m.verifyFailures.inc();
  }

  /**
   * Counts a recycle signalled through `provider` for `reason`. The label is the reason's key, the
   * part before its first colon (max-jobs, disk-low, crash-loop, runner-version-deprecated,
   * quarantined...): the detail after it (percentages, counts) would make a new series each time.
   */
  recycled(reason: string, provider: string): void {
    this.generation++;
    this.m.recycles.inc({
      reason: this.labels.value('reason', reason.split(':', 1)[0]?.trim() || reason),
      provider: this.labels.value('provider', provider),
    });
  }

  /** Counts a recycle attempt that `provider` failed to carry out. */
  recycleFailed(provider: string): void {
    this.generation++;
    this.m.recycleFailures.inc({ provider: this.labels.value('provider', provider) });
  }

  /** Counts a Runner.Listener exit; pass the exit code, or the signal name when killed. */
  listenerExited(code: number | string | null, signal?: string | null): void {
    this.generation++;
    const v = code === null || code === undefined ? `signal:${signal ?? 'unknown'}` : code;
    this.m.listenerExits.inc({ code: this.labels.value('code', v) });
  }

  /** Counts a GitHub request; `endpoint` is the route template, never a URL with ids or tokens. */
  githubRequest(endpoint: string, status: number | string): void {
    this.generation++;
    this.m.githubRequests.inc({
      endpoint: this.labels.value('endpoint', endpoint),
      status: this.labels.value('status', status),
    });
  }

  /** Records x-ratelimit-remaining from the last GitHub response. */
  rateLimitRemaining(n: number): void {
    this.generation++;
    this.m.rateRemaining.set(n);
  }

  /** Records the time from a job's end to the next runner ready. */
  timeToReady(seconds: number): void {
    this.generation++;
    if (Number.isFinite(seconds) && seconds >= 0) this.m.readyTime.observe(seconds);
  }

  /** Stores the latest host figures (percentages become 0..1 ratios). */
  hostFigures(f: HostFigures): void {
    this.generation++;
    const set = (g: Gauge, v: number | undefined, scale = 1): void => {
      if (v !== undefined && Number.isFinite(v)) g.set(v / scale);
    };
    set(this.m.fsFreeBytes, f.workFsFreeBytes);
    set(this.m.fsFreeInodes, f.workFsFreeInodes);
    set(this.m.fsFreeRatio, f.workFsFreePercent, 100);
    set(this.m.fsFreeInodesRatio, f.workFsFreeInodesPercent, 100);
    set(this.m.cpuLoad, f.cpuLoadPercent, 100);
    set(this.m.memUsed, f.memUsedPercent, 100);
    if (f.containerEngine) this.m.engineUp.set(f.containerEngine.up ? 1 : 0);
    if (f.dockerMode) {
      // One series at a time: a mode that changed (policy reload) drops the old one.
      this.m.dockerMode.reset();
      this.m.dockerMode.set(
        { mode: this.labels.value('docker_mode', f.dockerMode.mode), jobs_can_act_as_root: String(f.dockerMode.jobsCanActAsRoot) },
        1,
      );
    }
  }

  /** Counts a policy reload by result ("ok" or "error"). */
  policyReload(result: string): void {
    this.generation++;
    this.m.policyReloads.inc({ result: this.labels.value('policy', result) });
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
  run(signal: AbortSignal): Promise<void> {
    return this.loop.run(signal, () => this.generation++);
  }
}
