/**
 * The readiness gate before the first registration of a boot: the container
 * engine must answer when the host has one, and the host is cleaned and verified before it takes
 * its first job, as after every job.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { agentPolicy, createWorld, until } from './agent-world.js';
import { probeEngine, waitForEngine } from '../../../src/cleanup/engine-inventory.js';
import { systemClock } from '../../../src/lib/clock.js';
import type { JournalRecord } from '../../../src/agent/journal.js';

type EventRecord = Extract<JournalRecord, { type: 'event' }>;
const preflightEvents = (records: JournalRecord[]): EventRecord[] =>
  records.filter((r): r is EventRecord => r.type === 'event' && r.event === 'preflight');

test('leftovers on a fresh boot are cleaned before the first registration, and the first job never sees them', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  const { lab } = w;
  // The baseline is taken at the first wiring; plant what a previous, unrecorded life left behind after it.
  const rt = await w.runtime();
  await rt.close();
  const dockerDir = path.join(lab.user.home, '.docker');
  await mkdir(dockerDir, { recursive: true });
  await writeFile(path.join(dockerDir, 'config.json'), '{"auths":{"ghcr.io":{"auth":"bGVmdG92ZXI6c2VjcmV0"}}}');
  await chown(dockerDir, lab.user.uid, lab.user.gid);
  await chown(path.join(dockerDir, 'config.json'), lab.user.uid, lab.user.gid);
  const stray = path.join(w.runnerRoot, '_work', 'octo', 'stale-checkout.txt');
  await mkdir(path.dirname(stray), { recursive: true });
  await writeFile(stray, 'from a job nobody recorded\n');
  const seen = path.join(w.dropDir, 'seen.txt');
  w.fake.enqueueJob({
    repository: 'octo/app',
    steps: [
      { name: 'look', run: `{ test -e "$HOME/.docker/config.json" && echo docker; test -e "${stray}" && echo stray; true; } > ${seen}` },
    ],
  });
  const { exit, jobs, records } = await w.runToEnd();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobs[0]?.result, 'Succeeded');
  assert.equal((await readFile(seen, 'utf8')).trim(), '', 'the first job saw what the preflight should have removed');
  const pre = preflightEvents(records);
  assert.equal(pre.length, 1);
  assert.equal(pre[0]?.detail?.ok, true, JSON.stringify(pre[0]?.detail));
  assert.equal(pre[0]?.detail?.decision, 'reuse');
  const order = records.map((r) => (r.type === 'event' ? r.event : 'job'));
  assert.ok(order.indexOf('preflight') < order.indexOf('job'), `the preflight must come before the job: ${order.join(', ')}`);
});

test('a host whose container engine never answers is quarantined before it registers', async (t) => {
  const w = await createWorld({
    timeouts: { engineWaitMs: 1_500 },
    config: { recycle: { provider: 'exit', exitCode: 4 } },
  });
  t.after(() => w.dispose());
  // A socket path that exists but where nothing listens: a dockerd that failed to start.
  const sock = path.join(w.lab.root, 'dead-docker.sock');
  await writeFile(sock, '');
  await writeFile(
    path.join(w.policyDir, 'test.yaml'),
    JSON.stringify(agentPolicy(w.lab, { cleanup: { processes: { graceSeconds: 1 }, containers: { socket: sock } } })),
  );
  const started = Date.now();
  const { exit, jobs, records } = await w.runToEnd();
  assert.equal(exit.code, 4, `quarantine recycles through the exit provider: ${exit.reason}`);
  assert.match(exit.reason, /quarantined: preflight: the container engine at .*dead-docker\.sock did not answer within 2 s/);
  assert.ok(Date.now() - started >= 1_400, 'the agent must wait engineWaitMs for a late engine');
  assert.equal(jobs.length, 0);
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 0, 'nothing may be registered on a host that cannot run container jobs');
  assert.equal(preflightEvents(records)[0]?.detail?.ok, false);
});

test('waitForEngine: no socket is fine at once, a late engine is waited for, a dead one is reported', async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  const dir = w.lab.root;
  const signal = AbortSignal.timeout(20_000);
  assert.equal(
    await waitForEngine(path.join(dir, 'absent.sock'), 10_000, systemClock, signal),
    undefined,
    'no socket file: no engine on this host',
  );

  const late = path.join(dir, 'late.sock');
  await writeFile(late, ''); // the path exists before the daemon binds it, as with a socket-activated dockerd
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ Version: '27.0.0', ApiVersion: '1.46', MinAPIVersion: '1.24', Os: 'linux', Arch: 'amd64' }));
  });
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  setTimeout(() => void rm(late, { force: true }).then(() => server.listen(late)), 1_200);
  const begun = Date.now();
  assert.equal(await waitForEngine(late, 10_000, systemClock, signal), undefined);
  assert.ok(Date.now() - begun >= 1_000, 'it must have waited for the engine to start');

  const dead = path.join(dir, 'dead.sock');
  await writeFile(dead, '');
  const problem = await waitForEngine(dead, 1_200, systemClock, signal);
  assert.match(problem ?? '', /^the container engine at .*dead\.sock did not answer within 1 s/);
  assert.equal(existsSync(dead), true);
});

test('an agent restarted on a host that already served its policy limit recycles instead of registering', async (t) => {
  // First life: the policy allows two jobs, the agent itself stops after one (runner.maxJobs 1),
  // leaving a clean host and no registration, the case that skips recovery.
  const w = await createWorld({ runner: { maxJobs: 1 }, config: { recycle: { provider: 'exit', exitCode: 5 } } });
  t.after(() => w.dispose());
  const policyFile = path.join(w.policyDir, 'test.yaml');
  await writeFile(policyFile, JSON.stringify(agentPolicy(w.lab, { host: { maxJobs: 2 } })));
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'ok', run: 'true' }] });
  const first = await w.runToEnd();
  assert.equal(first.exit.code, 0, first.exit.reason);
  assert.equal(first.jobs.length, 1);
  // The team lowers its limit to one job per host; the agent is started again on the same host.
  await writeFile(policyFile, JSON.stringify(agentPolicy(w.lab, { host: { maxJobs: 1 } })));
  const calls = w.fake.restCalls({ path: /generate-jitconfig/ });
  const second = await w.runToEnd();
  assert.equal(second.exit.code, 5, `recycled through the exit provider: ${second.exit.reason}`);
  assert.match(second.exit.reason, /recycled \(max-jobs: 1 of 1\)/);
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), calls, 'a used-up host must not register again');
  const pre = preflightEvents(second.records).at(-1);
  assert.equal(pre?.detail?.decision, 'recycle');
});

test('a container engine that does not answer shows in /metrics and /status; one that does shows its version', async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  const sock = path.join(w.lab.root, 'engine.sock');
  await writeFile(sock, ''); // the socket file left behind by a daemon that died
  await writeFile(
    path.join(w.policyDir, 'test.yaml'),
    JSON.stringify(agentPolicy(w.lab, { cleanup: { processes: { graceSeconds: 1 }, containers: { socket: sock } } })),
  );
  const rt = await w.runtime();
  t.after(() => rt.close());
  const engineUp = async (): Promise<string | undefined> =>
    /^runner_warden_container_engine_up (\d)$/m.exec(await rt.metrics.render())?.[1];
  await until(async () => (await engineUp()) !== undefined, 'the first host sample');
  assert.equal(await engineUp(), '0');
  type Status = { host?: { containerEngine?: { up: boolean; error?: string } } };
  const readStatus = async (): Promise<Status> =>
    (await (await fetch(`http://127.0.0.1:${rt.health?.address.port}/status`)).json()) as Status;
  // The gauge can come from the preflight's engine wait before the first host sample reaches /status.
  await until(async () => (await readStatus()).host?.containerEngine !== undefined, 'the first host sample in /status');
  const status = await readStatus();
  assert.equal(status.host?.containerEngine?.up, false);
  assert.ok(status.host?.containerEngine?.error, 'the engine error is shown for the operator');

  await rm(sock);
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ Version: '27.1.0', ApiVersion: '1.46' }));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  assert.deepEqual(await probeEngine(sock, AbortSignal.timeout(5_000)), { up: true, version: '27.1.0' });
  assert.equal(
    await probeEngine(path.join(w.lab.root, 'absent.sock'), AbortSignal.timeout(5_000)),
    undefined,
    'no socket: no engine, no series',
  );
});
