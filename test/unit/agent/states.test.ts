import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertTransition, IllegalTransitionError } from '../../../src/agent/states.js';

test('the happy path of the lifecycle is made of legal edges', () => {
  const path = ['boot', 'preflight', 'registering', 'idle', 'job-running', 'cleaning', 'verifying', 'deciding', 'registering'] as const;
  for (let i = 1; i < path.length; i++) assertTransition(path[i - 1]!, path[i]!);
});

test('a host that is running a job cannot go back to registering without cleaning', () => {
  assert.throws(() => assertTransition('job-running', 'registering'), IllegalTransitionError);
});

test('a quarantined host can never be registered again', () => {
  assert.throws(() => assertTransition('quarantined', 'registering'), IllegalTransitionError);
});

test('a verified cleanup cannot skip the decision', () => {
  assert.throws(() => assertTransition('verifying', 'registering'), IllegalTransitionError);
});
