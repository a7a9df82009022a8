/**
 * How the agent handles each listener exit code of docs/runner-contract.md §2, through the real
 * simulator and the fake API.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readlink } from 'node:fs/promises';
import path from 'node:path';
import { createWorld, jobRecords, until, SIM_ENV } from './agent-world.js';
import type { JournalRecord } from '../../../src/agent/journal.js';

const ok = [{ name: 'ok', run: 'echo fine' }];

/**
 * The simulated update.sh looks for the listener's exit every 2 s (the real one's wait); 0.5 s here.
 * It still settles 1 s after that exit before it swaps bin/, so it is at work when the agent looks.
 */
const UPDATE_ENV = { ...SIM_ENV, RUNNER_SIM_UPDATE_POLL_SECONDS: '0.5' };

function events(records: JournalRecord[], name: string): Extract<JournalRecord, { type: 'event' }>[] {
  return records.filter((r): r is Extract<JournalRecord, { type: 'event' }> => r.type === 'event' && r.event === name);
}

test('exit 4 (self-update before a job) restarts the listener on the same JIT config, which then takes the job', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1, env: UPDATE_ENV } });
  t.after(() => w.dispose());
  w.onFirst('session-created', (s: { runnerId: number }) => {
    w.fake.requestUpdate(s.runnerId, '2.337.0');
    setTimeout(() => w.fake.enqueueJob({ repository: 'octo/app', steps: ok }), 1500);
  });
  const { exit, jobs } = await w.runToEnd();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobs.length, 1);
  assert.equal(jobs[0]?.result, 'Succeeded');
  assert.equal(
    jobs[0]?.cleanup.clean,
    true,
    `the updated runner was taken for tampering: ${JSON.stringify(jobs[0]?.cleanup.verify.problems)}`,
  );
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 1, 'a self-update must not cost a new registration');
});

// The fake GitHub removes the spent registration the moment the job completes; the listener still
// exits 4 with update.sh running (docs/runner-contract.md §6), and the agent must wait for it.
test('a self-update during a job (update.sh still running after the exit): the agent waits for it, records nothing the job could have rewritten, and does not reuse the host', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 2, env: UPDATE_ENV } });
  t.after(() => w.dispose());
  w.onFirst('job-started', (j: { runnerId: number }) => w.fake.requestUpdate(j.runnerId, '2.337.0'));
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'work', run: 'sleep 3' }] });
  const { jobs, records } = await w.drainWhen('quarantined');
  t.diagnostic(JSON.stringify(records.filter((r) => r.type === 'job').map((r) => ({ code: r.listenerExitCode, notes: r.notes }))));
  assert.deepEqual(
    jobs.map((j) => j.result),
    ['Succeeded'],
  );
  assert.equal(jobs[0]?.listenerExitCode, 4, 'exit 4 follows the job, update.sh still at work');
  // The runner staged bin.<v> and the root's scripts while the job ran (the job could rewrite them):
  // see test/e2e/attacks/runner-update.test.ts for a job that does.
  assert.ok(
    jobs[0]?.notes?.some((n) => /staged while the job ran.*not recorded/.test(n)),
    JSON.stringify(jobs[0]?.notes),
  );
  assert.equal(jobs[0]?.decision, 'quarantine', 'a runner the job could have rewritten must not serve the next job');
  // The agent waited for update.sh before it cleaned: the swap is complete, not cut in half.
  assert.match(await readlink(path.join(w.runnerRoot, 'bin')), /bin\.2\.337\.0$/);
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 1, 'no second registration on this host');
});

test('exit 2 (retryable) restarts the same registration after a short delay', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  w.onFirst('session-created', (s: { runnerId: number }) => {
    w.fake.crashNext(s.runnerId);
    setTimeout(() => w.fake.enqueueJob({ repository: 'octo/app', steps: ok }), 1500);
  });
  const { exit, jobs } = await w.runToEnd();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobs[0]?.result, 'Succeeded');
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 1);
});

test('a refused JIT config (exit 1) is replaced by a new registration, and the old one is deleted', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  w.fake.faults.add({
    match: { method: 'POST', path: /generate-jitconfig/ },
    times: 1,
    status: 201,
    body: {
      runner: {
        id: 9999,
        name: 'bad-jit',
        os: 'Linux',
        status: 'offline',
        busy: false,
        labels: [{ id: 1, name: 'self-hosted', type: 'read-only' }],
      },
      encoded_jit_config: '!!! not base64 !!!',
    },
  });
  w.fake.enqueueJob({ repository: 'octo/app', steps: ok });
  const { exit, records } = await w.runToEnd();
  assert.equal(exit.code, 0, exit.reason);
  const ended = events(records, 'listener-ended-without-job');
  assert.equal(ended.length, 1, 'the refused registration must be journaled');
  assert.equal(ended[0]?.detail?.exitCode, 1);
  assert.equal(jobRecords(records)[0]?.result, 'Succeeded', 'the next registration must take the job');
  assert.equal(w.fake.restCalls({ method: 'DELETE', path: /runners\/9999$/ }), 1, 'the refused registration must be deleted');
});

test('a session conflict (exit 5) replaces the registration', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  // Another session keeps the runner for longer than the listener retries (0.5 s here, 240 s for real).
  let created = 0;
  let conflict: { remove(): void } | undefined;
  w.fake.events.on('runner-created', () => {
    created += 1;
    if (created === 1) {
      conflict = w.fake.faults.add({
        match: { kind: 'broker', method: 'POST', path: /^\/sessions$/ },
        times: Infinity,
        status: 409,
        body: { code: 'SessionConflict' },
      });
    } else conflict?.remove();
  });
  w.fake.enqueueJob({ repository: 'octo/app', steps: ok });
  const { exit, records } = await w.runToEnd();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(events(records, 'listener-ended-without-job')[0]?.detail?.exitCode, 5);
  assert.equal(jobRecords(records)[0]?.result, 'Succeeded');
  assert.equal(w.fake.runners().length, 0, 'no ghost registration');
});

test('a registration deleted on the server while idle (exit 0, no job) is replaced', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  w.onFirst('session-created', (s: { runnerId: number }) => {
    setTimeout(() => {
      w.fake.deleteRunnerServerSide(s.runnerId);
      setTimeout(() => w.fake.enqueueJob({ repository: 'octo/app', steps: ok }), 500);
    }, 300);
  });
  const { exit, records } = await w.runToEnd();
  assert.equal(exit.code, 0, exit.reason);
  const ended = events(records, 'listener-ended-without-job');
  assert.equal(ended[0]?.detail?.exitCode, 0);
  assert.match(String(ended[0]?.detail?.reason), /removed on the server|without a job/);
  assert.equal(jobRecords(records)[0]?.result, 'Succeeded');
});

test('SIGKILL of the listener in the middle of a job still cleans the host and deletes the registration', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  w.fake.enqueueJob({
    repository: 'octo/app',
    steps: [
      {
        name: 'kill the listener',
        run: 'echo secret > leftover.txt; (sleep 300 &); kill -9 $(pgrep -u $(id -u) -f "Runner.Listener|listener.(ts|mjs)" | head -n 5); sleep 30',
      },
    ],
  });
  const { exit, jobs } = await w.runToEnd();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobs.length, 1);
  assert.equal(jobs[0]?.result, 'crashed');
  assert.equal(jobs[0]?.listenerSignal, 'SIGKILL');
  assert.equal(jobs[0]?.cleanup.clean, true, JSON.stringify(jobs[0]?.cleanup.verify.problems));
  await until(() => w.fake.runners().length === 0, 'the killed runner registration to be deleted');
});

test('a runner version GitHub has deprecated (exit 7) recycles the host at once instead of registering again', async (t) => {
  const w = await createWorld({ config: { recycle: { provider: 'exit', exitCode: 3 } } });
  t.after(() => w.dispose());
  w.fake.deprecateRunnerVersionsBelow('99.0.0');
  w.fake.enqueueJob({ repository: 'octo/app', steps: ok });
  const { exit, records, jobs } = await w.runToEnd();
  assert.equal(exit.code, 3, `the exit provider's code: ${exit.reason}`);
  assert.match(exit.reason, /recycled \(runner-version-deprecated: v2\.\d+\.\d+ is refused by GitHub\)/);
  assert.equal(jobs.length, 0);
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 1, 'registering again cannot help: one registration, no retries');
  assert.equal(w.fake.runners().length, 0, 'the refused registration must be deleted');
  const ended = events(records, 'listener-ended-without-job');
  assert.equal(ended.length, 1);
  assert.equal(
    ended[0]?.detail?.exitCode,
    7,
    'the agent asks the listener for exit 7 (ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE)',
  );
  assert.match(String(ended[0]?.detail?.reason), /runner version 2\.\d+\.\d+ deprecated \(exit 7\)/);
  assert.equal(ended[0]?.detail?.decision, 'recycle');
  const recycle = events(records, 'recycle');
  assert.match(String(recycle[0]?.detail?.reason), /^runner-version-deprecated: /);
});

test('the wired metrics start every lifecycle state and every configured provider at 0', async (t) => {
  const w = await createWorld({
    config: { recycle: { provider: 'exit', exitCode: 3, fallback: [{ provider: 'command', command: ['true'] }] } },
  });
  t.after(() => w.dispose());
  const rt = await w.runtime();
  t.after(() => rt.close());
  const text = await rt.metrics.render();
  for (const s of ['boot', 'preflight', 'idle', 'job-running', 'cleaning', 'verifying', 'quarantined', 'stopped']) {
    assert.match(
      text,
      new RegExp(`^runner_warden_state\\{state="${s}"\\} 0$`, 'm'),
      `state ${s} must have a series before it is first entered`,
    );
  }
  for (const p of ['exit', 'command']) {
    assert.match(text, new RegExp(`^runner_warden_recycle_failures_total\\{provider="${p}"\\} 0$`, 'm'), `provider ${p}`);
    assert.match(text, new RegExp(`^runner_warden_recycles_total\\{reason="runner-version-deprecated",provider="${p}"\\} 0$`, 'm'));
  }
});
