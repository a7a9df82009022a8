import { test } from 'node:test';
import assert from 'node:assert/strict';
import { azureVmssProvider, vmssFromResourceId } from '../../../src/recycle/azure-vmss.js';
import { parseRecycleConfig, type AzureVmssRecycleConfig } from '../../../src/recycle/config.js';
import { startFakeAzure, type FakeAzure, type FakeAzureOptions } from '../../../src/sim/azure/fake-azure.js';
import { never, sampleEvent } from './fixtures.js';

async function withFake(opts: FakeAzureOptions, fn: (fake: FakeAzure, config: AzureVmssRecycleConfig) => Promise<void>): Promise<void> {
  const fake = await startFakeAzure(opts);
  try {
    await fn(fake, { provider: 'azure-vmss', imdsEndpoint: fake.url, managementEndpoint: fake.url });
  } finally {
    await fake.close();
  }
}

const armCalls = (fake: FakeAzure): string[] =>
  fake.calls.filter((c) => c.service === 'arm').map((c) => `${c.method} ${c.path} ${c.status}`);
const SET =
  '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/ci/providers/Microsoft.Compute/virtualMachineScaleSets/runners';

test('when a scaler owns the size the VM asks its scale set to delete it, found through IMDS with a managed-identity token', async () => {
  await withFake({}, async (fake, config) => {
    const out = await azureVmssProvider({ ...config, scalerOwnsSize: true }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(armCalls(fake), [`POST ${SET}/delete 202`]);
    const call = fake.calls.find((c) => c.service === 'arm');
    assert.deepEqual(call?.body, { instanceIds: ['3'] });
    assert.match(call?.query['api-version'] ?? '', /^\d{4}-\d{2}-\d{2}$/);
    assert.equal(fake.scaleSet.capacity, 1, 'delete shrinks the scale set');
    assert.equal(out.detail, 'instance 3 of runners: delete accepted (HTTP 202)');
    const token = fake.calls.find((c) => c.path === '/metadata/identity/oauth2/token');
    assert.equal(token?.query.resource, `${fake.url}/`, 'the token is for Resource Manager');
    assert.ok(
      fake.calls.filter((c) => c.service === 'imds').every((c) => c.status === 200),
      'IMDS needs Metadata: true (the fake answers 400 without)',
    );
  });
});

test('reimage keeps the instance and its capacity; a user-assigned identity is asked by client id', async () => {
  await withFake({}, async (fake, config) => {
    const clientId = '99999999-8888-7777-6666-555555555555';
    const out = await azureVmssProvider({ ...config, action: 'reimage', identityClientId: clientId }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(armCalls(fake), [`POST ${SET}/virtualMachines/3/reimage 202`]);
    assert.equal(fake.scaleSet.capacity, 2);
    assert.equal(fake.scaleSet.instances.get('3')?.state, 'Reimaging');
    assert.equal(fake.calls.find((c) => c.path === '/metadata/identity/oauth2/token')?.query.client_id, clientId);
  });
});

test('a refusal from Resource Manager fails with its code and message; no scale set or no IMDS fails before any call', async () => {
  await withFake({}, async (fake, config) => {
    fake.failNext(
      403,
      'AuthorizationFailed',
      "The client does not have authorization to perform action 'Microsoft.Compute/virtualMachineScaleSets/delete/action'.",
    );
    const out = await azureVmssProvider(config).recycle(sampleEvent(), never);
    assert.equal(out.ok, false);
    assert.match(out.detail, /^instance 3 of runners: reimage: HTTP 403 AuthorizationFailed: The client does not have authorization/);
    assert.doesNotMatch(out.detail, new RegExp(fake.token));
  });
  await withFake({ standalone: true }, async (fake, config) => {
    const out = await azureVmssProvider(config).recycle(sampleEvent(), never);
    assert.equal(out.ok, false);
    assert.match(out.detail, /not an instance of a Uniform scale set/);
    assert.deepEqual(armCalls(fake), []);
  });
  const out = await azureVmssProvider({ provider: 'azure-vmss', imdsEndpoint: 'http://127.0.0.1:9', imdsTimeoutSeconds: 1 }).recycle(
    sampleEvent(),
    never,
  );
  assert.equal(out.ok, false);
  assert.match(out.detail, /^identity from IMDS: HttpNetworkError/);
});

test('resource ids of Uniform instances parse; the two providers keep their own action values', () => {
  assert.deepEqual(vmssFromResourceId(`${SET}/virtualMachines/12`), {
    subscriptionId: '00000000-1111-2222-3333-444444444444',
    resourceGroup: 'ci',
    scaleSet: 'runners',
    instanceId: '12',
  });
  assert.equal(vmssFromResourceId('/subscriptions/x/resourceGroups/ci/providers/Microsoft.Compute/virtualMachines/vm1'), undefined);
  assert.equal(parseRecycleConfig({ provider: 'azure-vmss', action: 'reimage' }).provider, 'azure-vmss');
  assert.equal(parseRecycleConfig({ provider: 'gcp-mig', action: 'recreate' }).provider, 'gcp-mig');
  for (const bad of [
    { provider: 'azure-vmss', action: 'recreate' },
    { provider: 'gcp-mig', action: 'reimage' },
  ]) {
    assert.throws(
      () => parseRecycleConfig(bad),
      (err: unknown) =>
        (err as { problems?: string[] }).problems?.some((p) => /^recycle\.action: expected one of "delete", "re/.test(p)) === true,
      JSON.stringify(bad),
    );
  }
});
