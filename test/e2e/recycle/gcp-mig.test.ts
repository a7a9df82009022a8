import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gcpMigProvider, groupFromCreatedBy } from '../../../src/recycle/gcp-mig.js';
import { createRecycler } from '../../../src/recycle/chain.js';
import type { GcpMigRecycleConfig } from '../../../src/recycle/config.js';
import { startFakeGcp, type FakeGcp, type FakeGcpOptions } from '../../../src/sim/gcp/fake-gcp.js';
import { never, sampleEvent } from './fixtures.js';

async function withFake(opts: FakeGcpOptions, fn: (fake: FakeGcp, config: GcpMigRecycleConfig) => Promise<void>): Promise<void> {
  const fake = await startFakeGcp(opts);
  try {
    await fn(fake, { provider: 'gcp-mig', metadataEndpoint: fake.url, computeEndpoint: fake.url });
  } finally {
    await fake.close();
  }
}

const computeCalls = (fake: FakeGcp): string[] =>
  fake.calls.filter((c) => c.service === 'compute').map((c) => `${c.method} ${c.path} ${c.status}`);

test('when a scaler owns the size the VM asks its managed instance group to delete it, found through the metadata server', async () => {
  await withFake({}, async (fake, config) => {
    const out = await gcpMigProvider({ ...config, scalerOwnsSize: true }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(
      computeCalls(fake),
      ['POST /compute/v1/projects/my-project/zones/us-central1-a/instanceGroupManagers/runners/deleteInstances 200'],
      'the group comes from created-by, with the project id rather than its number',
    );
    const call = fake.calls.find((c) => c.service === 'compute');
    assert.deepEqual(call?.body, {
      instances: ['projects/my-project/zones/us-central1-a/instances/runner-abc1'],
      skipInstancesOnValidationError: true,
    });
    assert.equal(fake.group.targetSize, 1, 'deleteInstances shrinks the group');
    assert.equal(fake.group.instances.get('runner-abc1')?.status, 'DELETING');
    assert.match(out.detail, /^runner-abc1 in runners: deleteInstances accepted \(operation operation-/);
    assert.doesNotMatch(out.detail, new RegExp(fake.token), 'the token never appears in a detail');
    const meta = fake.calls.filter((c) => c.service === 'metadata');
    assert.ok(
      meta.every((c) => c.status === 200),
      'every metadata read must carry Metadata-Flavor: Google (the fake answers 403 without)',
    );
  });
});

test('recreate keeps the group size and replaces the VM; a regional group works the same', async () => {
  await withFake({ regional: true }, async (fake, config) => {
    const out = await gcpMigProvider({ ...config, action: 'recreate' }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(computeCalls(fake), [
      'POST /compute/v1/projects/my-project/regions/us-central1/instanceGroupManagers/runners/recreateInstances 200',
    ]);
    assert.equal(fake.group.targetSize, 2);
    assert.equal(fake.group.instances.get('runner-abc1')?.status, 'RECREATING');
  });
});

test('an API refusal fails the provider with the error in the detail, so a fallback runs', async () => {
  await withFake({}, async (fake, config) => {
    fake.failNext(
      403,
      'PERMISSION_DENIED',
      "Required 'compute.instanceGroupManagers.update' permission for 'projects/my-project/zones/us-central1-a/instanceGroupManagers/runners'",
    );
    const recycler = createRecycler({ ...config, fallback: [{ provider: 'exit', exitCode: 9 }] });
    const out = await recycler.recycle(sampleEvent(), never);
    assert.equal(out.ok, true, 'the fallback carried it out');
    assert.equal(out.provider, 'exit');
    assert.equal(out.exitCode, 9);
    assert.equal(fake.group.targetSize, 2);
    const direct = await gcpMigProvider(config).recycle(sampleEvent(), never);
    assert.equal(direct.ok, true, 'the failure was one call only');
    fake.failNext(403, 'PERMISSION_DENIED', "Required 'compute.instanceGroupManagers.update' permission");
    const failed = await gcpMigProvider(config).recycle(sampleEvent(), never);
    assert.equal(failed.ok, false);
    assert.match(
      failed.detail,
      /recreateInstances: HTTP 403 PERMISSION_DENIED: Required 'compute\.instanceGroupManagers\.update' permission/,
    );
  });
});

test('a VM no group created, or no metadata server, fails without calling the API', async () => {
  await withFake({ noCreatedBy: true }, async (fake, config) => {
    const out = await gcpMigProvider(config).recycle(sampleEvent(), never);
    assert.equal(out.ok, false);
    assert.match(out.detail, /created-by: HTTP 404/);
    assert.deepEqual(computeCalls(fake), []);
  });
  const out = await gcpMigProvider({ provider: 'gcp-mig', metadataEndpoint: 'http://127.0.0.1:9', metadataTimeoutSeconds: 1 }).recycle(
    sampleEvent(),
    never,
  );
  assert.equal(out.ok, false);
  assert.match(out.detail, /^identity from the metadata server: HttpNetworkError/);
});

test('configured identity skips the metadata server except for the token', async () => {
  await withFake({}, async (fake, config) => {
    const out = await gcpMigProvider({
      ...config,
      project: 'my-project',
      zone: 'us-central1-a',
      instanceName: 'runner-abc1',
      instanceGroupManager: 'projects/my-project/zones/us-central1-a/instanceGroupManagers/runners',
    }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(
      fake.calls.filter((c) => c.service === 'metadata').map((c) => c.path),
      ['/computeMetadata/v1/instance/service-accounts/default/token'],
    );
  });
});

test('created-by names zonal and regional groups; anything else is not a group', () => {
  assert.equal(
    groupFromCreatedBy('projects/1234/zones/europe-west1-b/instanceGroupManagers/ci', 'acme-ci'),
    'projects/acme-ci/zones/europe-west1-b/instanceGroupManagers/ci',
  );
  assert.equal(
    groupFromCreatedBy('projects/1234/regions/europe-west1/instanceGroupManagers/ci', 'acme-ci'),
    'projects/acme-ci/regions/europe-west1/instanceGroupManagers/ci',
  );
  assert.equal(groupFromCreatedBy('projects/1234/zones/europe-west1-b/instances/x', 'acme-ci'), undefined);
});
