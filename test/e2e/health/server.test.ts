import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm, writeFile, chmod, symlink } from 'node:fs/promises';
import {
  parseListen,
  startHealthServer,
  runHealthServer,
  type HealthServer,
  type HealthServerOptions,
} from '../../../src/health/server.js';
import { AgentMetrics } from '../../../src/health/metrics.js';
import type { StatusSnapshot } from '../../../src/health/snapshot.js';
import { ConfigError } from '../../../src/lib/errors.js';
import { createLogger } from '../../../src/lib/log.js';

function snapshot(over: Partial<StatusSnapshot> = {}): StatusSnapshot {
  return {
    state: 'idle',
    stateSince: '2026-01-01T00:00:00.000Z',
    loopAlive: true,
    quarantined: false,
    runner: { name: 'rw-host-1-0001', id: 42, labels: ['self-hosted', 'linux'] },
    jobsServed: 3,
    policy: { team: 'default', file: '/etc/runner-warden/policies/default.yaml', version: 'v1' },
    agent: { version: '0.1.0', pid: 123, startedAt: '2026-01-01T00:00:00.000Z', uptimeSeconds: 60 },
    ...over,
  };
}

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function get(port: number, urlPath: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: urlPath, method: opts.method ?? 'GET', headers: opts.headers, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Sends raw bytes and collects whatever comes back until the server closes the socket. */
function raw(port: number, data: string, timeoutMs = 3000): Promise<{ text: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`server kept the connection open for ${timeoutMs} ms; got ${JSON.stringify(text)}`));
    }, timeoutMs);
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => (text += c));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedAfterMs: Date.now() - t0 });
    });
    sock.write(data);
  });
}

function logSink(): { lines: () => Record<string, unknown>[]; log: ReturnType<typeof createLogger> } {
  const out: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void out.push(s) } });
  return { log, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('health server', () => {
  let dir: string;
  let metrics: AgentMetrics;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'rw-health-'));
    metrics = new AgentMetrics({ version: '0.1.0' });
    metrics.setState('idle');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function withServer(over: Partial<HealthServerOptions>, fn: (s: HealthServer, port: number) => Promise<void>): Promise<void> {
    const s = await startHealthServer({
      listen: '127.0.0.1:0',
      snapshot: () => snapshot(),
      metrics,
      ...over,
    });
    try {
      await fn(s, s.address.port);
    } finally {
      await s.close();
    }
  }

  const healthCases: Array<[string, Partial<StatusSnapshot>, number]> = [
    ['alive and not quarantined', {}, 200],
    ['alive but quarantined', { quarantined: true, quarantineReason: 'verify failed' }, 503],
    ['loop stalled', { loopAlive: false }, 503],
    ['stalled and quarantined', { loopAlive: false, quarantined: true }, 503],
    ['busy cleaning (still alive)', { state: 'cleaning' }, 200],
  ];
  for (const [name, over, want] of healthCases) {
    test(`/healthz answers ${want} when the agent is ${name}`, async () => {
      await withServer({ snapshot: () => snapshot(over) }, async (_s, port) => {
        const r = await get(port, '/healthz');
        assert.equal(r.status, want, `healthz body: ${r.body}`);
        assert.equal(r.headers['cache-control'], 'no-store', 'probe answers must not be cached');
      });
    });
  }

  const states = [
    'boot',
    'recovering',
    'preflight',
    'registering',
    'idle',
    'job-running',
    'cleaning',
    'verifying',
    'deciding',
    'draining',
    'recycling',
    'quarantined',
    'stopped',
  ];
  test('/readyz answers 200 only while idle or running a job, 503 in every other state', async () => {
    let state = 'boot';
    await withServer({ snapshot: () => snapshot({ state }) }, async (_s, port) => {
      for (state of states) {
        const r = await get(port, '/readyz');
        const want = state === 'idle' || state === 'job-running' ? 200 : 503;
        assert.equal(r.status, want, `readyz in state ${state}: ${r.body}`);
        assert.match(r.body, new RegExp(state), 'the body should name the state for an operator');
      }
    });
  });

  test('/readyz is 503 when idle but the loop is stalled or the host is quarantined', async () => {
    for (const over of [{ loopAlive: false }, { quarantined: true }]) {
      await withServer({ snapshot: () => snapshot(over) }, async (_s, port) => {
        assert.equal((await get(port, '/readyz')).status, 503, JSON.stringify(over));
      });
    }
  });

  test('/status serves the snapshot as JSON', async () => {
    const snap = snapshot({ state: 'job-running', currentJob: { repository: 'octo/app', job: 'build' } });
    await withServer({ snapshot: () => snap }, async (_s, port) => {
      const r = await get(port, '/status?pretty=1');
      assert.equal(r.status, 200);
      assert.match(String(r.headers['content-type']), /^application\/json/);
      assert.deepEqual(JSON.parse(r.body), snap, 'status body should be exactly the snapshot');
    });
  });

  test('/metrics serves Prometheus text with the runner_warden_ prefix', async () => {
    await withServer({}, async (_s, port) => {
      const r = await get(port, '/metrics');
      assert.equal(r.status, 200);
      assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      assert.match(r.body, /^runner_warden_state\{state="idle"\} 1$/m, 'state gauge missing');
      assert.match(r.body, /^runner_warden_build_info\{version="0\.1\.0"/m);
    });
  });

  test('HEAD gets the headers and length of GET without a body', async () => {
    await withServer({}, async (_s, port) => {
      const g = await get(port, '/status');
      const h = await get(port, '/status', { method: 'HEAD' });
      assert.equal(h.status, 200);
      assert.equal(h.body, '');
      assert.equal(h.headers['content-length'], g.headers['content-length']);
    });
  });

  test('other methods on known paths get 405 with Allow, unknown paths 404', async () => {
    await withServer({}, async (_s, port) => {
      for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
        const r = await get(port, '/status', { method });
        assert.equal(r.status, 405, `${method} /status`);
        assert.equal(r.headers.allow, 'GET, HEAD');
      }
      for (const p of ['/nope', '/healthz/', '/status.json', '/metrics/x', '/HEALTHZ', '/%2e%2e/etc/passwd']) {
        assert.equal((await get(port, p)).status, 404, `GET ${p}`);
      }
    });
  });

  test('a request with a body is refused with 400', async () => {
    await withServer({}, async (_s, port) => {
      const r = await get(port, '/healthz', { body: 'x'.repeat(100), headers: { 'content-length': '100' } });
      assert.equal(r.status, 400);
    });
  });

  test('malformed requests get 400 and the server keeps serving', async () => {
    await withServer({}, async (_s, port) => {
      for (const bad of [
        'GARBAGE\r\n\r\n',
        'GET /healthz HTTP/9.9\r\n\r\n',
        'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
        'GET http://example.com/healthz HTTP/1.1\r\nHost: x\r\n\r\n',
        'GET * HTTP/1.1\r\nHost: x\r\n\r\n',
        '\x00\x01\x02\x03\r\n\r\n',
      ]) {
        const r = await raw(port, bad);
        assert.match(r.text, /^HTTP\/1\.1 400 /, `reply to ${JSON.stringify(bad)}: ${JSON.stringify(r.text)}`);
      }
      assert.equal((await get(port, '/healthz')).status, 200, 'server should survive malformed input');
    });
  });

  test('huge headers get 431', async () => {
    await withServer({ limits: { maxHeaderSize: 4096 } }, async (_s, port) => {
      const r = await raw(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
      assert.match(r.text, /^HTTP\/1\.1 431 /, JSON.stringify(r.text.slice(0, 80)));
      assert.equal((await get(port, '/healthz')).status, 200);
    });
  });

  test('a slow client that never finishes its headers is cut off after the headers timeout', async () => {
    const limits = { headersTimeoutMs: 200, requestTimeoutMs: 300, connectionsCheckingIntervalMs: 50 };
    await withServer({ limits }, async (_s, port) => {
      const r = await raw(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ', 3000);
      assert.match(r.text, /^HTTP\/1\.1 408 /, `slow client reply ${JSON.stringify(r.text)}`);
      assert.ok(r.closedAfterMs < 1500, `closed after ${r.closedAfterMs} ms; headersTimeout not enforced?`);
    });
  });

  test('an idle connection that sends nothing is closed', async () => {
    const limits = { headersTimeoutMs: 200, requestTimeoutMs: 300, connectionsCheckingIntervalMs: 50, socketTimeoutMs: 400 };
    await withServer({ limits }, async (_s, port) => {
      const r = await raw(port, '', 3000);
      assert.ok(r.closedAfterMs < 2000, `idle socket closed after ${r.closedAfterMs} ms`);
    });
  });

  test('connections beyond maxConnections are dropped and the server keeps answering', async () => {
    await withServer({ limits: { maxConnections: 5 } }, async (_s, port) => {
      const socks: net.Socket[] = [];
      let closedByServer = 0;
      await Promise.all(
        Array.from(
          { length: 25 },
          () =>
            new Promise<void>((resolve) => {
              const s = net.connect(port, '127.0.0.1', () => resolve());
              s.on('error', () => undefined);
              s.on('close', () => {
                closedByServer++;
                resolve();
              });
              socks.push(s);
            }),
        ),
      );
      // Each connection beyond the cap evicts the oldest idle one; give a loaded host time to do it.
      for (let i = 0; i < 150 && closedByServer < 20; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(closedByServer >= 20, `only ${closedByServer} of 25 sockets dropped with maxConnections 5`);
      for (const s of socks) s.destroy();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await get(port, '/healthz')).status, 200, 'server should accept again once clients leave');
    });
  });

  test('a snapshot that throws gives 500 and an error log, not a crash', async () => {
    const sink = logSink();
    await withServer(
      {
        log: sink.log,
        snapshot: () => {
          throw new Error('boom');
        },
      },
      async (_s, port) => {
        assert.equal((await get(port, '/status')).status, 500);
        assert.equal((await get(port, '/')).status, 200, 'the index does not need the snapshot');
      },
    );
    assert.ok(
      sink.lines().some((l) => l.msg === 'health request failed'),
      'failure should be logged',
    );
  });

  test('close() finishes even with an idle keep-alive client attached', async () => {
    const s = await startHealthServer({ listen: '127.0.0.1:0', snapshot: () => snapshot(), metrics });
    const agent = new http.Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: s.address.port, path: '/healthz', agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        })
        .on('error', reject);
    });
    const t0 = Date.now();
    await s.close();
    agent.destroy();
    assert.ok(Date.now() - t0 < 1000, 'close waited on an idle keep-alive connection');
  });

  test('runHealthServer serves until its signal aborts', async () => {
    const ac = new AbortController();
    let port = 0;
    const listening = new Promise<void>((resolve) => {
      void runHealthServer(
        { listen: '127.0.0.1:0', snapshot: () => snapshot(), metrics, onListening: (a) => ((port = a.port), resolve()) },
        ac.signal,
      ).then(() => (stopped = true));
    });
    let stopped = false;
    await listening;
    assert.equal((await get(port, '/healthz')).status, 200);
    ac.abort();
    for (let i = 0; i < 100 && !stopped; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(stopped, 'runHealthServer should resolve after abort');
    await assert.rejects(get(port, '/healthz'), 'the port should be closed after abort');
  });

  describe('bearer token', () => {
    const TOKEN = 'hc_3f9a7c1e2b4d6f8091a2b3c4d5e6f708';
    let tokenFile: string;
    before(async () => {
      tokenFile = path.join(dir, 'health.token');
      await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
      await chmod(tokenFile, 0o600);
    });

    test('the right token opens /status and /metrics; a wrong or missing one gets 401', async () => {
      await withServer({ tokenFile }, async (_s, port) => {
        for (const p of ['/status', '/metrics']) {
          assert.equal((await get(port, p, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200, `${p} right token`);
          const cases: Array<[string, Record<string, string>]> = [
            ['missing', {}],
            ['wrong', { authorization: 'Bearer hc_wrong_wrong_wrong_wrong_wrong_00' }],
            ['prefix of the token', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
            ['token plus a byte', { authorization: `Bearer ${TOKEN}x` }],
            ['no Bearer scheme', { authorization: TOKEN }],
            ['basic scheme', { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }],
          ];
          for (const [name, headers] of cases) {
            const r = await get(port, p, { headers });
            assert.equal(r.status, 401, `${p} with ${name} token`);
            assert.equal(r.headers['www-authenticate'], 'Bearer realm="runner-warden"');
            assert.ok(!r.body.includes('runner_warden_') && !r.body.includes('rw-host'), 'a 401 must not leak data');
          }
        }
      });
    });

    test('probes stay open without a token unless protectProbes is set', async () => {
      await withServer({ tokenFile }, async (_s, port) => {
        assert.equal((await get(port, '/healthz')).status, 200);
        assert.equal((await get(port, '/readyz')).status, 200);
      });
      await withServer({ tokenFile, protectProbes: true }, async (_s, port) => {
        assert.equal((await get(port, '/healthz')).status, 401);
        assert.equal((await get(port, '/healthz', { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
      });
    });

    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o606]) {
      test(`a token file with mode ${mode.toString(8)} is refused with a clear error`, async () => {
        const f = path.join(dir, `token-${mode.toString(8)}`);
        await writeFile(f, TOKEN);
        await chmod(f, mode);
        await assert.rejects(
          startHealthServer({ listen: '127.0.0.1:0', tokenFile: f, snapshot: () => snapshot(), metrics }),
          (err: unknown) => err instanceof ConfigError && /group or others can read it; run chmod 600/.test(err.message) && err.file === f,
        );
      });
    }

    test('a symlinked, empty, foreign-owned or missing token file is refused', async () => {
      const link = path.join(dir, 'token-link');
      await symlink(tokenFile, link);
      const empty = path.join(dir, 'token-empty');
      await writeFile(empty, '\n', { mode: 0o600 });
      const cases: Array<[string, Partial<HealthServerOptions>, RegExp]> = [
        ['symlink', { tokenFile: link }, /cannot be opened/],
        ['empty', { tokenFile: empty }, /is empty/],
        ['missing', { tokenFile: path.join(dir, 'nope') }, /cannot be opened/],
        ['foreign owner', { tokenFile, tokenOwnerUid: 4242 }, /owned by uid 0, expected uid 4242/],
      ];
      for (const [name, over, re] of cases) {
        await assert.rejects(
          startHealthServer({ listen: '127.0.0.1:0', snapshot: () => snapshot(), metrics, ...over }),
          (err: unknown) => err instanceof ConfigError && re.test(err.message),
          name,
        );
      }
    });
  });

  describe('secrets', () => {
    const AGENT_TOKEN = 'ghp_R8b1Xy9QzK2mN4pL6vT0wC3sD5fG7hJ9kL1a';
    // A JIT config is base64 of JSON; '/' and '+' are part of its alphabet.
    const JIT = Buffer.from(
      JSON.stringify({ '.runner': 'eyJhZ2VudElkIjoiNDIi', '.credentials': 'abc/def+ghi', '.credentials_rsaparams': 'xyz' }),
    ).toString('base64');
    const secrets = (): string[] => [AGENT_TOKEN, JIT];

    test('a planted token or JIT config never appears in any response', async () => {
      const sink = logSink();
      const m = new AgentMetrics({ version: '0.1.0' });
      m.setState('idle');
      const plants: Array<[string, () => StatusSnapshot]> = [
        ['runner name', () => snapshot({ runner: { name: AGENT_TOKEN, labels: [] } })],
        ['quarantine reason', () => snapshot({ quarantined: true, quarantineReason: `bad ${JIT}` })],
        ['policy reload error', () => snapshot({ policy: { team: 't', lastReloadError: `token=${AGENT_TOKEN}` } })],
        ['job name', () => snapshot({ currentJob: { job: JIT } })],
        ['readyz state', () => snapshot({ state: AGENT_TOKEN })],
      ];
      for (const [where, snap] of plants) {
        await withServer({ snapshot: snap, metrics: m, secrets, log: sink.log }, async (_s, port) => {
          for (const p of ['/', '/healthz', '/readyz', '/status', '/metrics', '/nope']) {
            for (const method of ['GET', 'HEAD', 'POST']) {
              const r = await get(port, p, { method });
              const all = JSON.stringify(r.headers) + r.body;
              assert.ok(!all.includes(AGENT_TOKEN), `token leaked via ${where} on ${method} ${p}`);
              assert.ok(!all.includes(JIT), `JIT config leaked via ${where} on ${method} ${p}`);
            }
          }
          const r = await get(port, '/status');
          assert.equal(r.status, 500, `a status body holding a secret (${where}) should be withheld`);
        });
      }
      // A secret that reached a metric label (e.g. through a raw URL used as endpoint) is withheld too.
      m.githubRequest(`/repos/o/r?access_token=${AGENT_TOKEN}`, 200);
      await withServer({ metrics: m, secrets, log: sink.log }, async (_s, port) => {
        const r = await get(port, '/metrics');
        assert.equal(r.status, 500, 'metrics holding a secret should be withheld');
        assert.ok(!r.body.includes(AGENT_TOKEN));
      });
      const withheld = sink.lines().filter((l) => l.msg === 'response withheld: it contained a secret');
      assert.ok(withheld.length >= plants.length, 'each withheld response should be logged');
      const logged = sink
        .lines()
        .map((l) => JSON.stringify(l))
        .join('\n');
      assert.ok(!logged.includes(AGENT_TOKEN) && !logged.includes(JIT), 'the log itself must not hold the secret');
    });

    test('a secret escaped inside JSON (quotes, backslashes) is caught too', async () => {
      const odd = 'p@ss"word\\with/quote';
      await withServer({ snapshot: () => snapshot({ runner: { name: odd, labels: [] } }), secrets: () => [odd] }, async (_s, port) => {
        assert.equal((await get(port, '/status')).status, 500);
      });
    });

    test('short or empty strings are not treated as secrets', async () => {
      await withServer({ secrets: () => ['', 'ok', 'idle'] }, async (_s, port) => {
        assert.equal((await get(port, '/healthz')).status, 200);
        assert.equal((await get(port, '/status')).status, 200);
      });
    });
  });
});

test('parseListen accepts host:port and [v6]:port and refuses the rest', () => {
  assert.deepEqual(parseListen('127.0.0.1:9469'), { host: '127.0.0.1', port: 9469 });
  assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
  assert.deepEqual(parseListen('localhost:80'), { host: 'localhost', port: 80 });
  for (const bad of ['9469', ':9469', '127.0.0.1', '127.0.0.1:70000', '::1:9469', 'a b:1', '127.0.0.1:-1', '']) {
    assert.throws(() => parseListen(bad), ConfigError, `should refuse ${JSON.stringify(bad)}`);
  }
});

/** Opens `n` sockets that each hold a connection: idle, half-sent headers, or a finished keep-alive request. */
async function holdSockets(port: number, n: number): Promise<net.Socket[]> {
  const socks: net.Socket[] = [];
  for (let i = 0; i < n; i += 50) {
    await Promise.all(
      Array.from(
        { length: Math.min(50, n - i) },
        (_, k) =>
          new Promise<void>((resolve) => {
            const s = net.connect(port, '127.0.0.1', () => {
              const kind = (i + k) % 3;
              if (kind === 1) s.write('GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ');
              else if (kind === 2) s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
              resolve();
            });
            s.on('error', () => resolve());
            s.on('data', () => undefined);
            socks.push(s);
          }),
      ),
    );
  }
  return socks;
}

test('/healthz answers while 1,000 idle, half-open and keep-alive sockets are held open', async (t) => {
  const metrics = new AgentMetrics({ version: '0.1.0' });
  const s = await startHealthServer({ listen: '127.0.0.1:0', snapshot: () => snapshot(), metrics });
  t.after(() => s.close());
  const socks = await holdSockets(s.address.port, 1000);
  t.after(() => {
    for (const x of socks) x.destroy();
  });
  // Every probe a load balancer would send in the next few seconds must get its 200. A starved
  // server never answers while the sockets are held; 15 s per probe, since 5 s failed with the
  // machine's load at 28 on two cores.
  for (let i = 0; i < 5; i++) {
    const r = await Promise.race([
      get(s.address.port, '/healthz'),
      new Promise<Got>((_, rej) => setTimeout(() => rej(new Error('/healthz got no answer within 15 s while sockets were held')), 15_000)),
    ]);
    assert.equal(r.status, 200, `probe ${i}`);
  }
});

test('a health address already in use is a ConfigError naming health.listen', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => blocker.close(() => r())));
  const port = (blocker.address() as net.AddressInfo).port;
  await assert.rejects(
    startHealthServer({ listen: `127.0.0.1:${port}`, snapshot: () => snapshot(), metrics: new AgentMetrics({ version: '0' }) }),
    (err: unknown) => err instanceof ConfigError && err.problems.some((p) => /health\.listen: .*in use/.test(p)),
  );
});

test('listening beyond loopback without a token logs a warning and sets the exposure metric', async (t) => {
  const sink = logSink();
  const metrics = new AgentMetrics({ version: '0.1.0' });
  const s = await startHealthServer({ listen: '0.0.0.0:0', snapshot: () => snapshot(), metrics, log: sink.log });
  t.after(() => s.close());
  const warn = sink.lines().find((l) => l.level === 40 && /beyond loopback/.test(String(l.msg)));
  assert.ok(warn, `no warning: ${JSON.stringify(sink.lines())}`);
  assert.match(await metrics.render(), /runner_warden_health_exposure\{bind="all",auth="none"\} 1/);
  const quiet = logSink();
  const s2 = await startHealthServer({
    listen: '127.0.0.1:0',
    snapshot: () => snapshot(),
    metrics: new AgentMetrics({ version: '0' }),
    log: quiet.log,
  });
  t.after(() => s2.close());
  assert.equal(
    quiet.lines().some((l) => l.level === 40),
    false,
    'no warning on loopback',
  );
});

test('POST /drain drains only with the token, and is refused when no token is configured', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-drain-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tokenFile = path.join(dir, 'token');
  await writeFile(tokenFile, 'drain-token-0123456789\n', { mode: 0o600 });
  let drains = 0;
  const metrics = new AgentMetrics({ version: '0' });
  const s = await startHealthServer({
    listen: '127.0.0.1:0',
    tokenFile,
    snapshot: () => snapshot(),
    metrics,
    onDrain: () => void drains++,
  });
  t.after(() => s.close());
  assert.equal((await get(s.address.port, '/drain', { method: 'POST' })).status, 401);
  assert.equal(
    (await get(s.address.port, '/drain', { method: 'GET', headers: { authorization: 'Bearer drain-token-0123456789' } })).status,
    405,
  );
  assert.equal(drains, 0);
  assert.equal(
    (await get(s.address.port, '/drain', { method: 'POST', headers: { authorization: 'Bearer drain-token-0123456789' } })).status,
    202,
  );
  assert.equal(drains, 1);
  const open = await startHealthServer({ listen: '127.0.0.1:0', snapshot: () => snapshot(), metrics, onDrain: () => void drains++ });
  t.after(() => open.close());
  assert.equal((await get(open.address.port, '/drain', { method: 'POST' })).status, 403);
  assert.equal(drains, 1);
});

test('a silent connection is cut at the first-request deadline, and an idle keep-alive one after keepAliveTimeout', async (t) => {
  const metrics = new AgentMetrics({ version: '0' });
  const limits = {
    firstRequestTimeoutMs: 300,
    keepAliveTimeoutMs: 300,
    socketTimeoutMs: 60_000,
    headersTimeoutMs: 5_000,
    requestTimeoutMs: 10_000,
    connectionsCheckingIntervalMs: 50,
  };
  const s = await startHealthServer({ listen: '127.0.0.1:0', snapshot: () => snapshot(), metrics, limits });
  t.after(() => s.close());
  const silent = await raw(s.address.port, '', 5_000);
  assert.ok(silent.closedAfterMs < 2_000, `a socket that sent nothing lived ${silent.closedAfterMs} ms (socket timeout is 60 s)`);
  const kept = await raw(s.address.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n', 5_000);
  assert.match(kept.text, /^HTTP\/1\.1 200 /);
  assert.ok(kept.closedAfterMs < 2_000, `an idle keep-alive socket lived ${kept.closedAfterMs} ms`);
});
