/**
 * The agent's fetch over node:http (src/github/http-fetch.ts) answers as Octokit expects of a
 * fetch, and never loads Node's own fetch client (undici). A server on loopback in this process;
 * no timers: every wait is on an event.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { Octokit } from '@octokit/core';
import { createHttpFetch } from '../../../src/github/http-fetch.js';
import { withDeadline } from '../../../src/github/deadline-fetch.js';

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A loopback server whose handler sees each request with its whole body; closed after the test. */
async function serve(
  t: { after(fn: () => Promise<void> | void): void },
  handler: (req: Seen, res: ServerResponse) => void,
): Promise<{ origin: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      seen.push(s);
      handler(s, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function client(t: { after(fn: () => void): void }) {
  const f = createHttpFetch();
  t.after(() => f.close());
  return f.fetch;
}

test('status, status text, headers and body come back as a fetch Response gives them', async (t) => {
  const { origin, seen } = await serve(t, (_req, res) => {
    res.statusMessage = 'Created';
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('X-RateLimit-Remaining', '4999');
    res.setHeader('Link', ['<a>; rel="next"', '<b>; rel="last"']);
    res.writeHead(201).end('{"id":7}');
  });
  const fetch = client(t);
  const res = await fetch(`${origin}/runners?x=1`, {
    method: 'post',
    headers: { Authorization: 'token abc', 'content-type': 'application/json' },
    body: '{"name":"r"}',
  });
  assert.equal(res.status, 201);
  assert.equal(res.statusText, 'Created');
  assert.equal(res.ok, true);
  assert.equal(res.url, `${origin}/runners?x=1`);
  assert.equal(res.headers.get('x-ratelimit-remaining'), '4999', 'names are read case-insensitively');
  assert.equal(res.headers.get('LINK'), '<a>; rel="next", <b>; rel="last"', 'a repeated field is joined with ", "');
  // Octokit builds its headers object by iterating: lower-case names.
  const asOctokit = Object.fromEntries([...res.headers]);
  assert.equal(asOctokit['content-type'], 'application/json; charset=utf-8');
  assert.equal(asOctokit['X-RateLimit-Remaining'], undefined);
  assert.deepEqual(await res.json(), { id: 7 });
  await assert.rejects(res.text(), TypeError, 'a body is read once, as a Response body is');
  assert.equal(seen[0]?.method, 'POST');
  assert.equal(seen[0]?.headers.authorization, 'token abc');
  assert.equal(seen[0]?.headers['content-length'], String(Buffer.byteLength('{"name":"r"}')));
  assert.equal(seen[0]?.body, '{"name":"r"}');
});

test('headers given as pairs or as a Headers-like object are sent; bytes bodies too', async (t) => {
  const { origin, seen } = await serve(t, (_req, res) => res.writeHead(200).end('ok'));
  const fetch = client(t);
  await fetch(`${origin}/a`, { headers: [['X-One', '1']], method: 'PUT', body: new Uint8Array([1, 2, 3]) });
  const like = { forEach: (fn: (v: string, k: string) => void) => fn('2', 'X-Two') };
  await fetch(new URL(`${origin}/b`), { headers: like as unknown as Record<string, string> });
  assert.equal(seen[0]?.headers['x-one'], '1');
  assert.equal(seen[0]?.headers['content-length'], '3');
  assert.equal(seen[1]?.headers['x-two'], '2');
  assert.equal(seen[1]?.headers['content-length'], undefined, 'no body, no length');
});

test('a 204 and a HEAD have an empty body; a gzip answer is decoded and its encoding dropped', async (t) => {
  const { origin } = await serve(t, (req, res) => {
    if (req.path === '/none') res.writeHead(204).end();
    else if (req.method === 'HEAD') res.writeHead(200, { 'content-length': '5' }).end();
    else res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'text/plain' }).end(gzipSync('hello'));
  });
  const fetch = client(t);
  assert.equal(await (await fetch(`${origin}/none`, { method: 'DELETE' })).text(), '');
  assert.equal(await (await fetch(`${origin}/h`, { method: 'HEAD' })).text(), '');
  const z = await fetch(`${origin}/z`);
  assert.equal(z.headers.get('content-encoding'), null);
  assert.equal(await z.text(), 'hello');
});

test('redirects: followed within the origin with the credential, to another origin without it, manual and error modes', async (t) => {
  const other = await serve(t, (_req, res) => res.writeHead(200).end('there'));
  const { origin, seen } = await serve(t, (req, res) => {
    if (req.path === '/moved') res.writeHead(301, { location: '/here' }).end();
    else if (req.path === '/post-303') res.writeHead(303, { location: `${other.origin}/x` }).end();
    else if (req.path === '/put-307') res.writeHead(307, { location: '/put-here' }).end();
    else if (req.path === '/loop') res.writeHead(302, { location: '/loop' }).end();
    else res.writeHead(200).end(`${req.method} ${req.path} ${req.body}`);
  });
  const fetch = client(t);
  const auth = { authorization: 'token secret' };
  const r1 = await fetch(`${origin}/moved`, { headers: auth });
  assert.equal(await r1.text(), 'GET /here ');
  assert.equal(r1.url, `${origin}/here`, 'the answer names the final URL (Octokit reads it)');
  assert.equal(seen.at(-1)?.headers.authorization, 'token secret');

  const r2 = await fetch(`${origin}/post-303`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
  assert.equal(await r2.text(), 'there');
  const away = other.seen.at(-1);
  assert.equal(away?.method, 'GET');
  assert.equal(away?.headers.authorization, undefined, 'no credential to another origin');
  assert.equal(away?.headers['content-type'], undefined);

  const r3 = await fetch(`${origin}/put-307`, { method: 'PUT', body: 'data' });
  assert.equal(await r3.text(), 'PUT /put-here data', 'a 307 keeps the method and the body');

  const manual = await fetch(`${origin}/moved`, { redirect: 'manual' });
  assert.equal(manual.status, 301);
  assert.equal(manual.headers.get('location'), '/here');
  await assert.rejects(fetch(`${origin}/moved`, { redirect: 'error' }), TypeError);
  await assert.rejects(fetch(`${origin}/loop`), (e: unknown) => e instanceof TypeError && /redirect not followed/.test(String(e.cause)));
});

test('an abort rejects with the signal reason, before the call and while the answer is pending', async (t) => {
  let hung: ServerResponse | undefined;
  const ac = new AbortController();
  const { origin } = await serve(t, (_req, res) => {
    hung = res;
    res.writeHead(200).write('partial');
    // The answer has started: now the caller gives up.
    ac.abort(new DOMException('stopped', 'AbortError'));
  });
  const fetch = client(t);
  const before = new AbortController();
  before.abort(new Error('already'));
  await assert.rejects(fetch(`${origin}/x`, { signal: before.signal }), /already/);
  await assert.rejects(fetch(`${origin}/hang`, { signal: ac.signal }), (e: unknown) => e instanceof Error && e.name === 'AbortError');
  assert.ok(hung, 'the request reached the server');
});

test('a connection cut mid-answer is a network failure: TypeError "fetch failed" with its cause', async (t) => {
  const { origin } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-length': '100' }).write('short');
    res.socket?.destroy();
  });
  await assert.rejects(
    client(t)(`${origin}/cut`),
    (e: unknown) => e instanceof TypeError && e.message === 'fetch failed' && e.cause !== undefined,
  );
});

/** Node's list of the built-in modules this process loaded (not in @types/node). */
const loadedModules = (): string[] => (process as unknown as { moduleLoadList: string[] }).moduleLoadList;

/**
 * Runs fn with Node's fetch globals replaced by getters that record a read (and give undefined):
 * reading any of them loads undici (Node's fetch client). Restored after.
 */
async function withFetchGlobalsTrapped<T>(fn: () => Promise<T>): Promise<{ value: T; touched: string[] }> {
  const names = ['fetch', 'Response', 'Headers', 'Request', 'FormData'];
  const saved = names.map((n) => [n, Object.getOwnPropertyDescriptor(globalThis, n)] as const);
  const touched: string[] = [];
  for (const n of names) {
    Object.defineProperty(globalThis, n, {
      configurable: true,
      get() {
        touched.push(n);
        return undefined;
      },
    });
  }
  try {
    return { value: await fn(), touched };
  } finally {
    for (const [n, d] of saved) {
      if (d) Object.defineProperty(globalThis, n, d);
      else Reflect.deleteProperty(globalThis, n);
    }
  }
}

test('Octokit over it (behind the deadline wrapper): data, headers and errors as with fetch, and no fetch global is read', async (t) => {
  const { origin } = await serve(t, (req, res) => {
    if (req.path === '/orgs/octo/actions/runners?per_page=1') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-ratelimit-remaining': '42' }).end('{"total_count":0,"runners":[]}');
    } else if (req.path === '/orgs/octo/actions/runners/9') res.writeHead(204).end();
    else res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"Not Found"}');
  });
  const f = createHttpFetch();
  t.after(() => f.close());
  const undiciBefore = loadedModules().some((m) => m.includes('undici'));
  const { touched } = await withFetchGlobalsTrapped(async () => {
    const octokit = new Octokit({
      baseUrl: origin,
      auth: 'tok',
      log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
      request: { fetch: withDeadline(f.fetch, 60_000), retries: 0 },
    });
    const list = await octokit.request('GET /orgs/{org}/actions/runners', { org: 'octo', per_page: 1 });
    assert.equal(list.status, 200);
    assert.deepEqual(list.data, { total_count: 0, runners: [] });
    assert.equal(list.headers['x-ratelimit-remaining'], '42');
    const del = await octokit.request('DELETE /orgs/{org}/actions/runners/{runner_id}', { org: 'octo', runner_id: 9 });
    assert.equal(del.status, 204);
    await assert.rejects(
      octokit.request('GET /orgs/{org}/actions/runner-groups', { org: 'octo' }),
      (e: unknown) => (e as { status?: number }).status === 404 && (e as Error).message.startsWith('Not Found'),
    );
  });
  assert.deepEqual(touched, [], "a fetch global was read (it loads Node's fetch client, undici)");
  // Where nothing had loaded it before (Node 20: the test's own ES import of node:http does on 26).
  if (!undiciBefore) assert.ok(!loadedModules().some((m) => m.includes('undici')), 'undici was loaded');
});
