/**
 * Every call the agent makes to a cloud API, a metadata server, the Kubernetes API or a webhook
 * has a deadline that fires: each recycle provider is pointed at a server that never answers (one
 * that accepts and stays silent, one that sends its headers and then stalls the body) and must
 * give up with a failure, so the fallback chain and the agent go on. The GitHub client's own
 * deadline has its test beside the adapter (test/e2e/github/deadline.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { deadline } from '../../../src/lib/deadline.js';
import { createProvider } from '../../../src/recycle/chain.js';
import type { RecycleProviderConfig } from '../../../src/recycle/config.js';
import type { RecycleEvent } from '../../../src/recycle/port.js';
import { startFakeAws } from '../../../src/sim/aws/fake-aws.js';
import { startFakeAzure } from '../../../src/sim/azure/fake-azure.js';
import { startFakeGcp } from '../../../src/sim/gcp/fake-gcp.js';

/** Each try's deadline in these tests: short, so a provider with retries still ends within seconds. */
const DEADLINE_S = 0.3;
/** Far below the hour the black hole would hold a call; generous for two loaded cores (retries included). */
const MUST_END_MS = 20_000;

type Stall = 'silent' | 'headers-then-stall';

/** A TCP server that reads every request and never finishes an answer; closes its sockets on dispose. */
async function blackHole(stall: Stall): Promise<{ url: string; accepted: () => number; close: () => Promise<void> }> {
  const socks = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    socks.add(s);
    s.on('error', () => {});
    s.on('close', () => socks.delete(s));
    s.once('data', () => {
      if (stall === 'headers-then-stall') s.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    accepted: () => accepted,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const event: RecycleEvent = {
  reason: 'max-jobs',
  host: 'host-1',
  runnerName: 'host-1-1',
  runnerId: 1,
  team: 'ci',
  jobsServed: 1,
  at: '2026-01-01T00:00:00.000Z',
  idempotencyKey: 'host-1:boot-1:recycle',
};

const awsCredentials = { accessKeyId: 'AKIDFAKEDEADLINETEST', secretAccessKey: 'fake-secret-for-tests' };

/** One provider and the part of it that talks to the silent server. */
interface Case {
  name: string;
  /** Builds the config with `hole` as the stalled endpoint; may start a fake for the other endpoint. */
  config: (hole: string, dir: string, later: (f: () => Promise<void>) => void) => Promise<RecycleProviderConfig>;
}

const CASES: Case[] = [
  {
    name: 'webhook: the receiver',
    config: async (hole, dir) => {
      const secretFile = path.join(dir, 'secret');
      await writeFile(secretFile, 'hook-secret\n', { mode: 0o600 });
      return { provider: 'webhook', url: `${hole}/recycle`, secretFile, maxAttempts: 2, initialBackoffMs: 10, timeoutSeconds: DEADLINE_S };
    },
  },
  {
    name: 'kubernetes: the API server',
    config: async (hole, dir) => {
      const tokenFile = path.join(dir, 'token');
      await writeFile(tokenFile, 'sa-token\n', { mode: 0o600 });
      return { provider: 'kubernetes', apiUrl: hole, podName: 'runner-0', namespace: 'ci', tokenFile, timeoutSeconds: DEADLINE_S };
    },
  },
  {
    name: 'aws-asg: the instance metadata service',
    config: (h) =>
      Promise.resolve({ provider: 'aws-asg', imdsEndpoint: h, endpoint: 'http://127.0.0.1:9', imdsTimeoutSeconds: DEADLINE_S }),
  },
  {
    name: 'aws-asg: the Auto Scaling API',
    config: async (h, _dir, later) => {
      const fake = await startFakeAws({ accessKeyId: awsCredentials.accessKeyId });
      later(() => fake.close());
      return { provider: 'aws-asg', imdsEndpoint: fake.url, endpoint: h, maxAttempts: 2, timeoutSeconds: DEADLINE_S };
    },
  },
  {
    name: 'gcp-mig: the metadata server',
    config: (h) =>
      Promise.resolve({
        provider: 'gcp-mig',
        metadataEndpoint: h,
        computeEndpoint: 'http://127.0.0.1:9',
        metadataTimeoutSeconds: DEADLINE_S,
      }),
  },
  {
    name: 'gcp-mig: the Compute API',
    config: async (h, _dir, later) => {
      const fake = await startFakeGcp({});
      later(() => fake.close());
      return { provider: 'gcp-mig', metadataEndpoint: fake.url, computeEndpoint: h, timeoutSeconds: DEADLINE_S };
    },
  },
  {
    name: 'azure-vmss: the instance metadata service',
    config: (h) =>
      Promise.resolve({
        provider: 'azure-vmss',
        imdsEndpoint: h,
        managementEndpoint: 'http://127.0.0.1:9',
        imdsTimeoutSeconds: DEADLINE_S,
      }),
  },
  {
    name: 'azure-vmss: Resource Manager',
    config: async (h, _dir, later) => {
      const fake = await startFakeAzure({});
      later(() => fake.close());
      return { provider: 'azure-vmss', imdsEndpoint: fake.url, managementEndpoint: h, timeoutSeconds: DEADLINE_S };
    },
  },
];

for (const stall of ['silent', 'headers-then-stall'] as const) {
  for (const c of CASES) {
    test(`${c.name} never answering (${stall}): the provider gives up at its deadline and reports a failure`, async (t) => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-deadline-'));
      const h = await blackHole(stall);
      const disposers: (() => Promise<void>)[] = [];
      t.after(async () => {
        for (const f of disposers) await f().catch(() => {});
        await h.close();
        await rm(dir, { recursive: true, force: true });
      });
      const config = await c.config(h.url, dir, (f) => disposers.push(f));
      const provider = createProvider(config, { awsCredentials });
      const started = Date.now();
      const out = await Promise.race([
        provider.recycle(event, new AbortController().signal),
        new Promise<'hung'>((r) => setTimeout(() => r('hung'), MUST_END_MS).unref()),
      ]);
      const took = Date.now() - started;
      assert.notEqual(out, 'hung', `${c.name}: the call was still waiting after ${MUST_END_MS} ms: its deadline never fired`);
      if (out === 'hung') return;
      assert.ok(h.accepted() > 0, `${c.name}: the silent server was never called, so this test proves nothing`);
      assert.equal(out.ok, false, `${c.name}: a call nobody answered cannot be a success: ${out.detail}`);
      assert.ok(took < MUST_END_MS, `${c.name} took ${took} ms`);
    });
  }
}

test('a deadline combined with a caller signal still fires after a garbage collection (Node 20 drops AbortSignal.timeout inside AbortSignal.any)', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const fires = (make: () => AbortSignal): Promise<boolean> =>
    new Promise((resolve) => {
      make().addEventListener('abort', () => resolve(true));
      setTimeout(gc, 20);
      setTimeout(gc, 60);
      setTimeout(() => resolve(false), 2_000);
    });
  const caller = new AbortController();
  // The platform's own combination is what this guards against; if it ever fires, the helper is still right.
  const platform = await fires(() => AbortSignal.any([caller.signal, AbortSignal.timeout(150)]));
  const ours = await fires(() => deadline(150, caller.signal).signal);
  assert.equal(ours, true, 'lib/deadline: the deadline was collected and never fired');
  if (!platform) {
    // Where the platform loses it, no source may combine the two directly.
    const offenders = readdirSync('src', { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && f !== path.join('lib', 'deadline.ts'))
      .filter((f) => /AbortSignal\.any\([^;]*AbortSignal\.timeout\(/s.test(readFileSync(path.join('src', f), 'utf8')));
    assert.deepEqual(offenders, [], 'these sources combine AbortSignal.timeout inside AbortSignal.any: use lib/deadline.ts');
  }
});
