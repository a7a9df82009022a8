/**
 * Pools keep their size (docs/pools.md): the cloud providers replace a recycled host and never
 * lower the pool's size unless the config says a scaler owns it. Each case goes through the path
 * the agent takes (parseRecycleConfig → createRecycler) against the provider's fake cloud API.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { createRecycler } from '../../../src/recycle/chain.js';
import { parseRecycleConfig } from '../../../src/recycle/config.js';
import { ConfigError } from '../../../src/lib/errors.js';
import { startFakeAws } from '../../../src/sim/aws/fake-aws.js';
import { startFakeGcp } from '../../../src/sim/gcp/fake-gcp.js';
import { startFakeAzure } from '../../../src/sim/azure/fake-azure.js';
import { never, sampleEvent } from './fixtures.js';

const credentials = { accessKeyId: 'AKIDFAKEPOOLSTEST', secretAccessKey: 'fake-secret-for-tests' };

/** Recycles once through the configured chain; returns the pool size before and after. */
async function recycleOnce(
  provider: 'aws-asg' | 'gcp-mig' | 'azure-vmss',
  extra: Record<string, unknown>,
): Promise<{ before: number; after: number; detail: string }> {
  if (provider === 'aws-asg') {
    const fake = await startFakeAws({ accessKeyId: credentials.accessKeyId, group: { name: 'runners', min: 0, desired: 4, max: 8 } });
    try {
      const config = parseRecycleConfig({ provider, imdsEndpoint: fake.url, endpoint: fake.url, maxAttempts: 1, ...extra });
      const out = await createRecycler(config, { awsCredentials: credentials }).recycle(sampleEvent(), never);
      assert.equal(out.ok, true, out.detail);
      return { before: 4, after: fake.group.desired, detail: out.detail };
    } finally {
      await fake.close();
    }
  }
  if (provider === 'gcp-mig') {
    const fake = await startFakeGcp({ targetSize: 4 });
    try {
      const config = parseRecycleConfig({ provider, metadataEndpoint: fake.url, computeEndpoint: fake.url, ...extra });
      const out = await createRecycler(config).recycle(sampleEvent(), never);
      assert.equal(out.ok, true, out.detail);
      return { before: 4, after: fake.group.targetSize, detail: out.detail };
    } finally {
      await fake.close();
    }
  }
  const fake = await startFakeAzure({ capacity: 4 });
  try {
    const config = parseRecycleConfig({ provider, imdsEndpoint: fake.url, managementEndpoint: fake.url, ...extra });
    const out = await createRecycler(config).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    return { before: 4, after: fake.scaleSet.capacity, detail: out.detail };
  } finally {
    await fake.close();
  }
}

const PROVIDERS = ['aws-asg', 'gcp-mig', 'azure-vmss'] as const;
/** What each default does, as its detail says. */
const KEEPS: Record<(typeof PROVIDERS)[number], RegExp> = {
  'aws-asg': /terminate without decrement: accepted/,
  'gcp-mig': /recreateInstances accepted/,
  'azure-vmss': /reimage accepted/,
};

for (const provider of PROVIDERS) {
  test(`${provider} by default replaces the host and the pool keeps its size`, async () => {
    const r = await recycleOnce(provider, {});
    assert.match(r.detail, KEEPS[provider]);
    assert.equal(r.after, r.before, `${provider} shrank a pool nobody said a scaler owns`);
  });

  test(`${provider} with scalerOwnsSize: true takes the host out and the pool shrinks by one`, async () => {
    const r = await recycleOnce(provider, { scalerOwnsSize: true });
    assert.equal(r.after, r.before - 1, `${provider} should leave the size to the scaler: ${r.detail}`);
  });

  test(`${provider} with scalerOwnsSize: false says so explicitly and keeps the size`, async () => {
    const r = await recycleOnce(provider, { scalerOwnsSize: false });
    assert.equal(r.after, r.before);
  });
}

test('gcp-mig recreate and azure-vmss reimage keep the size even when a scaler owns it', async () => {
  assert.equal((await recycleOnce('gcp-mig', { scalerOwnsSize: true, action: 'recreate' })).after, 4);
  assert.equal((await recycleOnce('azure-vmss', { scalerOwnsSize: true, action: 'reimage' })).after, 4);
});

test('an action that shrinks the pool without scalerOwnsSize is refused, naming the file and the field', () => {
  const cases: Array<[unknown, string]> = [
    [{ provider: 'gcp-mig', action: 'delete' }, 'recycle.action: expected recreate (the pool keeps its size): delete shrinks the pool'],
    [
      { provider: 'azure-vmss', action: 'delete', scalerOwnsSize: false },
      'recycle.action: expected reimage (the pool keeps its size): delete shrinks the pool',
    ],
    [
      { provider: 'shutdown', command: ['true'], fallback: [{ provider: 'exit' }, { provider: 'gcp-mig', action: 'delete' }] },
      'recycle.fallback[1].action: expected recreate (the pool keeps its size): delete shrinks the pool',
    ],
  ];
  for (const [raw, expected] of cases) {
    assert.throws(
      () => parseRecycleConfig(raw, '/etc/runner-warden/config.yaml'),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.file === '/etc/runner-warden/config.yaml' &&
        err.message.includes('/etc/runner-warden/config.yaml') &&
        err.problems.some((p) => p.startsWith(`/etc/runner-warden/config.yaml: ${expected}`) && p.includes('scalerOwnsSize: true')),
      JSON.stringify(raw),
    );
  }
  assert.equal(parseRecycleConfig({ provider: 'gcp-mig', action: 'delete', scalerOwnsSize: true }).provider, 'gcp-mig');
  assert.equal(parseRecycleConfig({ provider: 'azure-vmss', action: 'delete', scalerOwnsSize: true }).provider, 'azure-vmss');
});

test('scalerOwnsSize must be a boolean and belongs to the cloud pool providers only', () => {
  for (const raw of [
    { provider: 'aws-asg', scalerOwnsSize: 'yes' },
    { provider: 'kubernetes', scalerOwnsSize: true },
    { provider: 'aws-asg', decrementDesiredCapacity: true },
  ]) {
    assert.throws(() => parseRecycleConfig(raw), ConfigError, JSON.stringify(raw));
  }
});

test('every example of docs/pools.md is a valid config, and keeps or shrinks the pool as the page says', async () => {
  const page = await readFile(new URL('../../../docs/pools.md', import.meta.url), 'utf8');
  const examples = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map(
    (m) => (parseYaml(m[1] as string) as { recycle: Record<string, unknown> }).recycle,
  );
  assert.deepEqual([...new Set(examples.map((e) => e.provider))].sort(), [...PROVIDERS].sort(), 'an example of each cloud pool provider');
  for (const example of examples) {
    assert.doesNotThrow(() => parseRecycleConfig(example, 'docs/pools.md'), JSON.stringify(example));
    // The fallback is never run here: a shutdown provider's command would power the machine off.
    const { provider, fallback: _fallback, ...rest } = example;
    const r = await recycleOnce(provider as (typeof PROVIDERS)[number], rest);
    if (rest.scalerOwnsSize === true) assert.equal(r.after, r.before - 1, JSON.stringify(example));
    else assert.equal(r.after, r.before, `${JSON.stringify(example)} shrank the pool: ${r.detail}`);
  }
});
