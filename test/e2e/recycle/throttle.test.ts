import { test } from 'node:test';
import assert from 'node:assert/strict';
import { awsAsgProvider } from '../../../src/recycle/aws-asg.js';
import { azureVmssProvider } from '../../../src/recycle/azure-vmss.js';
import { gcpMigProvider } from '../../../src/recycle/gcp-mig.js';
import type { RecycleProvider } from '../../../src/recycle/port.js';
import { THROTTLE_DEFAULTS } from '../../../src/recycle/throttle.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { seededRandom } from '../../../src/lib/backoff.js';
import { startFakeAws } from '../../../src/sim/aws/fake-aws.js';
import { startFakeAzure } from '../../../src/sim/azure/fake-azure.js';
import { startFakeGcp } from '../../../src/sim/gcp/fake-gcp.js';
import { never, sampleEvent } from './fixtures.js';

/** Two calls at once, then one a second: the third host of three recycled together is refused. */
const RATE = { burst: 2, perSecond: 1 };
const HOSTS = 3;

interface Cloud {
  name: string;
  /** Starts the fake with RATE on `clock`: one provider per host, the fake's refused calls (status first) and its count of throttling answers. */
  start(
    clock: ManualClock,
  ): Promise<{ providers: RecycleProvider[]; refusals: () => string[]; throttled: () => number; close: () => Promise<void> }>;
  /** The least wait the API imposed on a refused call (Retry-After), in ms. */
  imposedMs: number;
}

const deps = (clock: ManualClock, i: number) => ({ clock, random: seededRandom(i + 1) });

const clouds: Cloud[] = [
  {
    name: 'aws-asg against Auto Scaling (400 Throttling)',
    imposedMs: 0,
    async start(clock) {
      const ids = ['i-0a1', 'i-0a2', 'i-0a3'];
      const fake = await startFakeAws({
        instanceId: ids[0],
        moreInstances: ids.slice(1),
        rate: RATE,
        clock,
        group: { name: 'runners', min: 0, desired: 3, max: 5 },
      });
      const credentials = { accessKeyId: 'AKIDFAKETHROTTLE', secretAccessKey: 'fake' };
      return {
        providers: ids.map((instanceId, i) =>
          awsAsgProvider({ provider: 'aws-asg', endpoint: fake.url, region: 'eu-west-1', instanceId }, { credentials, ...deps(clock, i) }),
        ),
        refusals: () => fake.calls.filter((c) => c.status !== 200).map((c) => `${c.status} ${c.action ?? ''}`),
        throttled: () => fake.throttled(),
        close: () => fake.close(),
      };
    },
  },
  {
    name: 'gcp-mig against Compute Engine (429 rateLimitExceeded)',
    imposedMs: 0,
    async start(clock) {
      const names = ['runner-a1', 'runner-a2', 'runner-a3'];
      const fake = await startFakeGcp({ instanceName: names[0], moreInstances: names.slice(1), rate: RATE, clock });
      const group = 'projects/my-project/zones/us-central1-a/instanceGroupManagers/runners';
      return {
        providers: names.map((instanceName, i) =>
          gcpMigProvider(
            {
              provider: 'gcp-mig',
              metadataEndpoint: fake.url,
              computeEndpoint: fake.url,
              project: 'my-project',
              zone: 'us-central1-a',
              instanceName,
              instanceGroupManager: group,
            },
            deps(clock, i),
          ),
        ),
        refusals: () => fake.calls.filter((c) => c.service === 'compute' && c.status !== 200).map((c) => String(c.status)),
        throttled: () => fake.throttled(),
        close: () => fake.close(),
      };
    },
  },
  {
    name: 'azure-vmss against Resource Manager (429 with Retry-After)',
    imposedMs: 1000,
    async start(clock) {
      const ids = ['1', '2', '3'];
      const fake = await startFakeAzure({ instanceId: ids[0], moreInstances: ids.slice(1), rate: RATE, clock });
      const where = { subscriptionId: '00000000-1111-2222-3333-444444444444', resourceGroup: 'ci', scaleSet: 'runners' };
      return {
        providers: ids.map((instanceId, i) =>
          azureVmssProvider(
            { provider: 'azure-vmss', imdsEndpoint: fake.url, managementEndpoint: fake.url, ...where, instanceId },
            deps(clock, i),
          ),
        ),
        refusals: () => fake.calls.filter((c) => c.service === 'arm' && c.status !== 202).map((c) => String(c.status)),
        throttled: () => fake.throttled(),
        close: () => fake.close(),
      };
    },
  },
];

for (const cloud of clouds) {
  test(`${cloud.name}: the fake refuses past its rate and the refused host backs off with full jitter until it is admitted`, async () => {
    const clock = new ManualClock();
    const world = await cloud.start(clock);
    try {
      // Time moves only when a refused host sleeps; the fake's bucket refills on the same clock.
      clock.onSleep = (ms) => setImmediate(() => clock.advance(ms));
      const results = await Promise.all(world.providers.map((p, i) => p.recycle(sampleEvent({ host: `h${i}` }), never)));
      for (const r of results) assert.equal(r.ok, true, `every host is recycled in the end: ${r.detail}`);
      assert.ok(world.throttled() >= 1, `${HOSTS} calls at once against a burst of ${RATE.burst}: the fake must refuse one`);
      assert.equal(world.refusals().length, world.throttled(), `the refusals are the throttling answers: ${world.refusals().join(', ')}`);
      assert.ok(
        world.refusals().every((s) => s.startsWith(cloud.name.includes('aws') ? '400' : '429')),
        world.refusals().join(', '),
      );
      const refused = results.filter((r) => /throttled \d+x/.test(r.detail));
      assert.equal(
        refused.length,
        HOSTS - RATE.burst,
        `the refused host says so in its detail: ${results.map((r) => r.detail).join(' | ')}`,
      );
      // Every wait is the API's Retry-After kept whole plus full jitter under the doubling envelope.
      assert.equal(clock.sleeps.length, world.throttled(), 'one wait per throttling answer');
      clock.sleeps.forEach((ms, n) => {
        const envelope = Math.min(THROTTLE_DEFAULTS.maxMs, THROTTLE_DEFAULTS.baseMs * 2 ** n);
        assert.ok(
          ms >= cloud.imposedMs && ms <= cloud.imposedMs + envelope,
          `wait ${n} of ${ms} ms lies outside [${cloud.imposedMs}, ${cloud.imposedMs + envelope}]`,
        );
      });
    } finally {
      await world.close();
    }
  });
}
