import { test } from 'node:test';
import assert from 'node:assert/strict';
import { awsAsgProvider } from '../../../src/recycle/aws-asg.js';
import type { AwsAsgRecycleConfig } from '../../../src/recycle/config.js';
import { startFakeAws, type FakeAws, type FakeAwsOptions } from '../../../src/sim/aws/fake-aws.js';
import { never, sampleEvent } from './fixtures.js';

const credentials = { accessKeyId: 'AKIDFAKERECYCLETEST', secretAccessKey: 'fake-secret-for-tests' };

async function withFake(opts: FakeAwsOptions, fn: (fake: FakeAws, config: AwsAsgRecycleConfig) => Promise<void>): Promise<void> {
  const fake = await startFakeAws({ accessKeyId: credentials.accessKeyId, ...opts });
  try {
    // maxAttempts 1: the fake's answers are final, the SDK's own retries would only slow the test.
    await fn(fake, { provider: 'aws-asg', imdsEndpoint: fake.url, endpoint: fake.url, maxAttempts: 1 });
  } finally {
    await fake.close();
  }
}

const asgActions = (fake: FakeAws) =>
  fake.calls
    .filter((c) => c.service === 'autoscaling')
    .map((c) => `${c.action}${c.params.ShouldDecrementDesiredCapacity ? `(${c.params.ShouldDecrementDesiredCapacity})` : ''}:${c.status}`);

test('by default the instance is terminated without a decrement: the group keeps its size and replaces the host', async () => {
  await withFake({ instanceId: 'i-0abc', group: { name: 'runners', min: 0, desired: 2, max: 5 } }, async (fake, config) => {
    const out = await awsAsgProvider(config, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(asgActions(fake), ['TerminateInstanceInAutoScalingGroup(false):200']);
    assert.equal(fake.group.desired, 2, 'a recycle must not shrink a pool nobody said a scaler owns');
    assert.equal(fake.group.instances.get('i-0abc')?.terminating, true);
    assert.match(out.detail, /^i-0abc: terminate without decrement: accepted$/);
  });
});

test('when a scaler owns the size the instance is terminated with a capacity decrement above the group minimum', async () => {
  await withFake({ instanceId: 'i-0abc', group: { name: 'runners', min: 0, desired: 2, max: 5 } }, async (fake, config) => {
    const out = await awsAsgProvider({ ...config, scalerOwnsSize: true }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(asgActions(fake), ['TerminateInstanceInAutoScalingGroup(true):200']);
    assert.equal(fake.calls.find((c) => c.service === 'autoscaling')?.params.InstanceId, 'i-0abc', 'the id must come from IMDS');
    assert.equal(fake.group.desired, 1, 'the decrement must shrink the pool');
    assert.match(out.detail, /^i-0abc: terminate with decrement: accepted$/);
  });
});

test('instance id and region are read through IMDSv2 with a session token', async () => {
  await withFake({ region: 'ap-southeast-2' }, async (fake, config) => {
    await awsAsgProvider(config, { credentials }).recycle(sampleEvent(), never);
    const imds = fake.calls.filter((c) => c.service === 'imds').map((c) => `${c.method} ${c.path} ${c.status}`);
    assert.deepEqual(
      imds,
      ['PUT /latest/api/token 200', 'GET /latest/meta-data/instance-id 200', 'GET /latest/meta-data/placement/region 200'],
      'IMDSv2 is token first, then the token on every GET (the fake answers 401 without it)',
    );
    const call = fake.calls.find((c) => c.service === 'autoscaling');
    assert.equal(call?.signingRegion, 'ap-southeast-2', 'the SDK must sign for the region IMDS reported');
  });
});

test('at the group minimum the decrement is refused and the instance is terminated without it', async () => {
  await withFake({ group: { name: 'runners', min: 1, desired: 1, max: 5 } }, async (fake, config) => {
    const out = await awsAsgProvider({ ...config, scalerOwnsSize: true }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(asgActions(fake), ['TerminateInstanceInAutoScalingGroup(true):400', 'TerminateInstanceInAutoScalingGroup(false):200']);
    assert.equal(fake.group.desired, 1, 'without decrement the group must keep its size and replace the host');
    assert.match(out.detail, /terminate with decrement: ValidationError: Currently, desiredSize equals minSize/);
    assert.match(out.detail, /terminate without decrement: accepted/);
  });
});

test('when the termination without decrement fails the instance is marked Unhealthy, and the size stays', async () => {
  await withFake({ instanceId: 'i-0def', group: { name: 'runners', min: 0, desired: 3, max: 5 } }, async (fake, config) => {
    fake.failNext({
      action: 'TerminateInstanceInAutoScalingGroup',
      code: 'ScalingActivityInProgress',
      message: 'Scaling activity is in progress.',
    });
    const out = await awsAsgProvider(config, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(asgActions(fake), ['TerminateInstanceInAutoScalingGroup(false):400', 'SetInstanceHealth:200']);
    assert.equal(fake.group.desired, 3);
    assert.equal(fake.group.instances.get('i-0def')?.health, 'Unhealthy');
  });
});

test('when a scaler owns the size and both terminations fail the instance is marked Unhealthy', async () => {
  await withFake({ instanceId: 'i-0def', group: { name: 'runners', min: 1, desired: 1, max: 5 } }, async (fake, config) => {
    fake.failNext({
      action: 'TerminateInstanceInAutoScalingGroup',
      when: { ShouldDecrementDesiredCapacity: 'false' },
      code: 'ScalingActivityInProgress',
      message: 'Scaling activity is in progress and blocks this action.',
    });
    const out = await awsAsgProvider({ ...config, scalerOwnsSize: true }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(asgActions(fake), [
      'TerminateInstanceInAutoScalingGroup(true):400',
      'TerminateInstanceInAutoScalingGroup(false):400',
      'SetInstanceHealth:200',
    ]);
    const health = fake.calls.find((c) => c.action === 'SetInstanceHealth')?.params;
    assert.equal(health?.HealthStatus, 'Unhealthy');
    assert.equal(health?.ShouldRespectGracePeriod, 'false', 'a grace period would only delay the replacement');
    assert.equal(fake.group.instances.get('i-0def')?.health, 'Unhealthy');
  });
});

test('when every step of the chain fails the result is not ok and names each step', async () => {
  await withFake({ group: { name: 'runners', min: 1, desired: 1, max: 5 } }, async (fake, config) => {
    fake.failNext({ action: 'TerminateInstanceInAutoScalingGroup', code: 'ScalingActivityInProgress', times: 2 });
    fake.failNext({ action: 'SetInstanceHealth', code: 'ResourceContention', message: 'busy' });
    const out = await awsAsgProvider({ ...config, scalerOwnsSize: true }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, false);
    assert.equal(asgActions(fake).length, 3, 'all three steps must have been tried');
    assert.match(
      out.detail,
      /terminate with decrement: ScalingActivityInProgress.*terminate without decrement: ScalingActivityInProgress.*set Unhealthy: ResourceContention(Fault)?: busy/,
    );
  });
});

test('a configured instance id and region skip IMDS entirely', async () => {
  await withFake({ instanceId: 'i-0aaa' }, async (fake, config) => {
    const { imdsEndpoint: _unused, ...rest } = config;
    const out = await awsAsgProvider(
      { ...rest, imdsEndpoint: 'http://127.0.0.1:9', instanceId: 'i-0aaa', region: 'us-east-1' },
      { credentials },
    ).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.equal(fake.calls.filter((c) => c.service === 'imds').length, 0, 'IMDS must not be asked');
  });
});

test('an unreachable IMDS fails the provider without calling Auto Scaling', async () => {
  await withFake({}, async (fake, config) => {
    const out = await awsAsgProvider({ ...config, imdsEndpoint: 'http://127.0.0.1:9', imdsTimeoutSeconds: 1 }, { credentials }).recycle(
      sampleEvent(),
      never,
    );
    assert.equal(out.ok, false);
    assert.match(out.detail, /^instance identity from IMDSv2: HttpNetworkError/);
    assert.equal(fake.calls.length, 0);
  });
});

test('credentials the API refuses fail every step', async () => {
  await withFake({}, async (fake, config) => {
    const out = await awsAsgProvider(config, { credentials: { accessKeyId: 'AKIDWRONG', secretAccessKey: 'x' } }).recycle(
      sampleEvent(),
      never,
    );
    assert.equal(out.ok, false);
    assert.match(out.detail, /InvalidClientTokenId/);
    assert.equal(fake.group.instances.get('i-0fake0000000000001')?.terminating, false);
  });
});

test('with a lifecycle hook, a host the group is scaling in is released with CompleteLifecycleAction', async () => {
  await withFake({ instanceId: 'i-0hook', terminationHooks: ['drain-runner'] }, async (fake, config) => {
    fake.scaleIn();
    const out = await awsAsgProvider({ ...config, lifecycleHookName: 'drain-runner' }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(
      asgActions(fake),
      ['DescribeAutoScalingInstances:200', 'CompleteLifecycleAction:200'],
      'no terminate: the group is already terminating it',
    );
    const complete = fake.calls.find((c) => c.action === 'CompleteLifecycleAction')?.params;
    assert.deepEqual(
      {
        group: complete?.AutoScalingGroupName,
        hook: complete?.LifecycleHookName,
        id: complete?.InstanceId,
        result: complete?.LifecycleActionResult,
      },
      { group: 'runners', hook: 'drain-runner', id: 'i-0hook', result: 'CONTINUE' },
      'the group name comes from DescribeAutoScalingInstances',
    );
    assert.equal(fake.group.instances.get('i-0hook')?.lifecycleState, 'Terminating:Proceed');
    assert.match(out.detail, /complete lifecycle action drain-runner \(CONTINUE\): accepted/);
  });
});

test('with a lifecycle hook, a host in service goes through the terminate chain', async () => {
  await withFake({ terminationHooks: ['drain-runner'], group: { name: 'runners', min: 0, desired: 2, max: 5 } }, async (fake, config) => {
    const out = await awsAsgProvider({ ...config, lifecycleHookName: 'drain-runner' }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(asgActions(fake), ['DescribeAutoScalingInstances:200', 'TerminateInstanceInAutoScalingGroup(false):200']);
    assert.equal(fake.group.desired, 2, 'the pool keeps its size');
    assert.equal(
      fake.group.instances.get('i-0fake0000000000001')?.lifecycleState,
      'Terminating:Wait',
      'our own termination then waits on the hook like any other',
    );
  });
});

test('a host already past its hook is left to the group, and a wrong hook name falls to the fallbacks', async () => {
  await withFake({}, async (fake, config) => {
    fake.scaleIn(); // no hook on the group: straight to Terminating
    const out = await awsAsgProvider({ ...config, lifecycleHookName: 'drain-runner' }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(asgActions(fake), ['DescribeAutoScalingInstances:200']);
    assert.match(out.detail, /already Terminating in runners/);
  });
  await withFake({ terminationHooks: ['the-real-hook'] }, async (fake, config) => {
    fake.scaleIn();
    const out = await awsAsgProvider({ ...config, lifecycleHookName: 'a-typo' }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, false, 'the instance stays held by the hook: the fallback provider must act');
    assert.match(out.detail, /complete lifecycle action a-typo \(CONTINUE\): ValidationError: No Lifecycle Hook found for a-typo/);
    assert.deepEqual(asgActions(fake), ['DescribeAutoScalingInstances:200', 'CompleteLifecycleAction:400']);
  });
});

test('when DescribeAutoScalingInstances is refused the terminate chain still runs', async () => {
  await withFake({ terminationHooks: ['drain-runner'] }, async (fake, config) => {
    fake.failNext({
      action: 'DescribeAutoScalingInstances',
      status: 403,
      code: 'AccessDenied',
      message: 'not authorized to perform: autoscaling:DescribeAutoScalingInstances',
    });
    const out = await awsAsgProvider({ ...config, lifecycleHookName: 'drain-runner' }, { credentials }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.deepEqual(asgActions(fake), ['DescribeAutoScalingInstances:403', 'TerminateInstanceInAutoScalingGroup(false):200']);
    assert.match(out.detail, /describe: AccessDenied/);
  });
});
