import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { AgentMetrics } from '../../../src/health/metrics.js';
import { startHealthServer } from '../../../src/health/server.js';
import type { StatusSnapshot } from '../../../src/health/snapshot.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const RULES = path.join(ROOT, 'packaging/prometheus/runner-warden.rules.yml');
const RULE_TESTS = path.join(ROOT, 'packaging/prometheus/runner-warden.rules.test.yml');
const DASHBOARD = path.join(ROOT, 'packaging/grafana/runner-warden.json');
const PROMTOOL = '/usr/bin/promtool';
const NO_PROMTOOL = existsSync(PROMTOOL)
  ? false
  : `promtool is not installed at ${PROMTOOL} (Debian package "prometheus", installed by the project's scripts)`;

/** Live /metrics text with every metric family populated, fetched over HTTP like Prometheus does. */
async function liveMetrics(): Promise<string> {
  const m = new AgentMetrics({ version: '0.1.0', recycleProviders: ['aws-asg'] });
  m.setState('idle');
  m.jobEnded('succeeded', 120);
  m.jobsServedTotal(1);
  m.cleanupReported({
    steps: [{ name: 'workdir', outcome: 'ok', durationMs: 900, removed: { file: { count: 10, bytes: 4096 } } }],
    verify: { clean: true, durationMs: 100, problems: [] },
    clean: true,
    readyMs: 1000,
  });
  m.recycled('max-jobs', 'aws-asg');
  m.listenerExited(0);
  m.githubRequest('POST /orgs/{org}/actions/runners/generate-jitconfig', 201);
  m.rateLimitRemaining(4999);
  m.timeToReady(30);
  m.policyReload('ok');
  m.hostFigures({
    cpuLoadPercent: 5,
    memUsedPercent: 30,
    workFsFreeBytes: 1e10,
    workFsFreeInodes: 1e6,
    workFsFreePercent: 70,
    workFsFreeInodesPercent: 80,
    containerEngine: { up: true },
  });
  const snap: StatusSnapshot = {
    state: 'idle',
    stateSince: new Date().toISOString(),
    loopAlive: true,
    quarantined: false,
    jobsServed: 1,
    policy: { team: 'default' },
    agent: { version: '0.1.0', pid: process.pid, startedAt: new Date().toISOString(), uptimeSeconds: 1 },
  };
  const s = await startHealthServer({ listen: '127.0.0.1:0', snapshot: () => snap, metrics: m });
  try {
    const res = await fetch(`http://127.0.0.1:${s.address.port}/metrics`);
    assert.equal(res.status, 200);
    return await res.text();
  } finally {
    await s.close();
  }
}

function promtool(args: string[], input?: string, cwd?: string): { code: number | null; out: string } {
  const r = spawnSync(PROMTOOL, args, { input, cwd, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Metric family names in Prometheus text (histogram series folded into their family). */
function families(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) /.exec(line);
    if (m) out.add(m[1] as string);
  }
  return out;
}

/** runner_warden_ names used in a PromQL expression, with histogram suffixes removed. */
function namesIn(expr: string): string[] {
  return [...expr.matchAll(/runner_warden_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

test('promtool accepts the alert rules', { skip: NO_PROMTOOL }, () => {
  const r = promtool(['check', 'rules', RULES]);
  assert.equal(r.code, 0, `promtool check rules:\n${r.out}`);
});

test('the alert rules fire as their unit tests expect', { skip: NO_PROMTOOL }, () => {
  const r = promtool(['test', 'rules', path.basename(RULE_TESTS)], undefined, path.dirname(RULE_TESTS));
  assert.equal(r.code, 0, `promtool test rules:\n${r.out}`);
});

test('promtool check metrics finds no problem in live /metrics output', { skip: NO_PROMTOOL }, async () => {
  const text = await liveMetrics();
  const r = promtool(['check', 'metrics'], text);
  assert.equal(r.code, 0, `promtool check metrics:\n${r.out}`);
  assert.equal(r.out.trim(), '', `promtool lint output should be empty:\n${r.out}`);
});

test('every metric the rules and the dashboard use is one the agent exports', async () => {
  const exported = families(await liveMetrics());
  const rules = parseYaml(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
  for (const rule of rules.groups.flatMap((g) => g.rules)) {
    for (const name of namesIn(rule.expr)) assert.ok(exported.has(name), `alert ${rule.alert} uses unknown metric ${name}`);
  }
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    uid: string;
    panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>;
  };
  assert.equal(dash.uid, 'runner-warden');
  const graphs = dash.panels.filter((p) => p.type !== 'row');
  assert.ok(graphs.length >= 20, `dashboard has only ${graphs.length} panels`);
  const used = new Set<string>();
  for (const p of graphs) {
    assert.ok(p.targets && p.targets.length > 0, `panel "${p.title}" has no query`);
    for (const t of p.targets) {
      assert.match(t.expr, /instance=~"\$instance"/, `panel "${p.title}" ignores the host selector`);
      for (const name of namesIn(t.expr)) {
        assert.ok(exported.has(name), `panel "${p.title}" uses unknown metric ${name}`);
        used.add(name);
      }
    }
  }
  const unused = [...exported].filter((n) => !used.has(n) && n !== 'runner_warden_start_time_seconds');
  assert.deepEqual(unused, [], 'every exported metric should have a panel');
});
