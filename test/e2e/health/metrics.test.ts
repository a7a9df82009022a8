import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentMetrics, MAX_LABEL_VALUES, RENDER_CACHE_MS } from '../../../src/health/metrics.js';
import { ALL_STATES } from '../../../src/agent/states.js';
import { ManualClock } from '../../../src/lib/clock.js';
import type { CleanupReport } from '../../../src/cleanup/types.js';

/** The value of one series in Prometheus text, or undefined when the series is absent. */
function value(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    if (line.slice(0, i) === series) return Number(line.slice(i + 1));
  }
  return undefined;
}

const report: CleanupReport = {
  steps: [
    { name: 'processes', outcome: 'ok', durationMs: 40, removed: { process: { count: 3, bytes: 0 } } },
    {
      name: 'workdir',
      outcome: 'ok',
      durationMs: 1500,
      removed: { file: { count: 1200, bytes: 5_000_000 }, dir: { count: 40, bytes: 0 } },
    },
    { name: 'docker', outcome: 'failed', durationMs: 10, removed: {}, reason: 'daemon down' },
  ],
  verify: { clean: false, durationMs: 250, problems: ['process 1234 of runner user still alive'] },
  clean: false,
  readyMs: 1800,
};

test('setState marks exactly one state with 1 and records since when', async () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const m = new AgentMetrics({ version: '1.2.3', clock, states: ALL_STATES });
  let text = await m.render();
  for (const s of ALL_STATES) assert.equal(value(text, `runner_warden_state{state="${s}"}`), 0, `${s} series at start`);
  m.setState('registering');
  clock.advance(5000);
  m.setState('idle');
  text = await m.render();
  const ones = text.split('\n').filter((l) => l.startsWith('runner_warden_state{') && l.endsWith(' 1'));
  assert.deepEqual(ones, ['runner_warden_state{state="idle"} 1'], 'only the current state should be 1');
  assert.equal(value(text, 'runner_warden_state_since_timestamp_seconds'), Date.UTC(2026, 0, 1, 0, 0, 5) / 1000);
  m.setState('some-future-state');
  text = await m.render();
  assert.equal(value(text, 'runner_warden_state{state="some-future-state"}'), 1, 'unknown states get a series');
  assert.equal(value(text, 'runner_warden_state{state="idle"}'), 0);
});

test('entering the quarantined state sets the quarantined gauge', async () => {
  const m = new AgentMetrics({ version: '1' });
  assert.equal(value(await m.render(), 'runner_warden_quarantined'), 0);
  m.setState('quarantined');
  assert.equal(value(await m.render(), 'runner_warden_quarantined'), 1);
  m.setQuarantined(false);
  assert.equal(value(await m.render(), 'runner_warden_quarantined'), 0);
});

test('a cleanup report becomes step durations, outcomes, removed counts and a verification failure', async () => {
  const m = new AgentMetrics({ version: '1' });
  m.cleanupReported(report);
  const t = await m.render();
  assert.equal(value(t, 'runner_warden_cleanups_total{result="dirty"}'), 1);
  assert.equal(value(t, 'runner_warden_cleanups_total{result="clean"}'), 0, 'clean series should exist at 0');
  assert.equal(value(t, 'runner_warden_cleanup_removed_items_total{step="workdir",kind="file"}'), 1200);
  assert.equal(value(t, 'runner_warden_cleanup_removed_items_total{step="workdir",kind="dir"}'), 40);
  assert.equal(value(t, 'runner_warden_cleanup_removed_bytes_total{step="workdir",kind="file"}'), 5_000_000);
  assert.equal(value(t, 'runner_warden_cleanup_removed_items_total{step="processes",kind="process"}'), 3);
  assert.equal(
    value(t, 'runner_warden_cleanup_removed_bytes_total{step="processes",kind="process"}'),
    undefined,
    'zero bytes add no series',
  );
  assert.equal(value(t, 'runner_warden_cleanup_step_outcomes_total{step="docker",outcome="failed"}'), 1);
  assert.equal(value(t, 'runner_warden_cleanup_step_duration_seconds_sum{step="workdir"}'), 1.5);
  assert.equal(value(t, 'runner_warden_cleanup_step_duration_seconds_bucket{le="2.5",step="workdir"}'), 1);
  assert.equal(value(t, 'runner_warden_cleanup_step_duration_seconds_bucket{le="1",step="workdir"}'), 0);
  assert.equal(value(t, 'runner_warden_cleanup_step_duration_seconds_sum{step="verify"}'), 0.25);
  assert.equal(value(t, 'runner_warden_verification_failures_total'), 1);
  assert.equal(value(t, 'runner_warden_cleanup_duration_seconds_sum'), 1.8);
});

test('the typed methods each move their series', async () => {
  const m = new AgentMetrics({ version: '1', recycleProviders: ['aws-asg', 'shutdown'] });
  let t = await m.render();
  assert.equal(value(t, 'runner_warden_recycle_failures_total{provider="shutdown"}'), 0, 'configured providers start at 0');
  assert.equal(
    value(t, 'runner_warden_recycles_total{reason="runner-version-deprecated",provider="shutdown"}'),
    0,
    'the series the deprecation alert reads with increase() starts at 0',
  );
  m.jobEnded('succeeded', 90);
  m.jobEnded('failed', 30);
  m.jobEnded('failed', -1);
  m.jobsServedTotal(7);
  m.recycled('max-jobs', 'aws-asg');
  m.recycled('disk-low: 3.2% free < 10%', 'aws-asg');
  m.recycled('disk-low: 2.9% free < 10%', 'aws-asg');
  m.recycleFailed('aws-asg');
  m.listenerExited(0);
  m.listenerExited(2);
  m.listenerExited(null, 'SIGKILL');
  m.githubRequest('POST /orgs/{org}/actions/runners/generate-jitconfig', 201);
  m.rateLimitRemaining(4321);
  m.timeToReady(28);
  m.policyReload('error');
  m.hostFigures({ cpuLoadPercent: 25, memUsedPercent: 50, workFsFreeBytes: 1e9, workFsFreeInodes: 12345, workFsFreePercent: 40 });
  t = await m.render();
  const want: Array<[string, number]> = [
    ['runner_warden_jobs_total{result="succeeded"}', 1],
    ['runner_warden_jobs_total{result="failed"}', 2],
    ['runner_warden_job_duration_seconds_count', 2],
    ['runner_warden_host_jobs_served', 7],
    ['runner_warden_recycles_total{reason="max-jobs",provider="aws-asg"}', 1],
    ['runner_warden_recycles_total{reason="disk-low",provider="aws-asg"}', 2],
    ['runner_warden_recycle_failures_total{provider="aws-asg"}', 1],
    ['runner_warden_listener_exits_total{code="0"}', 1],
    ['runner_warden_listener_exits_total{code="2"}', 1],
    ['runner_warden_listener_exits_total{code="signal:SIGKILL"}', 1],
    ['runner_warden_github_requests_total{endpoint="POST /orgs/{org}/actions/runners/generate-jitconfig",status="201"}', 1],
    ['runner_warden_github_rate_limit_remaining', 4321],
    ['runner_warden_time_to_ready_seconds_bucket{le="30"}', 1],
    ['runner_warden_time_to_ready_seconds_bucket{le="20"}', 0],
    ['runner_warden_policy_reloads_total{result="error"}', 1],
    ['runner_warden_policy_reloads_total{result="ok"}', 0],
    ['runner_warden_host_cpu_load_ratio', 0.25],
    ['runner_warden_host_memory_used_ratio', 0.5],
    ['runner_warden_work_fs_free_bytes', 1e9],
    ['runner_warden_work_fs_free_inodes', 12345],
    ['runner_warden_work_fs_free_ratio', 0.4],
    ['runner_warden_build_info{version="1",node_version="' + process.versions.node + '"}', 1],
  ];
  for (const [series, v] of want) assert.equal(value(t, series), v, series);
});

test('unbounded label values are folded into "other" and cut in length', async () => {
  const m = new AgentMetrics({ version: '1' });
  for (let i = 0; i < MAX_LABEL_VALUES + 50; i++) m.githubRequest(`/repos/o/r/${i}`, 200);
  m.recycled('x'.repeat(500), 'none');
  const t = await m.render();
  const endpoints = new Set(
    t
      .split('\n')
      .filter((l) => l.startsWith('runner_warden_github_requests_total{'))
      .map((l) => /endpoint="([^"]*)"/.exec(l)?.[1]),
  );
  assert.equal(endpoints.size, MAX_LABEL_VALUES + 1, 'cap plus "other"');
  assert.equal(value(t, 'runner_warden_github_requests_total{endpoint="other",status="200"}'), 50);
  assert.ok(!t.includes('x'.repeat(81)), 'label values should be cut at MAX_LABEL_LENGTH');
});

test('event-loop delay is published per window while run() is active and run() ends on abort', async () => {
  const clock = new ManualClock();
  const m = new AgentMetrics({ version: '1', clock, eventLoopWindowMs: 60_000 });
  const ac = new AbortController();
  const running = m.run(ac.signal);
  // Block the loop for ~60 ms so the monitor (20 ms resolution) sees a delay.
  await new Promise((r) => setTimeout(r, 30));
  const until = Date.now() + 60;
  while (Date.now() < until) {
    // busy wait on purpose: this is the stall being measured
  }
  await new Promise((r) => setTimeout(r, 30));
  clock.advance(60_000);
  await new Promise((r) => setImmediate(r));
  const t = await m.render();
  const max = value(t, 'runner_warden_event_loop_delay_seconds{percentile="max"}') ?? 0;
  assert.ok(max >= 0.03, `max delay ${max}s should reflect the 60 ms stall`);
  assert.ok((value(t, 'runner_warden_event_loop_delay_seconds{percentile="p50"}') ?? -1) >= 0);
  ac.abort();
  await running;
});

test('render reuses its output only while nothing changed and for at most RENDER_CACHE_MS', async () => {
  const clock = new ManualClock();
  const m = new AgentMetrics({ version: '1', clock });
  const a = m.render();
  assert.equal(m.render(), a, 'concurrent scrapes should share one render');
  m.rateLimitRemaining(10);
  const b = await m.render();
  assert.equal(value(b, 'runner_warden_github_rate_limit_remaining'), 10, 'a change must show at once');
  const spy = m.registry.getSingleMetric('runner_warden_github_rate_limit_remaining');
  (spy as unknown as { set(v: number): void }).set(20); // behind the cache's back
  assert.equal(value(await m.render(), 'runner_warden_github_rate_limit_remaining'), 10);
  clock.advance(RENDER_CACHE_MS);
  assert.equal(value(await m.render(), 'runner_warden_github_rate_limit_remaining'), 20, 'cache must expire');
});
