import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ALL_STATES } from '../../src/agent/states.js';
import { KNOWN_STATES } from '../../src/health/metrics.js';

test('the metrics know every lifecycle state (health cannot import the agent, so the list is kept twice)', () => {
  assert.deepEqual([...KNOWN_STATES].sort(), [...ALL_STATES].sort(), 'a state was added to agent/states.ts but not to health/metrics.ts');
});
