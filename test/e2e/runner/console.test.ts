import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConsoleLine } from '../../../src/runner/console.js';

const cases: [string, ReturnType<typeof parseConsoleLine>][] = [
  ['√ Connected to GitHub', { kind: 'connected' }],
  ['2024-05-01 10:00:00Z: Listening for Jobs', { kind: 'listening' }],
  ['2024-05-01 10:00:05Z: Running job: build (linux, 20)', { kind: 'job-started', jobName: 'build (linux, 20)' }],
  ['2024-05-01 10:03:00Z: Job build completed with result: Failed', { kind: 'job-completed', jobName: 'build', result: 'Failed' }],
  ['The runner no longer exists on the server. Cleaning up local configuration.', { kind: 'runner-gone' }],
  ['The runner no longer exists on the server. Please reconfigure the runner.', { kind: 'runner-gone' }],
  [
    'Failed to create a session. The runner registration has been deleted from the server, please re-configure. Runner registrations are automatically deleted for runners that have not connected to the service recently.',
    { kind: 'runner-gone' },
  ],
  ['A session for this runner already exists.', { kind: 'session-conflict' }],
  ['Runner update in progress, do not shutdown runner.', { kind: 'update' }],
  ['Generate and execute update script.', { kind: 'update-script' }],
  ['2024-05-01 10:00:00Z: Runner connect error: refused. Retrying until reconnected.', { kind: 'connect-error' }],
  // The three spellings seen in bug reports against actions/runner.
  [
    'An error occured: Runner version v2.310.0 is deprecated and cannot receive messages.',
    { kind: 'version-deprecated', version: '2.310.0' },
  ],
  [
    'An error occurred: Runner version v2.296.2 is deprecated and cannot receive messages.',
    { kind: 'version-deprecated', version: '2.296.2' },
  ],
  [
    'An error occured: Error: Forbidden Runner version v2.316.0 is deprecated and cannot receive messages.',
    { kind: 'version-deprecated', version: '2.316.0' },
  ],
  ['Running job: no timestamp, not the listener', undefined],
  ["Current runner version: '2.336.0'", undefined],
];

for (const [line, expected] of cases) {
  test(`console line "${line.slice(0, 40)}" parses as ${expected?.kind ?? 'nothing'}`, () => {
    assert.deepEqual(parseConsoleLine(line), expected, 'the listener line formats of docs/runner-contract.md §3 changed');
  });
}
