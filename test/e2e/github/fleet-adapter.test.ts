/** The adapter at fleet scale: one gate per host, and the App token cached and renewed on the clock. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { startFakeGitHub } from '../../../src/sim/github/server.js';
import { createOctokitPort } from '../../../src/github/octokit.js';
import { RENEW_BEFORE_MS } from '../../../src/github/app-token.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';

const jitReq = (name: string) => ({ name, labels: ['self-hosted'], runnerGroupId: 1, workFolder: '_work' });

async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(pred(), what);
}

test('a host that meets a secondary limit pauses all its calls for retry-after, not only the refused one', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
  const fake = await startFakeGitHub({ clock });
  t.after(() => fake.close());
  const limits: string[] = [];
  const port = createOctokitPort({
    apiUrl: fake.url,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'token', token: fake.defaultToken },
    clock,
    log: silentLogger(),
    random: () => 0, // no jitter: the pause is exactly retry-after
    onRequest: (r) => {
      if (r.limit) limits.push(r.limit);
    },
  });
  fake.faults.secondaryRateLimit({ retryAfter: 30, match: { path: /generate-jitconfig/ } });
  const first = port.generateJitConfig(jitReq('a'));
  await until(() => fake.restCalls() === 1 && clock.sleeps.length === 1, 'the refused call waits on the gate');
  // Other calls of the same host, to other endpoints, start while the gate is closed.
  const list = port.findRunnersByName('a');
  const del = port.deleteRunner(99);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(fake.restCalls(), 1, 'no call of this host may reach GitHub while it is paused');
  clock.advance(29_000);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(fake.restCalls(), 1, 'still paused one second before retry-after ends');
  clock.advance(1_000);
  const [reg, found, deleted] = await Promise.all([first, list, del]);
  assert.equal(reg.runner.name, 'a');
  assert.ok(Array.isArray(found));
  assert.equal(deleted, 'not-found');
  assert.equal(fake.restCalls(), 4);
  assert.ok(
    fake.requests.slice(1).every((r) => r.at >= Date.UTC(2026, 0, 1, 12) + 30_000),
    'every later call went after retry-after',
  );
  assert.deepEqual(limits, ['secondary']);
  assert.equal(port.fleet.gatePauses(), 1);
});

test('the App installation token is minted once, reused, and renewed before its hour ends', async (t) => {
  const keys = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const clock = ManualClock.instant(Date.UTC(2026, 0, 1, 12));
  const fake = await startFakeGitHub({ clock, app: { appId: 7, installationId: 70, publicKeyPem: keys.publicKey } });
  t.after(() => fake.close());
  const port = createOctokitPort({
    apiUrl: fake.url,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'app', appId: 7, installationId: 70, privateKey: keys.privateKey },
    clock,
    log: silentLogger(),
  });
  await Promise.all([port.generateJitConfig(jitReq('a')), port.findRunnersByName('a'), port.findRunnersByName('b')]);
  assert.equal(fake.tokensMinted, 1, 'concurrent first calls share one mint');
  const usable = 60 * 60_000 - RENEW_BEFORE_MS;
  clock.advance(usable - 60_000);
  await port.findRunnersByName('a');
  assert.equal(fake.tokensMinted, 1, 'a token with more than the renewal margin left is reused');
  clock.advance(60_000);
  await port.findRunnersByName('a');
  assert.equal(fake.tokensMinted, 2, 'renewed before expiry');
  assert.equal(port.fleet.mintsLastHour(), 2);
  // Renewed early, no request was ever refused for an expired token.
  assert.equal(fake.restCalls({ status: 401 }), 0);
  for (let h = 0; h < 3; h++) {
    clock.advance(30 * 60_000);
    await port.findRunnersByName('a');
  }
  assert.ok(port.fleet.mintsLastHour() <= 2, `at most two mints an hour, got ${port.fleet.mintsLastHour()}`);
});

test('a cached token GitHub refuses (revoked) is dropped and the call goes again with a new one', async (t) => {
  const keys = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const clock = ManualClock.instant(Date.UTC(2026, 0, 1, 12));
  const fake = await startFakeGitHub({ clock, app: { appId: 7, installationId: 70, publicKeyPem: keys.publicKey } });
  t.after(() => fake.close());
  const port = createOctokitPort({
    apiUrl: fake.url,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'app', appId: 7, installationId: 70, privateKey: keys.privateKey },
    clock,
    log: silentLogger(),
  });
  await port.findRunnersByName('a');
  fake.faults.add({ match: { path: /actions\/runners$/ }, status: 401, body: { message: 'Bad credentials' } });
  await port.findRunnersByName('a');
  assert.equal(fake.tokensMinted, 2);
});
