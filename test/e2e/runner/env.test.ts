/** The listener's environment (src/runner/env.ts): nothing configured can stand in for a listener argument. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildListenerEnv } from '../../../src/runner/env.js';
import { configShEnv } from '../../../src/runner/token-registration.js';

const dirs = { home: '/j/home', tmp: '/j/tmp', dockerConfig: '/j/docker' };
const hooks = { startedScript: '/h/started.sh', completedScript: '/h/completed.sh' } as Parameters<typeof buildListenerEnv>[0]['hooks'];

test('runner.env entries named ACTIONS_RUNNER_INPUT_* in any case never reach the listener (it matches the prefix in any case)', () => {
  const extra = {
    ACTIONS_RUNNER_INPUT_ONCE: 'true',
    actions_runner_input_jitconfig: 'forged',
    Actions_Runner_Input_Url: 'https://evil.example',
    HTTPS_PROXY: 'http://proxy:3128',
  };
  const env = buildListenerEnv({ user: { name: 'runner' }, dirs, hooks, jitConfig: 'real', extra });
  assert.deepEqual(
    Object.keys(env).filter((k) => k.toUpperCase().startsWith('ACTIONS_RUNNER_INPUT_')),
    ['ACTIONS_RUNNER_INPUT_JITCONFIG'],
  );
  assert.equal(env.ACTIONS_RUNNER_INPUT_JITCONFIG, 'real');
  assert.equal(env.HTTPS_PROXY, 'http://proxy:3128', 'other entries pass');
  const cfg = configShEnv({ user: { name: 'runner' }, home: '/h', tmp: '/t', extra });
  assert.deepEqual(
    Object.keys(cfg).filter((k) => /^actions_runner_input_/i.test(k)),
    [],
  );
});
