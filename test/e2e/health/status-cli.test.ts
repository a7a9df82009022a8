import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { statusCommand, formatStatus } from '../../../src/cli/status.js';
import { startHealthServer, type HealthServer } from '../../../src/health/server.js';
import { AgentMetrics } from '../../../src/health/metrics.js';
import type { StatusSnapshot } from '../../../src/health/snapshot.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { captureIo } from '../../helpers/io.js';

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);

const snap: StatusSnapshot = {
  state: 'idle',
  stateSince: '2026-01-01T11:55:00.000Z',
  loopAlive: true,
  quarantined: false,
  runner: { name: 'rw-host-1-0042', id: 42, labels: ['self-hosted', 'linux', 'x64'] },
  jobsServed: 7,
  lastJob: {
    repository: 'octo/app',
    workflow: 'ci',
    job: 'build',
    runId: '5001',
    endedAt: '2026-01-01T11:54:00.000Z',
    result: 'succeeded',
    cleanup: { clean: true, readyMs: 2400, removed: { file: 1200, process: 3, container: 0 }, problems: [] },
    decision: 'reuse',
  },
  policy: {
    team: 'payments',
    file: '/etc/runner-warden/policies/payments.yaml',
    version: 'a1b2c3',
    loadedAt: '2026-01-01T10:00:00.000Z',
    lastReloadError: 'payments.yaml:12:3: cleanup.keep: expected array, got string',
  },
  host: {
    cpuLoadPercent: 7.5,
    memUsedPercent: 41,
    workFsFreeBytes: 53687091200,
    workFsFreeInodes: 3200000,
    workFsFreePercent: 62.5,
    updatedAt: '2026-01-01T11:59:50.000Z',
  },
  agent: { version: '0.1.0', pid: 4242, startedAt: '2026-01-01T10:00:00.000Z', uptimeSeconds: 7200 },
};

const io = captureIo;

describe('runner-warden status', () => {
  let dir: string;
  let tokenFile: string;
  let open: HealthServer;
  let guarded: HealthServer;
  let current: StatusSnapshot = snap;
  const clock = new ManualClock(NOW);
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'rw-status-'));
    tokenFile = path.join(dir, 'token');
    await writeFile(tokenFile, 'hc_status_test_token_0123456789\n', { mode: 0o600 });
    await chmod(tokenFile, 0o600);
    const metrics = new AgentMetrics({ version: '0.1.0' });
    open = await startHealthServer({ listen: '127.0.0.1:0', snapshot: () => current, metrics });
    guarded = await startHealthServer({ listen: '127.0.0.1:0', tokenFile, snapshot: () => current, metrics });
  });
  after(async () => {
    await open.close();
    await guarded.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('prints state since, runner, last job with cleanup counts, policy with reload error, and disk', async () => {
    const c = io();
    const code = await statusCommand([], c.io, { url: `http://127.0.0.1:${open.address.port}`, clock });
    assert.equal(code, 0, c.err());
    const out = c.out();
    const expectLines = [
      /^agent:\s+runner-warden 0\.1\.0, pid 4242, up 2h 0m$/m,
      /^state:\s+idle since 2026-01-01T11:55:00Z \(5m 0s ago\)$/m,
      /^health:\s+loop alive$/m,
      /^runner:\s+rw-host-1-0042 \(id 42\), labels self-hosted,linux,x64$/m,
      /^current job:\s+none$/m,
      /^jobs served:\s+7$/m,
      /^last job:\s+octo\/app · ci · build run 5001, ended 2026-01-01T11:54:00Z \(6m 0s ago\) → succeeded$/m,
      /^ {2}cleanup:\s+clean, ready in 2400 ms, removed 1200 file, 3 process$/m,
      /^ {2}decision:\s+reuse$/m,
      /^policy:\s+team payments, \/etc\/runner-warden\/policies\/payments\.yaml, version a1b2c3, loaded 2026-01-01T10:00:00Z \(2h 0m ago\)$/m,
      /^ {2}reload err:\s+payments\.yaml:12:3: cleanup\.keep: expected array, got string$/m,
      /^disk:\s+work fs 62\.5% free, 50\.0 GiB, 3200000 inodes free$/m,
      /^host:\s+cpu 8%, memory 41% used \(sampled 2026-01-01T11:59:50Z \(10s ago\)\)$/m,
    ];
    for (const re of expectLines) assert.match(out, re, `status output:\n${out}`);
  });

  test('shows a quarantined host, a stalled loop and a running job plainly', () => {
    const out = formatStatus(
      {
        ...snap,
        state: 'quarantined',
        loopAlive: false,
        quarantined: true,
        quarantineReason: 'verify: process 99 survived',
        currentJob: { repository: 'octo/app', job: 'deploy', startedAt: '2026-01-01T11:59:00.000Z' },
        lastJob: undefined,
        host: undefined,
        runner: undefined,
      },
      NOW,
    );
    assert.match(out, /^health:\s+LOOP STALLED, QUARANTINED: verify: process 99 survived$/m);
    assert.match(out, /^current job:\s+octo\/app · deploy, started 2026-01-01T11:59:00Z \(1m 0s ago\)$/m);
    assert.match(out, /^last job:\s+none yet$/m);
    assert.match(out, /^runner:\s+none registered$/m);
    assert.match(out, /^disk:\s+not sampled yet$/m);
  });

  test('--json prints the document as the agent sent it', async () => {
    const c = io();
    assert.equal(await statusCommand(['--json'], c.io, { url: `127.0.0.1:${open.address.port}` }), 0);
    assert.deepEqual(JSON.parse(c.out()), snap);
  });

  test('uses the token file when the agent requires one, and explains a 401', async () => {
    const url = `http://127.0.0.1:${guarded.address.port}`;
    let c = io();
    assert.equal(await statusCommand([], c.io, { url, tokenFile, clock }), 0, c.err());
    assert.match(c.out(), /^state:\s+idle/m);
    c = io();
    assert.equal(await statusCommand([], c.io, { url }), 1);
    assert.match(c.err(), /answered 401 \(wrong or missing token/);
  });

  test('an agent that is not running, a wrong URL or a non-status answer exit 1 or 2 with a reason', async () => {
    const other = http.createServer((_req, res) => res.end('<html>not an agent</html>'));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    const otherPort = (other.address() as AddressInfo).port;
    await new Promise<void>((r) => other.close(() => r()));
    // The port is free now: nothing listens.
    let c = io();
    assert.equal(await statusCommand([], c.io, { url: `http://127.0.0.1:${otherPort}` }), 1);
    assert.match(c.err(), /cannot read .*ECONNREFUSED \(is the agent running\?\)/);

    const html = http.createServer((_req, res) => res.end('<html>not an agent</html>'));
    await new Promise<void>((r) => html.listen(0, '127.0.0.1', r));
    try {
      c = io();
      const port = (html.address() as AddressInfo).port;
      assert.equal(await statusCommand(['--url', `http://127.0.0.1:${port}`], c.io, { url: 'unused:1' }), 1);
      assert.match(c.err(), /did not return a status document/);
    } finally {
      await new Promise<void>((r) => html.close(() => r()));
    }
    c = io();
    assert.equal(await statusCommand(['--bogus'], c.io, { url: 'x' }), 2);
    assert.match(c.err(), /usage: runner-warden status/);
  });

  test('names a hostile job chose cannot put control characters on the terminal', async () => {
    current = { ...snap, currentJob: { repository: 'octo/app\u001b]0;pwned\u0007', job: 'b\r\nstate: fake' } };
    try {
      const c = io();
      await statusCommand([], c.io, { url: `http://127.0.0.1:${open.address.port}`, clock });
      // eslint-disable-next-line no-control-regex -- finding control characters is what this assertion is for
      assert.ok(!/[\u0000-\u0008\u000b-\u001f]/.test(c.out()), 'control characters reached the terminal');
      assert.equal(c.out().match(/^state:/gm)?.length, 1, 'a newline in a job name must not forge a line');
    } finally {
      current = snap;
    }
  });
});
