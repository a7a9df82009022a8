/** Draining: SIGTERM (or `runner-warden drain`) while idle and while a job runs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorld, jobRecords, until } from './agent-world.js';

test('draining while idle deletes the registration, stops the listener and exits 0', async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  const rt = await w.runtime();
  const shutdown = new AbortController();
  const running = rt.agent.run(shutdown.signal);
  await until(() => rt.agent.snapshot().state === 'idle' && w.fake.runners().some((r) => r.status === 'online'), 'an idle, online runner');
  shutdown.abort();
  const exit = await running;
  await rt.close();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(w.fake.runners().length, 0, 'the idle registration must be deleted (no offline ghost)');
  assert.equal(w.fake.restCalls({ method: 'DELETE' }), 1);
  assert.equal(jobRecords(await w.journal()).length, 0);
});

test('draining while busy lets the job finish within the grace period, then cleans and exits', async (t) => {
  const w = await createWorld({ timeouts: { drainGraceMs: 20_000 } });
  t.after(() => w.dispose());
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'slow', run: 'sleep 2; echo done > out.txt' }] });
  const { exit, jobs } = await w.drainWhen('job-running');
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobs[0]?.result, 'Succeeded', 'the job should have been allowed to finish');
  assert.equal(jobs[0]?.cleanup.clean, true);
  assert.equal(jobs[0]?.decision, 'stop');
});

test('draining while busy cancels a job that outlives the grace period, still cleaning the host', async (t) => {
  const w = await createWorld({ timeouts: { drainGraceMs: 300 } });
  t.after(() => w.dispose());
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'endless', run: 'sleep 600' }] });
  const { exit, jobs } = await w.drainWhen('job-running');
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobs[0]?.result, 'Canceled', 'the runner reports Canceled after SIGINT (docs/runner-contract.md §4)');
  assert.equal(jobs[0]?.cleanup.clean, true, JSON.stringify(jobs[0]?.cleanup.verify.problems));
  assert.ok(
    jobs[0]?.notes?.some((n) => /grace/.test(n)),
    'the journal must say the job was cancelled by the drain',
  );
  await until(() => w.fake.runners().length === 0, 'no registration left');
});
