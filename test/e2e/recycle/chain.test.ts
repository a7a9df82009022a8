import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../../src/lib/clock.js';
import { ConfigError } from '../../../src/lib/errors.js';
import { chainProviders, createRecycler } from '../../../src/recycle/chain.js';
import { parseRecycleConfig } from '../../../src/recycle/config.js';
import type { RecycleProvider } from '../../../src/recycle/port.js';
import { never, sampleEvent } from './fixtures.js';

function fake(name: string, behaviour: 'ok' | 'fail' | 'throw' | 'hang', calls: string[]): RecycleProvider {
  return {
    name,
    recycle(_event, signal) {
      calls.push(name);
      if (behaviour === 'ok') return Promise.resolve({ provider: name, ok: true, detail: `${name} accepted` });
      if (behaviour === 'fail') return Promise.resolve({ provider: name, ok: false, detail: `${name} refused` });
      if (behaviour === 'throw') return Promise.reject(new Error(`${name} blew up`));
      return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    },
  };
}

test('the exit provider answers ok with the configured exit code', async () => {
  const recycler = createRecycler({ provider: 'exit', exitCode: 3 });
  const out = await recycler.recycle(sampleEvent(), never);
  assert.equal(out.ok, true, 'exit never fails');
  assert.equal(out.exitCode, 3, 'the configured exit code must reach the agent');
  assert.equal(out.attempts.length, 1);
});

test('the exit provider defaults to exit code 0', async () => {
  const out = await createRecycler({ provider: 'exit' }).recycle(sampleEvent(), never);
  assert.equal(out.exitCode, 0, 'RECYCLE_DEFAULTS.exit.exitCode changed?');
});

test('the provider none stops the agent without signalling anything', async () => {
  const out = await createRecycler({ provider: 'none' }).recycle(sampleEvent(), never);
  assert.equal(out.ok, true);
  assert.equal(out.provider, 'none');
  assert.equal(out.exitCode, undefined, 'none must not ask for an exit code');
});

test('when the first provider fails the fallback is used and both attempts are recorded', async () => {
  const calls: string[] = [];
  const clock = new ManualClock();
  const recycler = chainProviders([fake('a', 'fail', calls), fake('b', 'ok', calls), fake('c', 'ok', calls)], { clock });
  const out = await recycler.recycle(sampleEvent(), never);
  assert.equal(out.ok, true);
  assert.equal(out.provider, 'b', 'the first provider that accepts answers for the chain');
  assert.deepEqual(calls, ['a', 'b'], 'the chain must stop at the first success');
  assert.deepEqual(
    out.attempts.map((a) => [a.provider, a.ok]),
    [
      ['a', false],
      ['b', true],
    ],
  );
  assert.equal(out.attempts[0]?.startedAt, new Date(clock.now()).toISOString(), 'attempt times come from the injected clock');
});

test('when every provider fails the result is not ok and every attempt is recorded', async () => {
  const calls: string[] = [];
  const recycler = chainProviders([fake('a', 'fail', calls), fake('b', 'throw', calls), fake('c', 'fail', calls)]);
  const out = await recycler.recycle(sampleEvent(), never);
  assert.equal(out.ok, false);
  assert.equal(out.aborted, false);
  assert.deepEqual(calls, ['a', 'b', 'c'], 'a throwing provider must not stop the chain');
  assert.deepEqual(
    out.attempts.map((a) => a.provider),
    ['a', 'b', 'c'],
  );
  assert.match(out.attempts[1]?.detail ?? '', /b blew up/, 'a thrown error must be recorded, not swallowed');
  assert.match(out.detail, /every provider failed; last: c refused/);
});

test('an abort stops the chain without trying the fallbacks', async () => {
  const calls: string[] = [];
  const ac = new AbortController();
  const recycler = chainProviders([fake('a', 'hang', calls), fake('b', 'ok', calls)]);
  const pending = recycler.recycle(sampleEvent(), ac.signal);
  ac.abort();
  const out = await pending;
  assert.equal(out.ok, false);
  assert.equal(out.aborted, true, 'the outcome must say the chain was aborted');
  assert.deepEqual(calls, ['a'], 'no fallback may run after shutdown aborted the recycle');
});

test('a provider that times out on its own is a failure and the fallback still runs', async () => {
  const calls: string[] = [];
  const timesOut: RecycleProvider = {
    name: 'slow',
    recycle: () => Promise.reject(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
  };
  const out = await chainProviders([timesOut, fake('b', 'ok', calls)]).recycle(sampleEvent(), never);
  assert.equal(out.ok, true, "only the caller's signal may stop the chain");
  assert.equal(out.aborted, false);
  assert.deepEqual(calls, ['b']);
});

test('createRecycler builds the configured provider followed by its fallbacks', () => {
  const recycler = createRecycler({
    provider: 'command',
    command: ['false'],
    fallback: [
      { provider: 'shutdown', command: ['true'] },
      { provider: 'exit', exitCode: 1 },
    ],
  });
  assert.deepEqual(recycler.providers, ['command', 'shutdown', 'exit']);
});

test('a real fallback chain falls through a failing command to exit', async () => {
  const recycler = createRecycler({ provider: 'command', command: ['false'], fallback: [{ provider: 'exit', exitCode: 9 }] });
  const out = await recycler.recycle(sampleEvent(), never);
  assert.equal(out.provider, 'exit');
  assert.equal(out.exitCode, 9);
  assert.equal(out.attempts[0]?.ok, false, 'false must count as a failed command');
});

const invalid: Array<[string, unknown, RegExp]> = [
  ['an unknown provider', { provider: 'openstack' }, /config\.yaml: recycle\.provider: expected one of "none", "exit".*got "openstack"/],
  [
    'a property of another provider',
    { provider: 'exit', url: 'http://x' },
    /recycle\.url: unknown key \(expected one of: provider, fallback, exitCode\)/,
  ],
  ['a webhook without its secret file', { provider: 'webhook', url: 'http://127.0.0.1/' }, /recycle: missing required key "secretFile"/],
  ['a shutdown without an explicit command', { provider: 'shutdown' }, /recycle: missing required key "command"/],
  [
    'a fallback with its own fallback',
    { provider: 'exit', fallback: [{ provider: 'none', fallback: [] }] },
    /recycle\.fallback\[0\]\.fallback: expected no fallback inside a fallback entry/,
  ],
  ['an exit code above 255', { provider: 'exit', exitCode: 256 }, /recycle\.exitCode: expected an integer from 0 to 255, got 256/],
  ['an empty command', { provider: 'command', command: [] }, /recycle\.command: expected a non-empty argv list or command string/],
  [
    'an unknown gcp-mig action',
    { provider: 'gcp-mig', action: 'stop' },
    /recycle\.action: expected one of "delete", "recreate", got "stop"/,
  ],
  [
    'a gcp-mig group path that is not one',
    { provider: 'gcp-mig', instanceGroupManager: 'runners' },
    /recycle\.instanceGroupManager: expected projects\/P\/zones\/Z\/instanceGroupManagers\/N, got "runners"/,
  ],
];
for (const [what, config, expected] of invalid) {
  test(`the recycle section is refused for ${what}`, () => {
    assert.throws(
      () => parseRecycleConfig(config, '/etc/runner-warden/config.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, 'config problems must be ConfigError (exit 78)');
        assert.equal(err.file, '/etc/runner-warden/config.yaml');
        assert.ok(
          err.problems.some((p) => expected.test(p)),
          `problems were: ${err.problems.join(' | ')}`,
        );
        return true;
      },
    );
  });
}

test('a kubernetes provider without a pod name or API URL is refused when the recycler is built', () => {
  assert.throws(
    () => createRecycler({ provider: 'exit', fallback: [{ provider: 'kubernetes' }] }),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.problems.includes('recycle.fallback.0: podName is required (downward API metadata.name)') &&
      err.problems.includes('recycle.fallback.0: apiUrl or serviceHost is required'),
  );
});

test('the host config schema accepts a chain and the string KUBERNETES_SERVICE_PORT', () => {
  const chain = {
    provider: 'aws-asg',
    endpoint: 'http://127.0.0.1:1',
    fallback: [{ provider: 'shutdown', command: ['systemctl', 'poweroff'] }],
  };
  assert.deepEqual(parseRecycleConfig(chain), chain);
  assert.equal(
    parseRecycleConfig({ provider: 'kubernetes', servicePort: '443', podName: 'p' }).provider,
    'kubernetes',
    'KUBERNETES_SERVICE_PORT arrives as a string',
  );
});
