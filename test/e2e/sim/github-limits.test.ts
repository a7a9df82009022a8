/** The fake GitHub enforces the documented limits: primary budgets, secondary limits, token lifetime. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { startFakeGitHub, type FakeGitHubOptions } from '../../../src/sim/github/server.js';
import { signAppJwt } from '../../../src/github/app-token.js';
import { ManualClock } from '../../../src/lib/clock.js';

const appKeys = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  publicKeyEncoding: { type: 'spki', format: 'pem' },
});
const APP = { appId: 42, installationId: 9, publicKeyPem: appKeys.publicKey };

async function start(t: TestContext, opts: FakeGitHubOptions) {
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
  const fake = await startFakeGitHub({ clock, ...opts });
  t.after(() => fake.close());
  const call = (token: string, method = 'GET', path = '/orgs/octo/actions/runners', body?: unknown) =>
    fetch(`${fake.url}${path}`, {
      method,
      headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
  const mint = async (): Promise<string> => {
    const res = await fetch(`${fake.url}/app/installations/${APP.installationId}/access_tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${signAppJwt(APP.appId, appKeys.privateKey, clock.now())}` },
    });
    assert.equal(res.status, 201, 'minting an installation token');
    return ((await res.json()) as { token: string }).token;
  };
  return { clock, fake, call, mint };
}

test('two tokens of one installation share its hourly budget, with every x-ratelimit header', async (t) => {
  const { fake, call, mint } = await start(t, { app: APP, installationRateLimit: 6, secondaryLimits: false });
  const a = await mint();
  const b = await mint();
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) {
    const res = await call(i % 2 === 0 ? a : b);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-ratelimit-limit'), '6');
    assert.equal(res.headers.get('x-ratelimit-used'), String(i + 1), 'both tokens must draw on one budget');
    assert.equal(res.headers.get('x-ratelimit-resource'), 'core');
    assert.match(res.headers.get('x-ratelimit-reset') ?? '', /^\d{10}$/);
    seen.push(res.headers.get('x-ratelimit-remaining') ?? '');
  }
  assert.deepEqual(seen, ['5', '4', '3', '2', '1', '0']);
  const refused = await call(b);
  assert.equal(refused.status, 403);
  assert.equal(refused.headers.get('x-ratelimit-remaining'), '0');
  assert.match(((await refused.json()) as { message: string }).message, /API rate limit exceeded for installation ID 9/);
  assert.equal(fake.limitAnswers().primary, 1);
});

test('the primary budget resets after the hour and is configurable per token', async (t) => {
  const { clock, call, fake } = await start(t, { rateLimit: 2, secondaryLimits: false });
  assert.equal((await call(fake.defaultToken)).status, 200);
  assert.equal((await call(fake.defaultToken)).status, 200);
  const refused = await call(fake.defaultToken);
  assert.equal(refused.status, 403);
  const reset = Number(refused.headers.get('x-ratelimit-reset'));
  clock.advance(reset * 1000 - clock.now() + 1000);
  const again = await call(fake.defaultToken);
  assert.equal(again.status, 200, 'a new window after x-ratelimit-reset');
  assert.equal(again.headers.get('x-ratelimit-remaining'), '1');
});

test('a secondary limit by points: 180 POSTs a minute to one endpoint, then 403 with retry-after; GETs keep their own budget', async (t) => {
  const { clock, call, fake } = await start(t, { rateLimit: 100_000 });
  const post = (i: number) =>
    call(fake.defaultToken, 'POST', '/orgs/octo/actions/runners/generate-jitconfig', {
      name: `r${i}`,
      runner_group_id: 1,
      labels: ['self-hosted'],
    });
  for (let i = 0; i < 180; i++) {
    const res = await post(i);
    assert.equal(res.status, 201, `POST ${i} of the first 900 points`);
    if (i % 60 === 59) clock.advance(1_000);
  }
  const refused = await post(180);
  assert.equal(refused.status, 403);
  const body = (await refused.json()) as { message: string; documentation_url: string };
  assert.match(body.message, /secondary rate limit/);
  assert.match(body.documentation_url, /secondary-rate-limits/);
  assert.notEqual(refused.headers.get('x-ratelimit-remaining'), '0', 'a secondary limit is not an empty primary budget');
  const retryAfter = Number(refused.headers.get('retry-after'));
  assert.ok(retryAfter >= 57 && retryAfter <= 60, `retry-after ${retryAfter}: the oldest points leave the minute window then`);
  assert.equal((await call(fake.defaultToken)).status, 200, 'a GET is another endpoint with its own budget');
  clock.advance(retryAfter * 1000);
  assert.equal((await post(181)).status, 201, 'after retry-after the endpoint answers again');
  assert.deepEqual(fake.limitAnswers(), { primary: 0, secondaryPoints: 1, secondaryConcurrent: 0 });
});

test('a secondary limit by concurrency: requests past the cap in flight get 429 with retry-after', async (t) => {
  const { call, fake } = await start(t, { latencyMs: 400, secondaryLimits: { concurrent: 4, status: 429 } });
  const results = await Promise.all(Array.from({ length: 7 }, () => call(fake.defaultToken)));
  const statuses = results.map((r) => r.status).sort();
  assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429, 429]);
  const refused = results.find((r) => r.status === 429)!;
  assert.equal(refused.headers.get('retry-after'), '1');
  assert.match(((await refused.json()) as { message: string }).message, /secondary rate limit/);
  assert.equal(fake.limitAnswers().secondaryConcurrent, 3);
  assert.equal((await call(fake.defaultToken)).status, 200, 'once the others finished, a request is admitted');
});

test('an installation token lives one hour: after it, a request with it is refused 401', async (t) => {
  const { clock, call, mint, fake } = await start(t, { app: APP });
  const token = await mint();
  assert.equal(fake.tokensMinted, 1);
  clock.advance(59 * 60_000);
  assert.equal((await call(token)).status, 200);
  clock.advance(60_000);
  const refused = await call(token);
  assert.equal(refused.status, 401);
  assert.equal(((await refused.json()) as { message: string }).message, 'Bad credentials');
});
