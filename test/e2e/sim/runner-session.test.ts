import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createRunnerLab, readDiag, TS } from './runner-harness.js';

/** Shortened simulator timings (simulator-only env vars, see src/sim/runner/listener.ts). */
const FAST = {
  RUNNER_SIM_SESSION_CONFLICT_RETRY_SECONDS: '0.2',
  RUNNER_SIM_SESSION_CONFLICT_TOTAL_SECONDS: '0.6',
  RUNNER_SIM_RECONNECT_DELAY_SECONDS: '0.2',
};

test('a registration gone before the session exists: "no longer exists" then exit 1 (404), or the invalid_client text (401); files kept', async () => {
  const rl = await createRunnerLab();
  try {
    const { agentId, encoded } = rl.broker.jitRunner();
    rl.broker.deleteRunner(agentId);
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    const { code } = await proc.exited;
    assert.equal(code, 1, 'session 404 (TaskAgentNotFoundException) is a TerminatedError');
    assert.match(proc.err(), /^The runner no longer exists on the server\. Please reconfigure the runner\.\nFailed to create session\. /m);
    assert.ok(existsSync(path.join(rl.root, '.runner')), 'files stay when the session could not be created');

    const second = await createRunnerLab();
    try {
      const other = second.broker.jitRunner();
      second.broker.forgetClient(other.agentId);
      const p2 = second.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: other.encoded });
      assert.equal((await p2.exited).code, 1, 'session 401 is a TerminatedError');
      assert.match(
        p2.err(),
        /^Failed to create a session\. The runner registration has been deleted from the server, please re-configure\./m,
      );
      assert.doesNotMatch(p2.err(), /no longer exists/);
    } finally {
      await second.dispose();
    }
  } finally {
    await rl.dispose();
  }
});

test('a session conflict is retried and then ends with exit 5', async () => {
  const rl = await createRunnerLab();
  try {
    const { agentId, encoded } = rl.broker.jitRunner();
    rl.broker.openConflictingSession(agentId);
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, ...FAST });
    const { code } = await proc.exited;
    assert.equal(code, 5, 'SessionConflict after the retry window');
    const conflicts = proc
      .err()
      .split('\n')
      .filter((l) => l === 'A session for this runner already exists.').length;
    assert.equal(conflicts, 4, 'one try at 0 s plus one per retry interval up to the total (0.2 s steps to 0.6 s)');
    assert.match(proc.err(), /Stop retry on SessionConflictException after retried for 1 seconds\./);
    const creates = rl.broker.events.filter((e) => e.method === 'POST' && e.path === '/_broker/sessions').length;
    assert.equal(creates, 4);
  } finally {
    await rl.dispose();
  }
});

test('a conflict that clears within the window lets the runner connect', async () => {
  const rl = await createRunnerLab();
  try {
    const { agentId, encoded } = rl.broker.jitRunner();
    const release = rl.broker.openConflictingSession(agentId);
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, ...FAST, RUNNER_SIM_SESSION_CONFLICT_TOTAL_SECONDS: '30' });
    await proc.waitFor(/A session for this runner already exists/);
    release();
    await proc.waitFor(/Listening for Jobs/);
    proc.child.kill('SIGINT');
    const { code } = await proc.exited;
    assert.equal(code, 0);
    assert.match(proc.out(), /^Exiting\.\.\.$/m, 'SIGINT prints Exiting...');
  } finally {
    await rl.dispose();
  }
});

test('the crash message is an unhandled exception: exit 2 with the error on stderr', async () => {
  const rl = await createRunnerLab();
  try {
    const { agentId, encoded } = rl.broker.jitRunner();
    rl.broker.pushMessage(agentId, { type: 'crash' });
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    const { code } = await proc.exited;
    assert.equal(code, 2, 'RetryableError');
    assert.match(proc.err(), /^An error occurred: /m);
    assert.ok(existsSync(path.join(rl.root, '.runner')), 'a crash leaves the config in place');
    assert.match(await readDiag(rl.root, 'Runner'), /ERR {2}Runner\.Listener\] SimulatedCrashError/);
  } finally {
    await rl.dispose();
  }
});

test('a registration deleted while idle makes the runner clean up its config and exit 0', async () => {
  const rl = await createRunnerLab();
  try {
    const { agentId, encoded } = rl.broker.jitRunner();
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await proc.waitFor(/Listening for Jobs/);
    rl.broker.deleteRunner(agentId);
    const { code } = await proc.exited;
    assert.equal(code, 0);
    assert.match(
      proc.err(),
      /^The runner no longer exists on the server\. Cleaning up local configuration\.$/m,
      'written with WriteError (Runner.cs)',
    );
    assert.match(proc.out(), /√ Removed \.credentials\n√ Removed \.runner/);
    assert.equal(
      rl.broker.events.some((e) => e.method === 'DELETE' && e.path.startsWith('/_broker/sessions/')),
      false,
      'after a 404 the session is not deleted (skipSessionDeletion)',
    );
    assert.equal(existsSync(path.join(rl.root, '.runner')), false);
    assert.equal(existsSync(path.join(rl.root, '.credentials_rsaparams')), false);
  } finally {
    await rl.dispose();
  }
});

test('an unreachable broker is retried until it answers, with connect error and reconnected lines', async () => {
  const rl = await createRunnerLab();
  try {
    const { encoded } = rl.broker.jitRunner();
    rl.broker.setOutage(true);
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, ...FAST });
    await proc.waitFor(new RegExp(`^${TS}: Runner connect error: .+\\. Retrying until reconnected\\.$`));
    rl.broker.setOutage(false);
    await proc.waitFor(/Listening for Jobs/);
    assert.match(proc.out(), new RegExp(`^${TS}: Runner reconnected\\.$`, 'm'), 'reconnecting after a failed session create is announced');

    // an outage while polling
    const connectErrors = (): number =>
      proc
        .err()
        .split('\n')
        .filter((l) => l.includes('Runner connect error')).length;
    rl.broker.setOutage(true);
    const deadline = Date.now() + 5_000;
    while (connectErrors() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(connectErrors(), 2, 'dropping the long poll should produce a connect error');
    await new Promise((r) => setTimeout(r, 700)); // a few retries at 0.2 s
    assert.equal(connectErrors(), 2, 'the connect error is printed once per outage, not per retry');
    rl.broker.setOutage(false);
    const job = rl.broker.enqueueJob();
    await proc.waitFor(/Job build completed with result: Succeeded/);
    assert.equal(
      proc
        .out()
        .split('\n')
        .filter((l) => /Runner reconnected\./.test(l)).length,
      2,
    );
    assert.equal((await proc.exited).code, 0);
    assert.equal(rl.broker.completions[0]?.jobId, job.jobId);
  } finally {
    await rl.dispose();
  }
});
