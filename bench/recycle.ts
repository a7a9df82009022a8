/**
 * Figure: "verified cleanup → recycle signal sent" ≤ 1 s, for each provider against its
 * loopback fake. Each row prints the recycler's latency (first call, then median and p95 of warm
 * calls) beside a bare round trip to the same fake measured in the same run (for command/shutdown,
 * a bare spawn of `true`), and the ratio of the two medians.
 *
 *   node --import tsx bench/recycle.ts [iterations]
 */
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ManualClock } from '../src/lib/clock.js';
import { runCommand } from '../src/lib/process.js';
import { createRecycler } from '../src/recycle/chain.js';
import type { RecycleChainConfig } from '../src/recycle/config.js';
import { httpRequest } from '../src/recycle/http.js';
import type { RecycleEvent } from '../src/recycle/port.js';
import { signBody } from '../src/recycle/webhook.js';
import { startFakeAws } from '../src/sim/aws/fake-aws.js';
import { startFakeAzure } from '../src/sim/azure/fake-azure.js';
import { startFakeGcp } from '../src/sim/gcp/fake-gcp.js';
import { startFakeK8s } from '../src/sim/k8s/fake-k8s.js';
import { startWebhookReceiver } from '../src/sim/webhook/receiver.js';

/** Warm iterations per row; small, the machine is shared. */
const ITERATIONS = Number(process.argv[2] ?? 30);
/** The target for "verified cleanup → recycle signal sent". */
const TARGET_MS = 1_000;
const credentials = { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret' };
const never = new AbortController().signal;

function event(i: number): RecycleEvent {
  return {
    reason: 'max-jobs',
    host: 'bench-host',
    team: 'bench',
    jobsServed: 1,
    at: new Date().toISOString(),
    idempotencyKey: `bench-${i}-${Math.random()}`,
  };
}

function stats(samples: number[]): { median: number; p95: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { median: at(0.5), p95: at(0.95) };
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

interface Row {
  name: string;
  first: number;
  median: number;
  p95: number;
  baseline: number;
  baselineWhat: string;
}

/** Runs `recycle` once cold and ITERATIONS times warm, and `baseline` ITERATIONS times. */
async function measure(
  name: string,
  baselineWhat: string,
  recycle: (i: number) => Promise<void>,
  baseline: () => Promise<unknown>,
): Promise<Row> {
  const first = await time(() => recycle(0));
  const warm: number[] = [];
  const base: number[] = [];
  for (let i = 1; i <= ITERATIONS; i++) {
    warm.push(await time(() => recycle(i)));
    base.push(await time(baseline));
  }
  return { name, first, ...stats(warm), baseline: stats(base).median, baselineWhat };
}

function mustOk(out: { ok: boolean; detail: string }): void {
  if (!out.ok) throw new Error(`recycle failed in the bench: ${out.detail}`);
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-bench-recycle-'));
  const rows: Row[] = [];
  try {
    // exit: in process, no far side.
    {
      const r = createRecycler({ provider: 'exit', exitCode: 0 });
      rows.push(
        await measure(
          'exit',
          'none (in process)',
          async (i) => mustOk(await r.recycle(event(i), never)),
          async () => {},
        ),
      );
    }
    // command and shutdown: one spawn of the configured command.
    const spawnTrue = () => runCommand('true', [], { timeoutMs: 5_000 });
    for (const cfg of [
      { provider: 'command', command: ['true'] },
      { provider: 'shutdown', command: ['true'] },
    ] as RecycleChainConfig[]) {
      const r = createRecycler(cfg);
      rows.push(await measure(cfg.provider, 'spawn of true', async (i) => mustOk(await r.recycle(event(i), never)), spawnTrue));
    }
    // aws-asg: IMDSv2 (3 requests) + the SDK call(s); the group is reset before each run.
    {
      const fake = await startFakeAws({ accessKeyId: credentials.accessKeyId, instanceId: 'i-0bench' });
      const reset = (min: number): void => {
        fake.group.instances.set('i-0bench', { health: 'Healthy', terminating: false, lifecycleState: 'InService' });
        fake.group.min = min;
        fake.group.desired = 1;
      };
      const r = createRecycler(
        // scalerOwnsSize: the full three-step chain (decrement, without, Unhealthy) is what is timed.
        { provider: 'aws-asg', imdsEndpoint: fake.url, endpoint: fake.url, maxAttempts: 1, scalerOwnsSize: true },
        { awsCredentials: credentials },
      );
      const bare = () =>
        httpRequest(`${fake.url}/latest/api/token`, {
          method: 'PUT',
          headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' },
          timeoutMs: 5_000,
        });
      for (const [label, min, failWithout] of [
        ['aws-asg (decrement)', 0, false],
        ['aws-asg (at min: 2 steps)', 1, false],
        ['aws-asg (3 steps: Unhealthy)', 1, true],
      ] as const) {
        rows.push(
          await measure(
            label,
            'IMDS token PUT',
            async (i) => {
              reset(min);
              if (failWithout)
                fake.failNext({
                  action: 'TerminateInstanceInAutoScalingGroup',
                  when: { ShouldDecrementDesiredCapacity: 'false' },
                  code: 'ScalingActivityInProgress',
                });
              mustOk(await r.recycle(event(i), never));
            },
            bare,
          ),
        );
      }
      await fake.close();
    }
    // gcp-mig and aws-asg with a termination hook: the same instance again on every run (reset).
    {
      const fake = await startFakeGcp();
      const r = createRecycler({ provider: 'gcp-mig', metadataEndpoint: fake.url, computeEndpoint: fake.url });
      const bare = () =>
        httpRequest(`${fake.url}/computeMetadata/v1/instance/name`, {
          method: 'GET',
          headers: { 'metadata-flavor': 'Google' },
          timeoutMs: 5_000,
        });
      rows.push(
        await measure(
          'gcp-mig (5 metadata + 1 API)',
          'metadata GET',
          async (i) => {
            fake.group.instances.set('runner-abc1', { status: 'RUNNING' });
            mustOk(await r.recycle(event(i), never));
          },
          bare,
        ),
      );
      await fake.close();
    }
    {
      const fake = await startFakeAzure();
      const r = createRecycler({ provider: 'azure-vmss', imdsEndpoint: fake.url, managementEndpoint: fake.url });
      const bare = () =>
        httpRequest(`${fake.url}/metadata/instance/compute?api-version=2021-02-01`, {
          method: 'GET',
          headers: { metadata: 'true' },
          timeoutMs: 5_000,
        });
      rows.push(
        await measure(
          'azure-vmss (2 IMDS + 1 ARM)',
          'IMDS GET',
          async (i) => {
            fake.scaleSet.instances.set('3', { state: 'Running' });
            mustOk(await r.recycle(event(i), never));
          },
          bare,
        ),
      );
      await fake.close();
    }
    {
      const fake = await startFakeAws({ accessKeyId: credentials.accessKeyId, instanceId: 'i-0hook', terminationHooks: ['drain'] });
      const r = createRecycler(
        { provider: 'aws-asg', imdsEndpoint: fake.url, endpoint: fake.url, maxAttempts: 1, lifecycleHookName: 'drain' },
        { awsCredentials: credentials },
      );
      const bare = () =>
        httpRequest(`${fake.url}/latest/api/token`, {
          method: 'PUT',
          headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' },
          timeoutMs: 5_000,
        });
      rows.push(
        await measure(
          'aws-asg (scale-in: hook)',
          'IMDS token PUT',
          async (i) => {
            fake.group.instances.set('i-0hook', { health: 'Healthy', terminating: false, lifecycleState: 'InService' });
            fake.scaleIn('i-0hook');
            mustOk(await r.recycle(event(i), never));
          },
          bare,
        ),
      );
      await fake.close();
    }
    // kubernetes: one DELETE; a distinct pod per run because a deleted pod stays deleted.
    {
      const token = 'bench-token';
      const fake = await startFakeK8s({ token, pods: Array.from({ length: ITERATIONS + 1 }, (_, i) => `bench/pod-${i}`) });
      await writeFile(path.join(root, 'token'), token, { mode: 0o600 });
      const recyclers = Array.from({ length: ITERATIONS + 1 }, (_, i) =>
        createRecycler({
          provider: 'kubernetes',
          apiUrl: fake.url,
          namespace: 'bench',
          podName: `pod-${i}`,
          tokenFile: path.join(root, 'token'),
        }),
      );
      const bare = () =>
        httpRequest(`${fake.url}/api/v1/namespaces/bench/pods/absent`, {
          method: 'DELETE',
          headers: { authorization: `Bearer ${token}` },
          timeoutMs: 5_000,
        });
      rows.push(
        await measure('kubernetes', 'DELETE (404) round trip', async (i) => mustOk(await recyclers[i]!.recycle(event(i), never)), bare),
      );
      await fake.close();
    }
    // webhook: one signed POST (secret file read each time, as in production).
    {
      const secret = 'bench-webhook-secret';
      const rx = await startWebhookReceiver({ secret });
      const secretFile = path.join(root, 'webhook.secret');
      await writeFile(secretFile, secret, { mode: 0o600 });
      const r = createRecycler({ provider: 'webhook', url: rx.url, secretFile }, { clock: ManualClock.instant() });
      let n = 0;
      const bare = () => {
        const body = JSON.stringify(event(-1 - n++));
        return httpRequest(rx.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-runner-warden-signature': signBody(secret, body),
            'idempotency-key': `bare-${n}`,
          },
          body,
          timeoutMs: 5_000,
        });
      };
      rows.push(await measure('webhook', 'signed POST round trip', async (i) => mustOk(await r.recycle(event(i), never)), bare));
      await rx.close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }

  const f = (ms: number): string => (Number.isFinite(ms) ? ms.toFixed(2).padStart(8) : '       -');
  console.log(`verified cleanup → recycle signal sent (target ≤ ${TARGET_MS} ms), ${ITERATIONS} warm runs each, loopback fakes`);
  console.log(
    `${'provider'.padEnd(30)} ${'first ms'.padStart(8)} ${'med ms'.padStart(8)} ${'p95 ms'.padStart(8)} | ${'base ms'.padStart(8)} ${'ratio'.padStart(7)}  baseline  target`,
  );
  for (const r of rows) {
    const ratio = r.baseline > 0.001 ? `${(r.median / r.baseline).toFixed(1)}x` : '-';
    const verdict = Math.max(r.first, r.p95) <= TARGET_MS ? 'ok' : 'MISSED';
    console.log(
      `${r.name.padEnd(30)} ${f(r.first)} ${f(r.median)} ${f(r.p95)} | ${f(r.baseline)} ${ratio.padStart(7)}  ${r.baselineWhat}  ${verdict}`,
    );
  }
}

await main();
