import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createSign, generateKeyPairSync } from 'node:crypto';
import { Octokit } from '@octokit/rest';
import { createAppAuth } from '@octokit/auth-app';
import { ManualClock } from '../../../src/lib/clock.js';
import {
  SECONDARY_LIMIT_MESSAGE,
  decodeJitConfig,
  startFakeGitHub,
  type FakeGitHub,
  type FakeGitHubOptions,
} from '../../../src/sim/github/server.js';

// ---- helpers ----

/** Octokit logs every failed request; the tests provoke many on purpose. */
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

async function start(t: TestContext, opts: FakeGitHubOptions = {}): Promise<{ fake: FakeGitHub; octokit: Octokit }> {
  const fake = await startFakeGitHub(opts);
  t.after(() => fake.close());
  const octokit = new Octokit({ baseUrl: fake.url, auth: fake.defaultToken, log: quiet });
  return { fake, octokit };
}

interface BrokerAnswer {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON of every broker answer's shape; the tests assert on it field by field
  body: any;
}

/** Calls the broker as the simulated listener does: plain fetch, client id header. */
async function broker(
  fake: FakeGitHub,
  method: string,
  path: string,
  opts: { clientId?: string; body?: unknown; auth?: string } = {},
): Promise<BrokerAnswer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.clientId) headers['x-sim-client-id'] = opts.clientId;
  if (opts.auth) headers.authorization = opts.auth;
  const res = await fetch(new URL(path, fake.brokerUrl.replace(/_broker\/$/, '')), {
    method,
    headers,
    ...(opts.body === undefined ? {} : { body: JSON.stringify(opts.body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** Registers a JIT runner and returns what its files say. */
async function jitRunner(
  octokit: Octokit,
  name: string,
  labels = ['self-hosted', 'linux'],
): Promise<{ id: number; clientId: string; runnerFile: { serverUrl: string } }> {
  const { data } = await octokit.rest.actions.generateRunnerJitconfigForOrg({
    org: 'octo',
    name,
    runner_group_id: 1,
    labels,
  });
  const files = decodeJitConfig(data.encoded_jit_config);
  const creds = JSON.parse(files['.credentials']!);
  return { id: data.runner.id, clientId: creds.data.clientId, runnerFile: JSON.parse(files['.runner']!) as { serverUrl: string } };
}

async function openSession(fake: FakeGitHub, r: { id: number; clientId: string }): Promise<string> {
  const res = await broker(fake, 'POST', '/_broker/sessions', {
    clientId: r.clientId,
    body: { agentId: r.id, version: '2.336.0' },
  });
  assert.equal(res.status, 201, 'session create should succeed for a fresh registration');
  return res.body.sessionId;
}

const poll = (fake: FakeGitHub, r: { clientId: string }, sid: string, waitMs = 0): Promise<BrokerAnswer> =>
  broker(fake, 'GET', `/_broker/sessions/${sid}/message?waitMs=${waitMs}`, { clientId: r.clientId });

const steps = [{ name: 'Build', run: 'echo hi' }];

/** What the assertions read of an Octokit RequestError: its response's headers and JSON body. */
interface HttpFailure {
  status: number;
  response: { headers: Record<string, string | undefined>; data: { message: string; documentation_url?: string } };
}

async function rejects(p: Promise<unknown>, status: number, what: string): Promise<HttpFailure> {
  try {
    await p;
  } catch (err) {
    assert.equal((err as { status?: number }).status, status, what);
    return err as HttpFailure;
  }
  assert.fail(`${what}: the call succeeded`);
}

function signJwt(privateKey: string, claims: Record<string, unknown>, alg = 'RS256'): string {
  const enc = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${enc({ alg, typ: 'JWT' })}.${enc(claims)}`;
  const sig = createSign('RSA-SHA256').update(head).sign(privateKey).toString('base64url');
  return `${head}.${sig}`;
}

// One key pair for the whole file: generating RSA keys is the slowest thing here.
const appKeys = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});

// ---- registration ----

test('generate-jitconfig registers an ephemeral runner whose config decodes to the files PROTOCOL.md names', async (t) => {
  const { fake, octokit } = await start(t);
  const { data, status } = await octokit.rest.actions.generateRunnerJitconfigForOrg({
    org: 'octo',
    name: 'warden-1',
    runner_group_id: 1,
    labels: ['self-hosted', 'linux', 'gpu'],
    work_folder: '_w',
  });
  assert.equal(status, 201);
  assert.equal(data.runner.ephemeral, true, 'a JIT runner must be ephemeral');
  assert.equal(data.runner.status, 'offline', 'a runner that never connected is offline');
  assert.deepEqual(
    data.runner.labels.map((l) => [l.name, l.type]),
    [
      ['self-hosted', 'read-only'],
      ['linux', 'read-only'],
      ['gpu', 'custom'],
    ],
    'default label names are read-only, the rest custom',
  );
  const files = decodeJitConfig(data.encoded_jit_config);
  assert.deepEqual(Object.keys(files).sort(), ['.credentials', '.credentials_rsaparams', '.runner']);
  const runner = JSON.parse(files['.runner']!);
  assert.deepEqual(runner, {
    agentId: data.runner.id,
    agentName: 'warden-1',
    poolId: 1,
    poolName: 'Default',
    serverUrl: fake.brokerUrl,
    gitHubUrl: '',
    workFolder: '_w',
    ephemeral: true,
    disableUpdate: false,
  });
  const creds = JSON.parse(files['.credentials']!);
  assert.equal(creds.scheme, 'OAuth');
  assert.equal(creds.data.authorizationUrl, `${fake.brokerUrl}oauth`);
  assert.equal(JSON.parse(files['.credentials_rsaparams']!).exponent, 'AQAB');
  assert.deepEqual(
    fake.runners().map((r) => r.name),
    ['warden-1'],
  );
});

test('generate-jitconfig answers 409 for a taken name, 404 for an unknown org or group and 422 for a bad body', async (t) => {
  const { octokit } = await start(t);
  await jitRunner(octokit, 'dup');
  const ok = { org: 'octo', name: 'x', runner_group_id: 1, labels: ['self-hosted'] };
  await rejects(octokit.rest.actions.generateRunnerJitconfigForOrg({ ...ok, name: 'dup' }), 409, 'a taken name');
  await rejects(octokit.rest.actions.generateRunnerJitconfigForOrg({ ...ok, org: 'nope' }), 404, 'an unknown org');
  await rejects(octokit.rest.actions.generateRunnerJitconfigForOrg({ ...ok, runner_group_id: 9 }), 404, 'an unknown group');
  await rejects(octokit.rest.actions.generateRunnerJitconfigForOrg({ ...ok, labels: [] }), 422, 'no labels');
  const tooMany = Array.from({ length: 101 }, (_, i) => `l${i}`);
  await rejects(octokit.rest.actions.generateRunnerJitconfigForOrg({ ...ok, labels: tooMany }), 422, '101 labels');
  const err = await rejects(
    octokit.request('POST /orgs/{org}/actions/runners/generate-jitconfig', { org: 'octo', name: 'y' } as never),
    422,
    'missing runner_group_id and labels',
  );
  assert.ok(err.response.data.documentation_url, 'error bodies carry documentation_url');
  await rejects(octokit.rest.actions.generateRunnerJitconfigForRepo({ ...ok, owner: 'octo', repo: 'other' }), 404, 'an unknown repository');
});

test('a registration token buys a broker token that registers a non-ephemeral runner, and a remove token removes it', async (t) => {
  const { fake, octokit } = await start(t);
  const reg = await octokit.rest.actions.createRegistrationTokenForRepo({ owner: 'octo', repo: 'app' });
  assert.equal(reg.status, 201);
  assert.ok(Date.parse(reg.data.expires_at) > Date.now() + 59 * 60_000, 'registration tokens last about an hour');

  const post = (token: string, event: string, url = `${fake.origin}/octo/app`) =>
    fetch(`${fake.origin}/actions/runner-registration`, {
      method: 'POST',
      headers: { authorization: `RemoteAuth ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ url, runner_event: event }),
    });
  assert.equal((await post('unknown', 'register')).status, 404, 'an unknown token is refused');
  assert.equal((await post(reg.data.token, 'register', `${fake.origin}/octo/other`)).status, 404, 'a url of another repo is refused');
  const exchanged = await post(reg.data.token, 'register');
  assert.equal(exchanged.status, 200);
  const info = (await exchanged.json()) as { url: string; token: string; use_v2_flow: boolean };
  assert.equal(info.url, fake.brokerUrl);

  const agent = {
    name: 'classic',
    labels: ['self-hosted', 'linux'],
    ephemeral: false,
    disableUpdate: true,
    runnerGroup: null,
    replace: false,
    workFolder: '_work',
  };
  const created = await broker(fake, 'POST', '/_broker/agents', { auth: `Bearer ${info.token}`, body: agent });
  assert.equal(created.status, 201);
  assert.equal(created.body.runner.ephemeral, false);
  assert.equal(JSON.parse(created.body.files['.runner']).disableUpdate, true);
  const again = await broker(fake, 'POST', '/_broker/agents', { auth: `Bearer ${info.token}`, body: agent });
  assert.deepEqual([again.status, again.body], [409, { code: 'AgentExists' }], 'the same name without replace');
  const replaced = await broker(fake, 'POST', '/_broker/agents', { auth: `Bearer ${info.token}`, body: { ...agent, replace: true } });
  assert.equal(replaced.status, 201, 'replace swaps the registration');
  const badGroup = await broker(fake, 'POST', '/_broker/agents', {
    auth: `Bearer ${info.token}`,
    body: { ...agent, name: 'g', runnerGroup: 'nope' },
  });
  assert.deepEqual(badGroup.body, { code: 'RunnerGroupNotFound' });

  const rm = await octokit.rest.actions.createRemoveTokenForRepo({ owner: 'octo', repo: 'app' });
  const removeInfo = (await (await post(rm.data.token, 'remove')).json()) as { token: string };
  const id = replaced.body.runner.id;
  assert.equal(
    (await broker(fake, 'DELETE', `/_broker/agents/${id}`, { auth: `Bearer ${info.token}` })).status,
    401,
    'a register token cannot remove',
  );
  assert.equal((await broker(fake, 'DELETE', `/_broker/agents/${id}`, { auth: `Bearer ${removeInfo.token}` })).status, 204);
  assert.equal((await broker(fake, 'DELETE', `/_broker/agents/${id}`, { auth: `Bearer ${removeInfo.token}` })).status, 404);
  assert.deepEqual(fake.runners(), []);
});

// ---- the job queue over the broker ----

test('a queued job is handed over the broker to the open session, and the ephemeral registration is deleted after it completes', async (t) => {
  const { fake, octokit } = await start(t);
  const seen: string[] = [];
  for (const e of ['session-created', 'job-assigned', 'job-started', 'job-completed', 'runner-deleted'] as const)
    fake.events.on(e, () => seen.push(e));
  const r = await jitRunner(octokit, 'eph');
  const sid = await openSession(fake, r);
  const rest = await octokit.rest.actions.getSelfHostedRunnerForOrg({ org: 'octo', runner_id: r.id });
  assert.equal(rest.data.status, 'online', 'a runner with an open session is online');
  assert.equal((rest.data as { version?: string | null }).version, '2.336.0', 'the session reports the runner version');

  const jobId = fake.enqueueJob({ repository: 'octo/app', workflow: 'CI', runId: 42, job: 'build', steps });
  const msg = await poll(fake, r, sid, 2000);
  assert.equal(msg.status, 200);
  assert.equal(msg.body.type, 'job');
  assert.equal(msg.body.job.jobId, jobId);
  assert.equal(msg.body.job.runId, '42');
  assert.deepEqual(msg.body.job.steps, steps);
  assert.equal((await fake.waitForJob(jobId, 'assigned', 1000)).runnerId, r.id);
  assert.equal((await octokit.rest.actions.getSelfHostedRunnerForOrg({ org: 'octo', runner_id: r.id })).data.busy, true);

  const second = fake.enqueueJob({ repository: 'octo/app', steps });
  assert.equal((await broker(fake, 'POST', `/_broker/jobs/${jobId}/renew`, { clientId: r.clientId })).status, 200);
  assert.equal(fake.job(jobId)?.status, 'running');
  assert.equal((await poll(fake, r, sid)).status, 204, 'an ephemeral runner gets no second job');

  const done = await broker(fake, 'POST', `/_broker/jobs/${jobId}/complete`, {
    clientId: r.clientId,
    body: { result: 'Succeeded', exitCode: 0 },
  });
  assert.equal(done.status, 200);
  const job = await fake.waitForJob(jobId, 'completed', 1000);
  assert.deepEqual([job.result, job.exitCode], ['Succeeded', 0]);
  assert.deepEqual(fake.runners(), [], 'the service removes an ephemeral registration after its job');
  const del = await broker(fake, 'DELETE', `/_broker/sessions/${sid}`, { clientId: r.clientId });
  assert.equal(del.status, 401, 'the removed runner credentials no longer work (the listener ignores this)');
  await rejects(octokit.rest.actions.getSelfHostedRunnerForOrg({ org: 'octo', runner_id: r.id }), 404, 'runner gone');
  assert.equal(fake.job(second)?.status, 'queued');
  assert.deepEqual(seen, ['session-created', 'job-assigned', 'job-started', 'job-completed', 'runner-deleted']);
});

test('a job waits for a runner with all of its labels in scope, and adding the label over REST releases it', async (t) => {
  const { fake, octokit } = await start(t, { repos: ['octo/app', 'other/lib'] });
  const r = await jitRunner(octokit, 'l1');
  const sid = await openSession(fake, r);
  const foreign = fake.enqueueJob({ repository: 'other/lib', steps });
  const gpu = fake.enqueueJob({ repository: 'octo/app', labels: ['self-hosted', 'GPU'], steps });
  assert.equal((await poll(fake, r, sid)).status, 204, 'neither job matches: another owner, a missing label');
  await octokit.rest.actions.addCustomLabelsToSelfHostedRunnerForOrg({ org: 'octo', runner_id: r.id, labels: ['gpu'] });
  const msg = await poll(fake, r, sid);
  assert.equal(msg.body?.job?.jobId, gpu, 'labels match case-insensitively once the runner has them');
  assert.equal(fake.job(foreign)?.status, 'queued', 'an org runner never takes a job of another owner');
});

test('a long poll answers 204 when nothing arrives and returns at once when a job is queued meanwhile', async (t) => {
  const { fake, octokit } = await start(t);
  const r = await jitRunner(octokit, 'lp');
  const sid = await openSession(fake, r);
  const t0 = Date.now();
  assert.equal((await poll(fake, r, sid, 150)).status, 204);
  assert.ok(Date.now() - t0 >= 140, 'the poll should wait about waitMs');
  const pending = poll(fake, r, sid, 20_000);
  setTimeout(() => fake.enqueueJob({ repository: 'octo/app', steps }), 50);
  const t1 = Date.now();
  const msg = await pending;
  assert.equal(msg.body.type, 'job');
  assert.ok(Date.now() - t1 < 5000, 'a queued job must wake the waiting poll');
  assert.equal((await poll(fake, { clientId: 'someone-else' }, sid)).status, 401, 'polls need the owner client id');
});

test('deleting an idle runner ends its long poll with RunnerNotFound and its next session create gets invalid_client', async (t) => {
  const { fake, octokit } = await start(t);
  const r = await jitRunner(octokit, 'idle');
  const sid = await openSession(fake, r);
  const pending = poll(fake, r, sid, 20_000);
  await new Promise((res) => setTimeout(res, 30));
  const del = await octokit.rest.actions.deleteSelfHostedRunnerFromOrg({ org: 'octo', runner_id: r.id });
  assert.equal(del.status, 204);
  assert.deepEqual(await pending, { status: 404, body: { code: 'RunnerNotFound' } });
  const again = await broker(fake, 'POST', '/_broker/sessions', { clientId: r.clientId, body: { agentId: r.id } });
  assert.deepEqual(again, { status: 401, body: { code: 'invalid_client' } });
  await rejects(octokit.rest.actions.deleteSelfHostedRunnerFromOrg({ org: 'octo', runner_id: r.id }), 404, 'second delete');
});

test('deleting a busy runner is refused with 422, and a server-side delete makes its renew fail with 404', async (t) => {
  const { fake, octokit } = await start(t);
  const r = await jitRunner(octokit, 'busy');
  const sid = await openSession(fake, r);
  const jobId = fake.enqueueJob({ repository: 'octo/app', steps });
  await poll(fake, r, sid);
  await rejects(octokit.rest.actions.deleteSelfHostedRunnerFromOrg({ org: 'octo', runner_id: r.id }), 422, 'busy runner');
  const deleted: string[] = [];
  fake.events.on('runner-deleted', (e) => deleted.push(e.reason));
  assert.equal(fake.deleteRunnerServerSide(r.id), true);
  assert.deepEqual(deleted, ['server']);
  const renew = await broker(fake, 'POST', `/_broker/jobs/${jobId}/renew`, { clientId: r.clientId });
  assert.equal(renew.status, 404, 'a job whose runner was removed is lost');
});

test('cancelJob makes the next renew 404, and a job cancelled in the queue completes as Canceled', async (t) => {
  const { fake, octokit } = await start(t);
  const r = await jitRunner(octokit, 'c');
  const sid = await openSession(fake, r);
  const jobId = fake.enqueueJob({ repository: 'octo/app', steps });
  await poll(fake, r, sid);
  assert.equal((await broker(fake, 'POST', `/_broker/jobs/${jobId}/renew`, { clientId: r.clientId })).status, 200);
  fake.cancelJob(jobId);
  assert.equal((await broker(fake, 'POST', `/_broker/jobs/${jobId}/renew`, { clientId: r.clientId })).status, 404);
  await broker(fake, 'POST', `/_broker/jobs/${jobId}/complete`, { clientId: r.clientId, body: { result: 'Abandoned' } });
  assert.equal(fake.job(jobId)?.result, 'Abandoned', 'the listener result is recorded');

  const queued = fake.enqueueJob({ repository: 'octo/app', labels: ['nobody-has-this'], steps });
  fake.cancelJob(queued);
  const j = await fake.waitForJob(queued, 'completed', 100);
  assert.equal(j.result, 'Canceled');
});

test('a job whose listener stops renewing is abandoned when its lock runs out, and the ephemeral runner is removed', async (t) => {
  const clock = new ManualClock(Date.now());
  const { fake, octokit } = await start(t, { clock, jobLockMs: 600_000 });
  const r = await jitRunner(octokit, 'dies');
  const sid = await openSession(fake, r);
  const jobId = fake.enqueueJob({ repository: 'octo/app', steps });
  await poll(fake, r, sid);
  clock.advance(300_000);
  assert.equal((await broker(fake, 'POST', `/_broker/jobs/${jobId}/renew`, { clientId: r.clientId })).status, 200);
  clock.advance(599_000);
  await rejects(octokit.rest.actions.deleteSelfHostedRunnerFromOrg({ org: 'octo', runner_id: r.id }), 422, 'a renewed lock still holds');
  clock.advance(2_000);
  assert.equal(fake.job(jobId)?.result, 'Abandoned', 'the lock ran out without a renew');
  assert.deepEqual(fake.runners(), [], 'an ephemeral runner that had its job is removed');
  assert.equal((await broker(fake, 'POST', `/_broker/jobs/${jobId}/renew`, { clientId: r.clientId })).status, 404);
});

test('requestUpdate and crashNext are delivered as the next message, before any job', async (t) => {
  const { fake, octokit } = await start(t);
  const r = await jitRunner(octokit, 'u');
  const sid = await openSession(fake, r);
  fake.enqueueJob({ repository: 'octo/app', steps });
  fake.requestUpdate(r.id, '2.337.0');
  fake.crashNext(r.id);
  assert.deepEqual((await poll(fake, r, sid)).body, { type: 'update', version: '2.337.0' });
  assert.deepEqual((await poll(fake, r, sid)).body, { type: 'crash' });
  assert.equal((await poll(fake, r, sid)).body.type, 'job');
});

test('an injected session conflict makes the next session create 409, and a live session blocks a second one', async (t) => {
  const clock = new ManualClock(Date.now());
  const { fake, octokit } = await start(t, { clock, sessionStaleMs: 30_000 });
  const r = await jitRunner(octokit, 's');
  fake.faults.sessionConflict();
  const create = () => broker(fake, 'POST', '/_broker/sessions', { clientId: r.clientId, body: { agentId: r.id, version: '2.336.0' } });
  assert.deepEqual(await create(), { status: 409, body: { code: 'SessionConflict' } });
  assert.equal((await create()).status, 201, 'the conflict is consumed by one create');
  assert.equal((await create()).status, 409, 'a session seen moments ago still blocks');
  clock.advance(31_000);
  const r1 = await octokit.rest.actions.getSelfHostedRunnerForOrg({ org: 'octo', runner_id: r.id });
  assert.equal(r1.data.status, 'offline', 'a session not seen for sessionStaleMs no longer counts');
  assert.equal((await create()).status, 201, 'a stale session gives way');
  const wrongAgent = await broker(fake, 'POST', '/_broker/sessions', { clientId: r.clientId, body: { agentId: 999 } });
  assert.deepEqual(wrongAgent, { status: 404, body: { code: 'RunnerNotFound' } }, 'credentials of another agent id');
});

// ---- REST behaviour ----

test('list runners filters by name and paginates with a Link header that octokit.paginate follows', async (t) => {
  const { fake, octokit } = await start(t);
  for (let i = 0; i < 5; i++) await jitRunner(octokit, `p${i}`);
  const page = await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo', per_page: 2, page: 2 });
  assert.equal(page.data.total_count, 5);
  assert.deepEqual(
    page.data.runners.map((r) => r.name),
    ['p2', 'p3'],
  );
  assert.match(page.headers.link ?? '', /rel="next"/);
  assert.match(page.headers.link ?? '', /rel="prev"/);
  assert.ok((page.headers.link ?? '').startsWith(`<${fake.url}/orgs/octo/actions/runners?`), 'links are absolute');
  const all = await octokit.paginate(octokit.rest.actions.listSelfHostedRunnersForOrg, { org: 'octo', per_page: 2 });
  assert.equal(all.length, 5, 'paginate should follow rel="next" to the end');
  const byName = await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo', name: 'p3' });
  assert.deepEqual(
    byName.data.runners.map((r) => r.name),
    ['p3'],
  );
  const clamped = await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo', per_page: 1000 });
  assert.equal(clamped.data.runners.length, 5, 'per_page above 100 is clamped, not refused');
});

test('every REST answer carries x-ratelimit headers and counts down, but GET /rate_limit does not count', async (t) => {
  const { fake, octokit } = await start(t);
  const a = await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' });
  const b = await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' });
  for (const h of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-used', 'x-ratelimit-reset', 'x-ratelimit-resource'])
    assert.ok(a.headers[h] !== undefined, `${h} missing`);
  assert.equal(a.headers['x-ratelimit-limit'], '5000');
  assert.equal(Number(a.headers['x-ratelimit-remaining']) - 1, Number(b.headers['x-ratelimit-remaining']));
  const err = await rejects(octokit.rest.actions.getSelfHostedRunnerForOrg({ org: 'octo', runner_id: 77 }), 404, 'no runner');
  assert.equal(err.response.headers['x-ratelimit-remaining'], '4997', 'errors count too');
  const rl = await octokit.rest.rateLimit.get();
  const rl2 = await octokit.rest.rateLimit.get();
  assert.equal(rl.data.resources.core.remaining, 4997);
  assert.equal(rl2.headers['x-ratelimit-remaining'], '4997', '/rate_limit is free');
  assert.equal(fake.restCalls(), 5, '/rate_limit still shows in the REST call count');
  assert.equal(fake.restCalls({ path: /^\/orgs\/octo\/actions\/runners/ }), 3);
});

test('an exhausted primary limit answers 403 with remaining 0 until the reset time on the clock', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const { fake, octokit } = await start(t, { clock });
  fake.exhaustPrimaryRateLimit(120);
  const err = await rejects(octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 403, 'exhausted');
  assert.equal(err.response.headers['x-ratelimit-remaining'], '0');
  assert.equal(Number(err.response.headers['x-ratelimit-reset']), Date.UTC(2026, 0, 1) / 1000 + 120);
  assert.match(err.response.data.message, /API rate limit exceeded/);
  clock.advance(119_000);
  await rejects(octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 403, 'still exhausted');
  clock.advance(1_000);
  const ok = await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' });
  assert.equal(ok.headers['x-ratelimit-remaining'], '4999', 'a fresh window after the reset');

  fake.exhaustPrimaryRateLimit(10, 429);
  await rejects(octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 429, 'the 429 variant');

  const small = await start(t, { clock, rateLimit: 2 });
  await small.octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' });
  await small.octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' });
  await rejects(small.octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 403, 'a bucket used up by calls');
});

test('faults answer the next matching requests with their status, headers and body, then stop', async (t) => {
  const { fake, octokit } = await start(t);
  fake.faults.add({ match: { method: 'POST', path: /generate-jitconfig$/ }, times: 2, status: 502 });
  await rejects(jitRunner(octokit, 'f'), 502, 'first 502');
  await rejects(jitRunner(octokit, 'f'), 502, 'second 502');
  await jitRunner(octokit, 'f');
  assert.deepEqual(
    fake.runners().map((r) => r.name),
    ['f'],
    'faulted calls must not register anything',
  );

  fake.faults.add({ status: 429, headers: { 'retry-after': '7' } });
  const e429 = await rejects(octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 429, '429');
  assert.equal(e429.response.headers['retry-after'], '7');
  assert.ok(e429.response.headers['x-ratelimit-remaining'], 'faulted REST answers still carry rate-limit headers');

  fake.faults.secondaryRateLimit({ retryAfter: 3 });
  const sec = await rejects(octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 403, 'secondary');
  assert.equal(sec.response.data.message, SECONDARY_LIMIT_MESSAGE);
  assert.equal(sec.response.headers['retry-after'], '3');

  const r = await jitRunner(octokit, 'g');
  fake.faults.add({ match: { kind: 'broker', path: '/sessions' }, status: 503 });
  const b = await broker(fake, 'POST', '/_broker/sessions', { clientId: r.clientId, body: { agentId: r.id } });
  assert.equal(b.status, 503, 'broker faults need kind: broker');

  fake.faults.add({ delayMs: 120 });
  const t0 = Date.now();
  await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' });
  assert.ok(Date.now() - t0 >= 110, 'a delay-only fault slows the answer');

  fake.faults.add({ reset: true });
  await assert.rejects(octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 'a reset fault is a network error');

  fake.latencyMs = 80;
  const t1 = Date.now();
  await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' });
  assert.ok(Date.now() - t1 >= 70, 'setLatency delays every answer');
  assert.equal(fake.faults.list().length, 0, 'every fault was used up');
});

// ---- authentication ----

test('an unknown token gets 401 Bad credentials, and a token without the scope or permission gets 403', async (t) => {
  const { fake } = await start(t, {
    tokens: [
      { token: 'repo-only', scopes: ['repo'] },
      { token: 'fg-read', permissions: { administration: 'read' } },
      { token: 'org-admin', scopes: ['admin:org'] },
    ],
  });
  const as = (auth: string) => new Octokit({ baseUrl: fake.url, auth, log: quiet });
  const bad = await rejects(as('nope').rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 401, 'unknown token');
  assert.equal(bad.response.data.message, 'Bad credentials');
  const denied = await rejects(as('repo-only').rest.actions.listSelfHostedRunnersForOrg({ org: 'octo' }), 403, 'repo scope on org');
  assert.equal(denied.response.headers['x-accepted-oauth-scopes'], 'admin:org');
  await as('repo-only').rest.actions.listSelfHostedRunnersForRepo({ owner: 'octo', repo: 'app' });
  await as('fg-read').rest.actions.listSelfHostedRunnersForRepo({ owner: 'octo', repo: 'app' });
  await rejects(
    as('fg-read').rest.actions.createRegistrationTokenForRepo({ owner: 'octo', repo: 'app' }),
    403,
    'read permission cannot write',
  );
  await as('org-admin').rest.actions.createRegistrationTokenForOrg({ org: 'octo' });
  await rejects(
    as('org-admin').request('GET /enterprises/{enterprise}/actions/runners', { enterprise: 'acme' }),
    403,
    'enterprise needs manage_runners:enterprise',
  );
  const anon = await fetch(`${fake.url}/orgs/octo/actions/runners`);
  assert.equal(anon.status, 401, 'anonymous callers do not see runner admin endpoints');
});

test('an App JWT buys a ghs_ installation token that works on org endpoints', async (t) => {
  const { fake } = await start(t, {
    app: { appId: 12345, installationId: 777, publicKeyPem: appKeys.publicKey },
  });
  const octokit = new Octokit({
    baseUrl: fake.url,
    log: quiet,
    authStrategy: createAppAuth,
    auth: { appId: 12345, privateKey: appKeys.privateKey, installationId: 777 },
  });
  const { data } = await octokit.rest.actions.generateRunnerJitconfigForOrg({
    org: 'octo',
    name: 'app-runner',
    runner_group_id: 1,
    labels: ['self-hosted'],
  });
  assert.equal(data.runner.name, 'app-runner');
  const tokenCall = fake.requests.find((r) => r.apiPath === '/app/installations/777/access_tokens');
  assert.equal(tokenCall?.status, 201);
  assert.match((tokenCall?.resBody as { token: string }).token, /^ghs_/);
  assert.equal(tokenCall?.reqHeaders.authorization, 'bearer [REDACTED]', 'the JWT is not recorded');
  await rejects(
    octokit.request('GET /enterprises/{enterprise}/actions/runners', { enterprise: 'acme' }),
    403,
    'Apps have no enterprise endpoints',
  );
});

test('JWTs with a bad signature, an exp too far ahead or in the past, or another app id are refused, and tokens expire after 1 h', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const { fake } = await start(t, { clock, app: { appId: 1, installationId: 5, publicKeyPem: appKeys.publicKey } });
  const now = clock.now() / 1000;
  const other = generateKeyPairSync('rsa', {
    modulusLength: 1024,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const mint = (jwt: string, installation = 5) =>
    fetch(`${fake.url}/app/installations/${installation}/access_tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${jwt}` },
    });
  const good = { iss: 1, iat: now - 30, exp: now + 570 };
  const cases: [string, string, number][] = [
    ['bad signature', signJwt(other.privateKey, good), 401],
    ['exp 20 minutes ahead', signJwt(appKeys.privateKey, { ...good, exp: now + 1200 }), 401],
    ['expired', signJwt(appKeys.privateKey, { ...good, iat: now - 700, exp: now - 100 }), 401],
    ['iat in the future', signJwt(appKeys.privateKey, { ...good, iat: now + 300 }), 401],
    ['another app', signJwt(appKeys.privateKey, { ...good, iss: 2 }), 401],
    ['not a JWT', 'ghp-not-a-jwt', 401],
  ];
  for (const [what, jwt, status] of cases) assert.equal((await mint(jwt)).status, status, what);
  assert.equal((await mint(signJwt(appKeys.privateKey, good), 6)).status, 404, 'another installation');

  const res = await mint(signJwt(appKeys.privateKey, good));
  assert.equal(res.status, 201);
  const { token, expires_at } = (await res.json()) as { token: string; expires_at: string };
  assert.equal(Date.parse(expires_at), clock.now() + 3600_000);
  const use = () => fetch(`${fake.url}/orgs/octo/actions/runners`, { headers: { authorization: `token ${token}` } });
  assert.equal((await use()).status, 200);
  clock.advance(3600_000);
  assert.equal((await use()).status, 401, 'installation tokens expire after one hour');

  const limited = await fetch(`${fake.url}/app/installations/5/access_tokens`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${signJwt(appKeys.privateKey, { iss: 1, iat: clock.now() / 1000 - 30, exp: clock.now() / 1000 + 500 })}`,
    },
    body: JSON.stringify({ permissions: { contents: 'write' } }),
  });
  assert.equal(limited.status, 422, 'permissions beyond the installation are refused');
});

// ---- GHES and recording ----

test('a GHES-style fake serves REST under /api/v3 and nothing outside it', async (t) => {
  const { fake, octokit } = await start(t, { pathPrefix: '/api/v3' });
  assert.ok(fake.url.endsWith('/api/v3'));
  const r = await jitRunner(octokit, 'ghes');
  const { data } = await octokit.rest.actions.listSelfHostedRunnersForOrg({ org: 'octo', per_page: 1 });
  assert.equal(data.runners[0]?.id, r.id);
  assert.equal(r.runnerFile.serverUrl, fake.brokerUrl);
  const outside = await fetch(`${fake.origin}/orgs/octo/actions/runners`, { headers: { authorization: `token ${fake.defaultToken}` } });
  assert.equal(outside.status, 404, 'REST paths without the prefix do not exist on GHES');
  assert.equal(fake.requests[0]?.path, '/api/v3/orgs/octo/actions/runners/generate-jitconfig');
  assert.equal(fake.requests[0]?.apiPath, '/orgs/octo/actions/runners/generate-jitconfig');
  const sid = await openSession(fake, r);
  assert.equal((await poll(fake, r, sid)).status, 204, 'the broker works the same behind a prefix');
});

test('recorded requests redact authorization, keep bodies and statuses, and restCalls counts only REST', async (t) => {
  const { fake, octokit } = await start(t);
  const r = await jitRunner(octokit, 'rec');
  await openSession(fake, r);
  const rest = fake.requests.filter((q) => q.kind === 'rest');
  const brk = fake.requests.filter((q) => q.kind === 'broker');
  assert.equal(rest.length, 1);
  assert.equal(brk.length, 1);
  assert.equal(rest[0]?.reqHeaders.authorization, 'token [REDACTED]');
  assert.ok(!JSON.stringify(fake.requests.map((q) => q.reqHeaders)).includes(fake.defaultToken), 'the token must not be recorded');
  assert.deepEqual(rest[0]?.reqBody, { name: 'rec', runner_group_id: 1, labels: ['self-hosted', 'linux'] });
  assert.equal(rest[0]?.status, 201);
  assert.equal(fake.restCalls(), 1, 'broker calls are not GitHub API calls');
  assert.equal(fake.restCalls({ method: 'POST', status: 201 }), 1);
  fake.clearRequests();
  assert.equal(fake.restCalls(), 0);
});
