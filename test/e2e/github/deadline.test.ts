/** Every call to GitHub has a deadline that fires, whatever HTTP client carries it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFakeGitHub } from '../../../src/sim/github/server.js';
import { createOctokitPort } from '../../../src/github/octokit.js';
import { createCaFetch } from '../../../src/github/tls.js';
import type { HttpFetch } from '../../../src/github/fetch-answer.js';
import { RequestDeadlineError, withDeadline } from '../../../src/github/deadline-fetch.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { GitHubApiError } from '../../../src/lib/errors.js';

const jitReq = { name: 'r1', labels: ['self-hosted'], runnerGroupId: 1, workFolder: '_work' };
/** The fake holds the answer far longer than any test may run. */
const NEVER_MS = 70_000;

function causeChain(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = err, i = 0; e && i < 8; e = (e as { cause?: unknown }).cause, i++) out.push(e);
  return out;
}

const clients: { name: string; fetch?: () => { fetch: HttpFetch; close(): void } }[] = [
  { name: "node's fetch" },
  { name: 'the CA-bundle fetch (GHES)', fetch: () => createCaFetch('-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n') },
];

for (const c of clients) {
  test(`a generate-jitconfig that never answers fails after the deadline, every try bounded (${c.name})`, async (t) => {
    const clock = ManualClock.instant(Date.now());
    const fake = await startFakeGitHub({ clock });
    t.after(() => fake.close());
    fake.faults.add({ match: { path: /generate-jitconfig/ }, delayMs: NEVER_MS, times: Infinity });
    const custom = c.fetch?.();
    t.after(() => custom?.close());
    const port = createOctokitPort({
      apiUrl: fake.url,
      scope: { kind: 'org', org: 'octo' },
      auth: { kind: 'token', token: fake.defaultToken },
      clock,
      log: silentLogger(),
      requestTimeoutMs: 300,
      ...(custom ? { fetch: custom.fetch } : {}),
    });
    const started = Date.now();
    await assert.rejects(port.generateJitConfig(jitReq), (err: unknown) => {
      assert.ok(err instanceof GitHubApiError, `expected GitHubApiError, got ${String(err)}`);
      assert.ok(
        causeChain(err).some((e) => e instanceof RequestDeadlineError),
        'the failure must say the deadline fired (a RequestDeadlineError in the cause chain)',
      );
      return true;
    });
    const took = Date.now() - started;
    // Five tries of 300 ms each; generous for 2 shared cores, far below the 70 s the fake holds.
    assert.ok(took < 20_000, `the call took ${took} ms: the per-request deadline did not fire`);
    assert.equal(clock.sleeps.length, 4, 'a timed-out request is a network error: retried with backoff, then given up');
  });
}

test('a server that sends headers and then stalls the body is cut at the deadline too', async (t) => {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
    res.write('{"a":');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const f = withDeadline(globalThis.fetch, 300);
  const started = Date.now();
  await assert.rejects(f(url), RequestDeadlineError);
  assert.ok(Date.now() - started < 10_000, 'the stalled body was waited for past the deadline');
});

test('the deadline does not touch a call that answers in time', async (t) => {
  const clock = ManualClock.instant(Date.now());
  const fake = await startFakeGitHub({ clock });
  t.after(() => fake.close());
  fake.faults.add({ match: { path: /generate-jitconfig/ }, delayMs: 50 });
  const port = createOctokitPort({
    apiUrl: fake.url,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'token', token: fake.defaultToken },
    clock,
    log: silentLogger(),
    requestTimeoutMs: 5_000,
  });
  const reg = await port.generateJitConfig(jitReq);
  assert.ok(reg.encodedJitConfig.length > 0);
  assert.deepEqual(clock.sleeps, []);
});
