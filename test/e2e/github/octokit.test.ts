/** The Octokit adapter against the fake GitHub API: retries, rate limits and errors (docs/runner-contract.md §10). */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeGitHub } from '../../../src/sim/github/server.js';
import { createOctokitPort } from '../../../src/github/octokit.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { GitHubApiError } from '../../../src/lib/errors.js';

async function setup(t: TestContext, tokens?: { token: string; scopes?: string[] }[]) {
  const clock = ManualClock.instant(Date.now());
  const fake = await startFakeGitHub({ clock, ...(tokens ? { tokens } : {}) });
  t.after(() => fake.close());
  const port = createOctokitPort({
    apiUrl: fake.url,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'token', token: tokens?.[0]?.token ?? fake.defaultToken },
    clock,
    log: silentLogger(),
  });
  return { clock, fake, port };
}

const jitReq = { name: 'r1', labels: ['self-hosted'], runnerGroupId: 1, workFolder: '_work' };

test('a 429 with retry-after is honoured on the injected clock, then the call succeeds', async (t) => {
  const { clock, fake, port } = await setup(t);
  fake.faults.add({
    match: { path: /generate-jitconfig/ },
    status: 429,
    headers: { 'retry-after': '7' },
    body: { message: 'You have exceeded a secondary rate limit' },
  });
  const reg = await port.generateJitConfig(jitReq);
  assert.ok(reg.encodedJitConfig.length > 0);
  assert.equal(clock.sleeps.length, 1);
  assert.ok(
    clock.sleeps[0]! >= 7000 && clock.sleeps[0]! <= 67_000,
    `waited ${clock.sleeps[0]} ms: retry-after 7 s plus at most a minute of jitter, on the injected clock`,
  );
  assert.equal(fake.restCalls({ path: /generate-jitconfig/ }), 2);
});

test('an exhausted primary rate limit waits until x-ratelimit-reset', async (t) => {
  const { clock, fake, port } = await setup(t);
  fake.exhaustPrimaryRateLimit(120);
  await port.generateJitConfig(jitReq);
  assert.equal(clock.sleeps.length, 1);
  assert.ok(
    clock.sleeps[0]! >= 119_000 && clock.sleeps[0]! <= 2 * 122_000,
    `waited ${clock.sleeps[0]} ms, expected the 120 s to the reset plus jitter`,
  );
});

test('a secondary limit without retry-after waits at least a minute', async (t) => {
  const { clock, fake, port } = await setup(t);
  fake.faults.secondaryRateLimit({ times: 1, match: { path: /generate-jitconfig/ } });
  await port.generateJitConfig(jitReq);
  assert.ok(clock.sleeps[0]! >= 60_000, `waited only ${clock.sleeps[0]} ms`);
});

test('5xx answers are retried with exponential backoff and full jitter', async (t) => {
  const { clock, fake, port } = await setup(t);
  fake.faults.add({ match: { path: /generate-jitconfig/ }, status: 502, times: 3 });
  await port.generateJitConfig(jitReq);
  assert.equal(clock.sleeps.length, 3);
  clock.sleeps.forEach((ms, i) =>
    assert.ok(ms >= 0 && ms <= 1000 * 2 ** i, `try ${i + 2} waited ${ms} ms: full jitter under ${1000 * 2 ** i}`),
  );
});

test('a refused token is an auth error that names the permission needed, and is not retried', async (t) => {
  const { clock, fake } = await setup(t);
  const bad = createOctokitPort({
    apiUrl: fake.url,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'token', token: 'ghp_wrongwrongwrongwrongwrongwrongwrong00' },
    clock,
    log: silentLogger(),
  });
  await assert.rejects(bad.generateJitConfig(jitReq), (err: unknown) => {
    assert.ok(err instanceof GitHubApiError);
    assert.equal(err.status, 401);
    assert.equal(err.isAuth, true);
    assert.match(err.hint ?? '', /admin:org|Self-hosted runners/);
    return true;
  });
  assert.deepEqual(clock.sleeps, [], 'a 401 must not be retried');
});

test('a token without the runner permission gets a 403 naming the permission', async (t) => {
  const { port } = await setup(t, [{ token: 'ghp_readonlyreadonlyreadonlyreadonly0001', scopes: ['repo'] }]);
  await assert.rejects(port.generateJitConfig(jitReq), (err: unknown) => {
    assert.ok(err instanceof GitHubApiError);
    assert.equal(err.status, 403);
    assert.match(err.hint ?? '', /admin:org/);
    return true;
  });
});

test('deleting a runner maps 204, 404 and 422 to deleted, not-found and busy', async (t) => {
  const { fake, port } = await setup(t);
  const reg = await port.generateJitConfig(jitReq);
  assert.equal(await port.deleteRunner(reg.runner.id), 'deleted');
  assert.equal(await port.deleteRunner(reg.runner.id), 'not-found');
  fake.faults.add({ match: { method: 'DELETE' }, status: 422, body: { message: 'Bad request - Runner "x" is still running a job"' } });
  assert.equal(await port.deleteRunner(12345), 'busy');
});

test('runner groups resolve by name once and are cached', async (t) => {
  const { fake, port } = await setup(t);
  assert.equal(await port.resolveRunnerGroup(null), 1);
  assert.equal(await port.resolveRunnerGroup('Default'), 1);
  await assert.rejects(port.resolveRunnerGroup('nope'), /does not exist/);
  assert.equal(fake.restCalls({ path: /runner-groups/ }), 1, 'the group list must be fetched once');
});
