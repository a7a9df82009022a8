/**
 * GitHub Enterprise Server: the `/api/v3` prefix and a private CA (`github.caFile`). The fake
 * GitHub is served with `pathPrefix: '/api/v3'` behind a TLS-terminating proxy whose certificate
 * is signed by a CA made with openssl in the test's root; the adapter must fail without that CA
 * and work with it. The last test runs the agent end to end in token mode against it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { startFakeGitHub, type FakeGitHub } from '../../../src/sim/github/server.js';
import { createOctokitPort } from '../../../src/github/octokit.js';
import { createCaFetch, readCaBundle } from '../../../src/github/tls.js';
import type { HttpFetch } from '../../../src/github/fetch-answer.js';
import { deriveApiUrl } from '../../../src/policy/load.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { ConfigError, GitHubApiError } from '../../../src/lib/errors.js';
import { silentLogger } from '../../../src/lib/log.js';
import { createWorld, jobRecords, SIM_ENV } from '../../helpers/world.js';

let dir: string;
let caPem: string;
let otherCaPem: string;
let serverKey: string;
let serverCert: string;

/** `openssl` with the test's directory as cwd; keys are P-256 (fast to make). */
function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

function makeCa(name: string): void {
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-subj',
    `/CN=runner-warden test ${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'rw-ghes-'));
  makeCa('ca');
  makeCa('other-ca');
  openssl([
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  ]);
  await writeFile(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl([
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'ext.cnf',
  ]);
  caPem = await readFile(path.join(dir, 'ca.pem'), 'utf8');
  otherCaPem = await readFile(path.join(dir, 'other-ca.pem'), 'utf8');
  serverKey = await readFile(path.join(dir, 'server.key'), 'utf8');
  serverCert = await readFile(path.join(dir, 'server.pem'), 'utf8');
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A TLS-terminating proxy in front of `fake` (a GHES appliance's front end); closes with the test. */
async function tlsFront(fake: FakeGitHub): Promise<{ origin: string; close: () => Promise<void> }> {
  const upstream = new URL(fake.origin);
  const sockets = new Set<net.Socket>();
  const server = tls.createServer({ key: serverKey, cert: serverCert }, (client) => {
    const up = net.connect(Number(upstream.port), upstream.hostname);
    sockets.add(client).add(up);
    client.pipe(up).pipe(client);
    const drop = (): void => {
      client.destroy();
      up.destroy();
    };
    client.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
  });
  // A refused handshake (the client without our CA) is expected here, not a test failure.
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    origin: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function port(fake: FakeGitHub, apiUrl: string, fetchImpl?: HttpFetch) {
  return createOctokitPort({
    apiUrl,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'token', token: fake.defaultToken },
    // Retries of the refused handshake wait on this clock, so they cost no real time.
    clock: ManualClock.instant(),
    log: silentLogger(),
    ...(fetchImpl ? { fetch: fetchImpl } : {}),
  });
}

test('the API URL of a server ends in /api/v3; github.com and ghe.com have their own hosts', () => {
  const cases: [string, string][] = [
    ['https://github.com', 'https://api.github.com'],
    ['https://acme.ghe.com', 'https://api.acme.ghe.com'],
    ['https://ghes.example.com', 'https://ghes.example.com/api/v3'],
    ['https://ghes.example.com/', 'https://ghes.example.com/api/v3'],
  ];
  for (const [url, api] of cases) assert.equal(deriveApiUrl(url), api, `derivation for ${url}`);
});

test('over HTTPS with a private CA the calls fail without the CA bundle and work with it, under /api/v3', async (t) => {
  const fake = await startFakeGitHub({ pathPrefix: '/api/v3' });
  const front = await tlsFront(fake);
  t.after(async () => {
    await front.close();
    await fake.close();
  });
  const apiUrl = `${front.origin}/api/v3`;

  await assert.rejects(
    port(fake, apiUrl).createRegistrationToken(),
    (err: unknown) => err instanceof GitHubApiError && err.status === 500 && /certificate/i.test(err.message),
    'the system roots alone must not trust the private CA',
  );
  const wrong = createCaFetch(otherCaPem);
  t.after(() => wrong.close());
  await assert.rejects(
    port(fake, apiUrl, wrong.fetch).createRegistrationToken(),
    /certificate/i,
    'a bundle of another CA must not be trusted',
  );
  assert.equal(fake.restCalls(), 0, 'no call may reach the server over an untrusted connection');

  for (const includeSystemRoots of [true, false]) {
    const ca = createCaFetch(caPem, { includeSystemRoots });
    try {
      const gh = port(fake, apiUrl, ca.fetch);
      const tok = await gh.createRegistrationToken();
      assert.ok(tok.token.length > 10 && Number.isFinite(Date.parse(tok.expiresAt)), 'a registration token with its expiry');
      const group = await gh.resolveRunnerGroup(null);
      const jit = await gh.generateJitConfig({
        name: `ghes-${includeSystemRoots}`,
        labels: ['self-hosted'],
        runnerGroupId: group,
        workFolder: '_work',
      });
      assert.deepEqual(
        (await gh.findRunnersByName(jit.runner.name)).map((r) => r.id),
        [jit.runner.id],
        'GET with a query',
      );
      assert.equal(await gh.deleteRunner(jit.runner.id), 'deleted', 'DELETE with a 204 answer');
      assert.equal(await gh.deleteRunner(jit.runner.id), 'not-found', 'a 404 is an outcome');
    } finally {
      ca.close();
    }
  }
  const paths = fake.requests.filter((r) => r.kind === 'rest').map((r) => r.path);
  assert.ok(
    paths.length >= 10 && paths.every((p) => p.startsWith('/api/v3/')),
    `every REST call must use the GHES prefix: ${paths.join(', ')}`,
  );
});

test('github.caFile must hold a PEM certificate: anything else is a configuration error naming the field', async () => {
  const junk = path.join(dir, 'junk.pem');
  await writeFile(junk, 'not a certificate\n');
  await assert.rejects(
    readCaBundle(junk, '/etc/runner-warden/config.yaml'),
    (e: unknown) => e instanceof ConfigError && /github\.caFile/.test(e.problems.join('\n')),
  );
  await assert.rejects(
    readCaBundle(path.join(dir, 'missing.pem'), 'c.yaml'),
    (e: unknown) => e instanceof ConfigError && /ENOENT/.test(e.problems.join('\n')),
  );
  assert.equal(await readCaBundle(path.join(dir, 'ca.pem'), 'c.yaml'), caPem);
});

test('the agent serves a job in token mode against a GHES with a private CA (github.caFile for the agent, the system store for the runner)', async (t) => {
  const w = await createWorld({ fake: { pathPrefix: '/api/v3' }, runner: { maxJobs: 1 } });
  const front = await tlsFront(w.fake);
  t.after(async () => {
    await front.close();
    await w.dispose();
  });
  // The runner user must read the CA: it is the runner's own trust store here (NODE_EXTRA_CA_CERTS
  // for the simulator; on a real host the CA goes into the system store of the image).
  const caFile = path.join(w.lab.root, 'ghes-ca.pem');
  await writeFile(caFile, caPem);
  await chmod(caFile, 0o644);
  const cfg = parse(await readFile(w.configFile, 'utf8')) as { github: Record<string, unknown>; runner: Record<string, unknown> };
  cfg.github = { url: front.origin, org: 'octo', token: cfg.github.token, registration: 'token', caFile };
  cfg.runner.env = { ...SIM_ENV, NODE_EXTRA_CA_CERTS: caFile, RUNNER_SIM_API_URL: `${front.origin}/api/v3` };
  await writeFile(w.configFile, stringify(cfg), { mode: 0o600 });

  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'build', run: 'echo ok > out.txt' }] });
  const rt = await w.runtime();
  const exit = await rt.agent.run(AbortSignal.timeout(150_000));
  await rt.close();
  assert.equal(exit.code, 0, exit.reason);
  const jobs = jobRecords(await w.journal());
  assert.equal(jobs[0]?.result, 'Succeeded');
  assert.equal(jobs[0]?.cleanup.clean, true, JSON.stringify(jobs[0]?.cleanup.verify.problems));
  assert.equal(w.fake.restCalls({ path: /registration-token$/ }), 1, 'the agent fetched its token over HTTPS (derived URL + CA)');
  assert.ok(
    w.fake.requests.some((r) => r.kind === 'registration' && r.path === '/api/v3/actions/runner-registration' && r.status === 200),
    'config.sh should have exchanged the token at <url>/api/v3, as the real runner does for a server',
  );
  assert.equal(w.fake.runners().length, 0, 'no registration left');
});

test('the CA fetch follows a redirect, drops the credential when it leaves the origin, and stops on its signal', async (t) => {
  const { createServer } = await import('node:http');
  const seen: { path: string; auth: string | undefined; method: string }[] = [];
  const other = createServer((req, res) => {
    seen.push({ path: `other${req.url}`, auth: req.headers.authorization, method: req.method ?? '' });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  const otherOrigin = `http://127.0.0.1:${(other.address() as net.AddressInfo).port}`;
  const main = createServer((req, res) => {
    seen.push({ path: req.url ?? '', auth: req.headers.authorization, method: req.method ?? '' });
    if (req.url === '/moved') res.writeHead(301, { location: '/here' }).end();
    else if (req.url === '/away') res.writeHead(303, { location: `${otherOrigin}/there` }).end();
    else if (req.url === '/hang') res.writeHead(200).write('partial');
    else res.writeHead(200, { 'content-type': 'application/json' }).end('{"here":true}');
  });
  await new Promise<void>((r) => main.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(main.address() as net.AddressInfo).port}`;
  const ca = createCaFetch(caPem);
  t.after(async () => {
    ca.close();
    main.closeAllConnections();
    other.closeAllConnections();
    await new Promise<void>((r) => main.close(() => r()));
    await new Promise<void>((r) => other.close(() => r()));
  });
  const headers = { authorization: 'token secret-value' };

  const r1 = await ca.fetch(`${origin}/moved`, { headers });
  assert.deepEqual(await r1.json(), { here: true });
  assert.equal(r1.url, `${origin}/here`, 'the Response must name the final URL (Octokit reads it)');
  assert.equal(seen.at(-1)?.auth, 'token secret-value', 'a same-origin redirect keeps the credential');

  const r2 = await ca.fetch(`${origin}/away`, { method: 'POST', headers, body: '{}' });
  assert.equal(r2.status, 200);
  assert.deepEqual(seen.at(-1), { path: 'other/there', auth: undefined, method: 'GET' }, 'a 303 to another origin: GET, no credential');

  const ac = new AbortController();
  const pending = ca.fetch(`${origin}/hang`, { signal: ac.signal });
  setTimeout(() => ac.abort(new DOMException('stopped', 'AbortError')), 50);
  await assert.rejects(
    pending,
    (e: unknown) => e instanceof Error && e.name === 'AbortError',
    'an abort must reject with the signal reason',
  );
});
