/** Spot interruption and Auto Scaling lifecycle notices from IMDS start a drain that recycles the host. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorld, jobRecords, until } from './agent-world.js';
import { startFakeAws } from '../../../src/sim/aws/fake-aws.js';
import { watchInterruptions, type InterruptionNotice } from '../../../src/recycle/interruptions.js';
import { systemClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';

test('the IMDS watcher stays quiet while in service and reports a spot notice with its deadline', async (t) => {
  const aws = await startFakeAws();
  t.after(() => aws.close());
  const ac = new AbortController();
  const notices: InterruptionNotice[] = [];
  const watching = watchInterruptions({
    endpoint: aws.url,
    intervalMs: 20,
    clock: systemClock,
    log: silentLogger(),
    signal: ac.signal,
    onNotice: (n) => notices.push(n),
  });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(notices.length, 0, 'InService and no spot notice must not drain');
  aws.metadata['spot/instance-action'] = JSON.stringify({ action: 'terminate', time: '2030-01-01T00:00:00Z' });
  await watching;
  ac.abort();
  assert.deepEqual(notices, [{ kind: 'spot', detail: 'terminate', deadlineAt: Date.parse('2030-01-01T00:00:00Z') }]);
  assert.ok(
    aws.calls.some((c) => c.method === 'PUT'),
    'IMDSv2 needs a session token first',
  );
});

test('a spot notice while busy gives the job until the deadline minus the margin, then cancels, cleans and recycles', async (t) => {
  const aws = await startFakeAws();
  t.after(() => aws.close());
  const w = await createWorld({
    config: {
      interruptions: { imds: true, imdsUrl: aws.url, intervalSeconds: 1 },
      recycle: { provider: 'exit', exitCode: 0 },
    },
    // Room for the worker to stop on a loaded machine; the deadline below sets this much aside too.
    timeouts: { listenerStopGraceMs: 15_000 },
  });
  t.after(() => w.dispose());
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'long', run: 'sleep 600' }] });
  const rt = await w.runtime();
  const running = rt.agent.run(AbortSignal.timeout(150_000));
  await until(() => rt.agent.snapshot().state === 'job-running', 'the job to start');
  // Two minutes' notice as AWS gives; 36 s here so the 20 s margin and the 15 s stop grace leave the job one second.
  aws.metadata['spot/instance-action'] = JSON.stringify({ action: 'terminate', time: new Date(Date.now() + 36_000).toISOString() });
  const exit = await running;
  await rt.close();
  const jobs = jobRecords(await w.journal());
  assert.equal(jobs[0]?.result, 'Canceled');
  assert.equal(jobs[0]?.cleanup.clean, true);
  assert.equal(jobs[0]?.decision, 'recycle');
  assert.equal(exit.code, 0, exit.reason);
  assert.match(exit.reason, /recycled/);
  await until(() => w.fake.runners().length === 0, 'no registration left');
});

test('an Auto Scaling lifecycle transition while idle deregisters at once and recycles', async (t) => {
  const aws = await startFakeAws();
  t.after(() => aws.close());
  const w = await createWorld({
    config: {
      interruptions: { imds: true, imdsUrl: aws.url, intervalSeconds: 1 },
      recycle: { provider: 'exit', exitCode: 3 },
    },
  });
  t.after(() => w.dispose());
  const rt = await w.runtime();
  const running = rt.agent.run(AbortSignal.timeout(150_000));
  await until(() => rt.agent.snapshot().state === 'idle' && w.fake.runners().length === 1, 'an idle runner');
  aws.metadata['autoscaling/target-lifecycle-state'] = 'Terminated';
  const exit = await running;
  await rt.close();
  assert.equal(exit.code, 3, `the exit provider's code: ${exit.reason}`);
  assert.equal(w.fake.runners().length, 0, 'the idle registration must be gone before the host goes');
  assert.equal(jobRecords(await w.journal()).length, 0);
  const events = (await w.journal()).filter((r) => r.type === 'event').map((r) => (r as { event: string }).event);
  assert.ok(events.includes('recycle'), `journal events: ${events.join(', ')}`);
});

test('a scale-in held by a termination hook is drained, deregistered and released with CompleteLifecycleAction', async (t) => {
  const aws = await startFakeAws({ terminationHooks: ['runner-drain'] });
  t.after(() => aws.close());
  // The SDK's default credential chain reads these first (on EC2 it would be the instance role).
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_ACCESS_KEY_ID = 'AKIDINTERRUPTIONTEST';
  process.env.AWS_SECRET_ACCESS_KEY = 'fake-secret';
  t.after(() => {
    for (const [k, v] of [
      ['AWS_ACCESS_KEY_ID', saved.id],
      ['AWS_SECRET_ACCESS_KEY', saved.secret],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const w = await createWorld({
    config: {
      interruptions: { imds: true, imdsUrl: aws.url, intervalSeconds: 1 },
      recycle: { provider: 'aws-asg', imdsEndpoint: aws.url, endpoint: aws.url, maxAttempts: 1, lifecycleHookName: 'runner-drain' },
    },
  });
  t.after(() => w.dispose());
  const rt = await w.runtime();
  const running = rt.agent.run(AbortSignal.timeout(150_000));
  await until(() => rt.agent.snapshot().state === 'idle' && w.fake.runners().length === 1, 'an idle runner');
  aws.scaleIn();
  const exit = await running;
  await rt.close();
  assert.match(exit.reason, /recycled/);
  assert.equal(w.fake.runners().length, 0, 'the idle registration must be gone before the host goes');
  const actions = aws.calls.filter((c) => c.service === 'autoscaling').map((c) => `${c.action}:${c.status}`);
  assert.deepEqual(
    actions,
    ['DescribeAutoScalingInstances:200', 'CompleteLifecycleAction:200'],
    'no terminate call for a host already being scaled in',
  );
  assert.equal(
    aws.group.instances.get('i-0fake0000000000001')?.lifecycleState,
    'Terminating:Proceed',
    'the hook must not be left to time out',
  );
});
