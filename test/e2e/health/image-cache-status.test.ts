/** The image cache on /status and `runner-warden status`: up, down with the reason, and full. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatStatus } from '../../../src/cli/status.js';
import { imageCacheStatus, probeMirror } from '../../../src/engine/mirror-probe.js';
import type { StatusSnapshot } from '../../../src/health/snapshot.js';
import type { HostSample } from '../../../src/health/host-figures.js';
import { agentPolicy, createWorld, until } from '../agent/agent-world.js';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

async function serve(handler: http.RequestListener): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A port nothing listens on: one a server had and gave back. */
async function closedPort(): Promise<string> {
  const s = await serve(() => {});
  await s.close();
  return s.url;
}

function snapshot(host: HostSample): StatusSnapshot {
  return {
    state: 'idle',
    stateSince: new Date().toISOString(),
    loopAlive: true,
    quarantined: false,
    jobsServed: 0,
    policy: { team: 't' },
    host,
    agent: { version: 'test', pid: 1, startedAt: new Date().toISOString(), uptimeSeconds: 1 },
  };
}

test('the probe: any registry answer is up (a 401 too), a refused connection and a hung registry are down with the reason', async (t) => {
  const paths: string[] = [];
  const auth = await serve((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' });
    res.end();
  });
  t.after(() => auth.close());
  assert.deepEqual(await probeMirror(`${auth.url}/`), { url: `${auth.url}/`, up: true });
  assert.deepEqual(paths, ['/v2/'], 'the probe reads the registry API root');

  const refused = await closedPort();
  const down = await probeMirror(refused);
  assert.equal(down.up, false);
  assert.match(down.error ?? '', /ECONNREFUSED/);

  const hung = await serve(() => {}); // accepts and never answers
  t.after(() => hung.close());
  const started = Date.now();
  const slow = await probeMirror(hung.url, undefined, 300);
  assert.equal(slow.up, false);
  assert.match(slow.error ?? '', /no answer within 300 ms/);
  assert.ok(Date.now() - started < 5_000, 'the probe gives up at its timeout');

  assert.deepEqual(await probeMirror('not a url'), { url: 'not a url', up: false, error: 'not a URL' });
});

test('the status command shows the cache up with its size against the cap, full, and down with what engines do then', async (t) => {
  const up = await serve((_req, res) => res.end('{}'));
  t.after(() => up.close());
  const totals = {
    sweeps: 1,
    prunedBlobs: 0,
    prunedBytes: 0,
    last: { bytes: 3 * 1024 ** 3, blobs: 40, capBytes: 2 * 1024 ** 3, prunedBlobs: 0, prunedBytes: 0, staleUploads: 0, overCap: true },
  };
  const full = await imageCacheStatus(up.url, totals);
  assert.deepEqual(full, { url: up.url, up: true, full: true, bytes: 3 * 1024 ** 3, capBytes: 2 * 1024 ** 3 });
  const at = new Date().toISOString();
  assert.match(
    formatStatus(snapshot({ updatedAt: at, imageCache: full }), Date.now()),
    /^image cache: +up \(.*\), 3\.0 GiB of 2\.0 GiB cap; FULL/m,
  );

  const down = await imageCacheStatus(await closedPort(), undefined);
  const text = formatStatus(snapshot({ updatedAt: at, imageCache: down }), Date.now());
  assert.match(text, /^image cache: +DOWN \(http:\/\/127\.0\.0\.1:\d+\): ECONNREFUSED.*engines pull from the upstream directly$/m);
  assert.doesNotMatch(formatStatus(snapshot({ updatedAt: at }), Date.now()), /image cache/, 'no cache named: no row');
});

test('an agent whose policy names a cache that is down says so in /status, not only in /metrics', async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  const mirror = await closedPort();
  await writeFile(path.join(w.policyDir, 'test.yaml'), JSON.stringify(agentPolicy(w.lab, { docker: { mode: 'none', mirror } })));
  const rt = await w.runtime();
  t.after(() => rt.close());
  type Status = { host?: { imageCache?: { url: string; up: boolean; error?: string } } };
  const readStatus = async (): Promise<Status> =>
    (await (await fetch(`http://127.0.0.1:${rt.health?.address.port}/status`)).json()) as Status;
  await until(async () => (await readStatus()).host?.imageCache !== undefined, 'the first host sample in /status');
  const cache = (await readStatus()).host?.imageCache;
  assert.equal(cache?.url, mirror);
  assert.equal(cache?.up, false);
  assert.match(cache?.error ?? '', /ECONNREFUSED/);
});
