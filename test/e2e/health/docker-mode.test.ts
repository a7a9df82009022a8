/** The docker mode on /status, `runner-warden status` and /metrics: the mode and whether jobs can act as root through the engine. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { HostFiguresSampler, type HostSample } from '../../../src/health/host-figures.js';
import { AgentMetrics } from '../../../src/health/metrics.js';
import { startHealthServer } from '../../../src/health/server.js';
import type { StatusSnapshot } from '../../../src/health/snapshot.js';
import { formatStatus } from '../../../src/cli/status.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { modeStatus } from '../../../src/engine/mode.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';

const fakeSources = { cpuLoadPercent: async () => 10, memUsedPercent: async () => 20 };

function policyWith(mode: 'host' | 'none' | 'isolated'): Policy {
  const p = structuredClone(DEFAULT_POLICY);
  p.docker.mode = mode;
  return p;
}

test('docker mode host: the gauge, /status and the status command say jobs can act as root; a change of mode leaves one series', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-dockermode-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const guard = new EngineGuard({});
  let policy = policyWith('host');
  const sampler = new HostFiguresSampler({
    workDir: dir,
    sources: { ...fakeSources, dockerMode: async () => modeStatus(await guard.mode(policy)) },
    onSample: () => {},
  });
  const metrics = new AgentMetrics({ version: 'test' });
  let sample: HostSample = await sampler.sampleOnce();
  metrics.hostFigures(sample);
  assert.deepEqual(sample.dockerMode, { mode: 'host', jobsCanActAsRoot: true });

  const snap = (): StatusSnapshot => ({
    state: 'idle',
    stateSince: new Date().toISOString(),
    loopAlive: true,
    quarantined: false,
    jobsServed: 0,
    policy: { team: 't' },
    host: sample,
    agent: { version: 'test', pid: 1, startedAt: new Date().toISOString(), uptimeSeconds: 1 },
  });
  const server = await startHealthServer({ listen: '127.0.0.1:0', snapshot: snap, metrics });
  t.after(() => server.close());
  const base = `http://127.0.0.1:${server.address.port}`;
  const status = (await (await fetch(`${base}/status`)).json()) as StatusSnapshot;
  assert.deepEqual(status.host?.dockerMode, { mode: 'host', jobsCanActAsRoot: true });
  const text = await (await fetch(`${base}/metrics`)).text();
  assert.match(text, /^runner_warden_docker_mode\{mode="host",jobs_can_act_as_root="true"\} 1$/m);
  assert.match(formatStatus(snap(), Date.now()), /^docker mode: +host \(JOBS CAN ACT AS ROOT/m);

  policy = policyWith('none');
  sample = await sampler.sampleOnce();
  metrics.hostFigures(sample);
  const after = await metrics.render();
  assert.match(after, /^runner_warden_docker_mode\{mode="none",jobs_can_act_as_root="false"\} 1$/m);
  assert.doesNotMatch(after, /runner_warden_docker_mode\{mode="host"/, 'the old mode kept its series');
  assert.match(formatStatus(snap(), Date.now()), /^docker mode: +none, jobs cannot act as root/m);
});
