import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSign, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Octokit } from '@octokit/rest';
import { decodeJitConfig, startFakeGitHub, type FakeGitHub, type RecordedRequest } from '../../../src/sim/github/server.js';
import { findOperation, validateAgainstOpenApi } from '../../helpers/openapi.js';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** Operations of the fixture the fake does not serve (the agent never calls them). */
const NOT_SERVED = new Set([
  'POST /orgs/{org}/actions/runner-groups',
  'GET /orgs/{org}/actions/runner-groups/{runner_group_id}',
  'PATCH /orgs/{org}/actions/runner-groups/{runner_group_id}',
  'DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}',
  'GET /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories',
  'PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories',
  'PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}',
  'DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories/{repository_id}',
  'GET /orgs/{org}/actions/runner-groups/{runner_group_id}/runners',
  'PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/runners',
  'PUT /orgs/{org}/actions/runner-groups/{runner_group_id}/runners/{runner_id}',
  'DELETE /orgs/{org}/actions/runner-groups/{runner_group_id}/runners/{runner_id}',
  'GET /orgs/{org}/actions/runners/downloads',
  'GET /repos/{owner}/{repo}/actions/runners/downloads',
  'GET /enterprises/{enterprise}/actions/runners/downloads',
  'GET /enterprises/{enterprise}/actions/runners/deprecations/{version}',
]);

/**
 * Documented statuses the fake never produces, with the reason: 403 on access_tokens (a
 * suspended installation), 304/404 on /rate_limit (conditional requests; rate limiting disabled
 * on GHES), 422 on clearing an enterprise runner's labels (the spec names no trigger).
 */
const NOT_PRODUCED = new Set([
  'DELETE /enterprises/{enterprise}/actions/runners/{runner_id}/labels 422',
  'POST /app/installations/{installation_id}/access_tokens 403',
  'GET /rate_limit 304',
  'GET /rate_limit 404',
]);

const keys = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});

function appJwt(iss: number): string {
  const now = Math.floor(Date.now() / 1000);
  const enc = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${enc({ alg: 'RS256', typ: 'JWT' })}.${enc({ iss, iat: now - 30, exp: now + 500 })}`;
  return `${head}.${createSign('RSA-SHA256').update(head).sign(keys.privateKey).toString('base64url')}`;
}

/** Runs a call that is expected to fail; the status is asserted, the body goes to the validator. */
async function expectStatus(p: Promise<unknown>, status: number, what: string): Promise<void> {
  try {
    await p;
    assert.fail(`${what}: expected ${status}, the call succeeded`);
  } catch (err) {
    assert.equal((err as { status?: number }).status, status, what);
  }
}

/** Makes a runner busy: open a session as the listener would and take a queued job. */
async function makeBusy(fake: FakeGitHub, encoded: string, repository: string): Promise<void> {
  const files = decodeJitConfig(encoded);
  const clientId = JSON.parse(files['.credentials']!).data.clientId as string;
  const agentId = JSON.parse(files['.runner']!).agentId as number;
  const h = { 'x-sim-client-id': clientId, 'content-type': 'application/json' };
  const s = await fetch(`${fake.brokerUrl}sessions`, { method: 'POST', headers: h, body: JSON.stringify({ agentId, version: '2.336.0' }) });
  const { sessionId } = (await s.json()) as { sessionId: string };
  fake.enqueueJob({ repository, labels: ['self-hosted'], steps: [{ name: 'x', run: 'true' }] });
  const m = await fetch(`${fake.brokerUrl}sessions/${sessionId}/message?waitMs=0`, { headers: h });
  assert.equal(m.status, 200, 'the busy runner should have taken the job');
}

test('every endpoint the fake serves, on success and on its documented errors, matches the GitHub OpenAPI description', async (t) => {
  const fake = await startFakeGitHub({
    app: { appId: 42, installationId: 9, publicKeyPem: keys.publicKey },
    tokens: [
      { token: 'full', scopes: ['repo', 'admin:org', 'manage_runners:enterprise'] },
      { token: 'weak', scopes: [] },
    ],
  });
  t.after(() => fake.close());
  const octokit = new Octokit({ baseUrl: fake.url, auth: 'full', log: quiet });
  const weak = new Octokit({ baseUrl: fake.url, auth: 'weak', log: quiet });
  const req = (route: string, params: Record<string, unknown> = {}) => octokit.request(route, params);

  const families = [
    { base: '/repos/{owner}/{repo}', params: { owner: 'octo', repo: 'app' }, missing: { owner: 'octo', repo: 'nope' } },
    { base: '/orgs/{org}', params: { org: 'octo' }, missing: { org: 'nope' } },
    { base: '/enterprises/{enterprise}', params: { enterprise: 'acme' }, missing: { enterprise: 'nope' } },
  ];
  for (const [i, f] of families.entries()) {
    const runners = `${f.base}/actions/runners`;
    const p = f.params;
    const jit = (name: string, extra: Record<string, unknown> = {}) =>
      req(`POST ${runners}/generate-jitconfig`, { ...p, name, runner_group_id: 1, labels: ['self-hosted', 'X64', 'extra'], ...extra });

    const a = await jit(`a${i}`, { work_folder: '_work' });
    const b = await jit(`b${i}`);
    const ida = (a.data as { runner: { id: number } }).runner.id;
    const idb = (b.data as { runner: { id: number } }).runner.id;
    await expectStatus(jit(`a${i}`), 409, 'name taken');
    await expectStatus(jit(`c${i}`, { runner_group_id: 77 }), 404, 'unknown group');
    await expectStatus(
      req(`POST ${runners}/generate-jitconfig`, { ...f.missing, name: 'z', runner_group_id: 1, labels: ['x'] }),
      404,
      'unknown scope',
    );
    await expectStatus(jit(`d${i}`, { labels: [] }), 422, 'empty labels');
    await req(`POST ${runners}/registration-token`, p);
    await req(`POST ${runners}/remove-token`, p);
    await req(`GET ${runners}`, { ...p, per_page: 1, page: 2 });
    await req(`GET ${runners}`, { ...p, name: `a${i}` });
    await req(`GET ${runners}/{runner_id}`, { ...p, runner_id: ida });
    await expectStatus(req(`GET ${runners}/{runner_id}`, { ...p, runner_id: 99999 }), 404, 'unknown runner');

    const labels = `${runners}/{runner_id}/labels`;
    await req(`GET ${labels}`, { ...p, runner_id: ida });
    await expectStatus(req(`GET ${labels}`, { ...p, runner_id: 99999 }), 404, 'labels of unknown runner');
    await req(`POST ${labels}`, { ...p, runner_id: ida, labels: ['gpu', 'fast'] });
    await expectStatus(req(`POST ${labels}`, { ...p, runner_id: 99999, labels: ['x'] }), 404, 'add to unknown');
    await expectStatus(req(`POST ${labels}`, { ...p, runner_id: ida, labels: [] }), 422, 'add nothing');
    await req(`PUT ${labels}`, { ...p, runner_id: ida, labels: ['only'] });
    await req(`PUT ${labels}`, { ...p, runner_id: idb, labels: [] });
    await expectStatus(req(`PUT ${labels}`, { ...p, runner_id: 99999, labels: [] }), 404, 'set on unknown');
    await expectStatus(req(`PUT ${labels}`, { ...p, runner_id: ida, labels: 'x' }), 422, 'labels not an array');
    await req(`DELETE ${labels}/{name}`, { ...p, runner_id: ida, name: 'only' });
    await expectStatus(req(`DELETE ${labels}/{name}`, { ...p, runner_id: ida, name: 'absent' }), 404, 'remove absent label');
    await expectStatus(req(`DELETE ${labels}/{name}`, { ...p, runner_id: ida, name: 'self-hosted' }), 422, 'remove read-only');
    await req(`POST ${labels}`, { ...p, runner_id: ida, labels: ['again'] });
    await req(`DELETE ${labels}`, { ...p, runner_id: ida });
    await expectStatus(req(`DELETE ${labels}`, { ...p, runner_id: 99999 }), 404, 'clear unknown');

    await makeBusy(fake, (a.data as { encoded_jit_config: string }).encoded_jit_config, 'octo/app');
    await expectStatus(req(`DELETE ${runners}/{runner_id}`, { ...p, runner_id: ida }), 422, 'busy runner');
    await req(`DELETE ${runners}/{runner_id}`, { ...p, runner_id: idb });
    await expectStatus(weak.request(`GET ${runners}`, p), 403, 'missing scope');
  }

  await req('GET /orgs/{org}/actions/runner-groups', { org: 'octo', per_page: 10 });
  await expectStatus(req('GET /orgs/{org}/actions/runner-groups', { org: 'nope' }), 404, 'unknown org groups');

  const tokenUrl = `${fake.url}/app/installations/{id}/access_tokens`;
  const mint = async (id: number, jwt: string, body?: unknown) => {
    const res = await fetch(tokenUrl.replace('{id}', String(id)), {
      method: 'POST',
      headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return res.status;
  };
  assert.equal(await mint(9, appJwt(42)), 201);
  assert.equal(await mint(9, appJwt(42), { repositories: ['app'], permissions: { administration: 'write' } }), 201);
  assert.equal(await mint(9, appJwt(41)), 401, 'JWT of another app');
  assert.equal(await mint(8, appJwt(42)), 404, 'another installation');
  assert.equal(await mint(9, appJwt(42), { repositories: 'app' }), 422, 'repositories not an array');
  await req('GET /rate_limit');

  await expectStatus(
    new Octokit({ baseUrl: fake.url, auth: 'nope', log: quiet }).request('GET /orgs/{org}/actions/runners', { org: 'octo' }),
    401,
    'bad credentials',
  );
  fake.faults.add({ status: 502 });
  await expectStatus(req('GET /orgs/{org}/actions/runners', { org: 'octo' }), 502, 'a 5xx fault');
  fake.faults.secondaryRateLimit({ status: 429, retryAfter: 1 });
  await expectStatus(req('GET /orgs/{org}/actions/runners', { org: 'octo' }), 429, 'a secondary limit');

  const rest = fake.requests.filter((r) => r.kind === 'rest');
  const problems = rest.flatMap((r) => validateAgainstOpenApi(r));
  assert.deepEqual(problems, [], 'the fake drifted from the GitHub REST API');

  // Coverage: every served operation was exercised, with every documented status it can produce.
  const spec = JSON.parse(readFileSync(new URL('../../fixtures/github-runners.openapi.json', import.meta.url), 'utf8')) as {
    paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
  };
  const seen = new Set(rest.map((r: RecordedRequest) => `${r.method} ${findOperation(r.method, r.apiPath)?.template} ${r.status}`));
  const missing: string[] = [];
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const opKey = `${method.toUpperCase()} ${path}`;
      if (NOT_SERVED.has(opKey)) continue;
      for (const status of Object.keys(op.responses)) {
        if (!NOT_PRODUCED.has(`${opKey} ${status}`) && !seen.has(`${opKey} ${status}`)) missing.push(`${opKey} ${status}`);
      }
    }
  }
  assert.deepEqual(missing, [], 'documented answers the test did not drive');
});

test('the validator reports a response that breaks the schema, an undocumented success and an unknown path', () => {
  const base: RecordedRequest = {
    kind: 'rest',
    method: 'GET',
    path: '/orgs/octo/actions/runners',
    apiPath: '/orgs/octo/actions/runners',
    query: {},
    status: 200,
    reqBody: undefined,
    resBody: { total_count: 1, runners: [{ id: '1', name: 'x', os: 'linux', status: 'online', busy: false, labels: [] }] },
    reqHeaders: {},
    resHeaders: {},
    at: 0,
  };
  assert.match(validateAgainstOpenApi(base).join('\n'), /runners\/0\/id must be integer/);
  assert.match(validateAgainstOpenApi({ ...base, status: 201, resBody: {} }).join('\n'), /not documented/);
  assert.match(validateAgainstOpenApi({ ...base, apiPath: '/orgs/octo/nothing' }).join('\n'), /no operation/);
  assert.match(
    validateAgainstOpenApi({
      ...base,
      method: 'POST',
      apiPath: '/orgs/octo/actions/runners/generate-jitconfig',
      status: 201,
      reqBody: { name: 'x', runner_group_id: 1, labels: [] },
      resBody: { runner: { id: 1, name: 'x', os: 'linux', status: 'offline', busy: false, labels: [] }, encoded_jit_config: 'e30=' },
    }).join('\n'),
    /accepted a request body the API rejects/,
  );
  assert.match(validateAgainstOpenApi({ ...base, status: 404, resBody: { oops: true } }).join('\n'), /not a GitHub error/);
  assert.equal(findOperation('GET', '/orgs/octo/actions/runners/downloads')?.template, '/orgs/{org}/actions/runners/downloads');
});
