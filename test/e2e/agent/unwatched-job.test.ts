/**
 * A job no agent watched: the agent is SIGKILLed while its listener idles, the orphaned listener
 * (still connected) takes a job and runs it to the end, and the restarted agent finds neither the
 * runner (removed after its job) nor a hook report. The runner's `_diag` trace is all that shows
 * the job: recovery must journal it exactly once. And a job the agent saw start, killed mid-job
 * and finished by the orphan, must still give exactly one record (the trace does not add another).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorld, jobRecords, until } from './agent-world.js';
import { startAgentProcess, waitForState, type AgentProcess } from '../../helpers/agent-process.js';

/** Generous on two shared cores: a listener start, a job and a recovery each take seconds. */
const STEP_MS = 60_000;

/** Stops `agent` (SIGTERM, a drain) once it is idle: its recovery is then done. */
async function drainAtIdle(agent: AgentProcess): Promise<void> {
  await agent.waitForLog((l) => l.msg === 'state' && l.to === 'idle', 'the restarted agent to be idle', STEP_MS);
  await agent.kill('SIGTERM');
}

test(
  'a job the orphaned listener ran while the agent was down is journaled once, from the runner trace',
  { timeout: 240_000 },
  async (t) => {
    const w = await createWorld();
    t.after(() => w.dispose());
    await (await w.runtime()).close(); // the home baseline
    const first = startAgentProcess(w.configFile, { logLevel: 'info' });
    t.after(() => void first.kill());
    const idle = await waitForState(w.stateDir, 'idle', { agent: first, timeoutMs: STEP_MS });
    const runnerId = idle.runner?.id;
    assert.ok(runnerId !== undefined, 'the idle agent persisted its registration');
    // The listener starts after the state says idle: killed once its session is open, it lives on.
    await until(() => w.fake.runners().some((r) => r.id === runnerId && r.status === 'online'), 'the listener to connect', STEP_MS);
    await first.kill('SIGKILL');

    const jobId = w.fake.enqueueJob({ repository: 'octo/unwatched', runId: 41, steps: [{ name: 'quick', run: 'echo unwatched' }] });
    const done = await w.fake.waitForJob(jobId, 'completed', STEP_MS);
    assert.equal(done.runnerId, runnerId, 'the orphaned listener of the killed agent ran the job');
    assert.equal(
      w.fake.runners().some((r) => r.id === runnerId),
      false,
      'the service removed the ephemeral runner after its job',
    );

    const second = startAgentProcess(w.configFile, { logLevel: 'info' });
    t.after(() => void second.kill());
    await drainAtIdle(second);

    const jobs = jobRecords(await w.journal());
    assert.equal(jobs.length, 1, `exactly one record: ${JSON.stringify(jobs, null, 1)}`);
    const rec = jobs[0];
    assert.equal(rec?.runnerId, runnerId);
    assert.equal(rec?.source, 'after-the-fact');
    assert.equal(rec?.result, 'Succeeded');
    assert.equal(rec?.job.repository, 'octo/unwatched');
    assert.equal(rec?.job.runId, '41');
    assert.ok(
      rec?.evidence?.some((e) => /^_diag\/Worker_\d{8}-\d{6}-utc\.log$/.test(e)),
      `the worker trace is named: ${JSON.stringify(rec?.evidence)}`,
    );
    assert.ok(
      rec?.evidence?.some((e) => e.includes('gone')),
      `the service's answer is named: ${JSON.stringify(rec?.evidence)}`,
    );
    assert.equal(rec?.cleanup.clean, true, JSON.stringify(rec?.cleanup.verify.problems));
    assert.deepEqual(w.fake.runners(), [], 'no ghost');
  },
);

test('a job killed mid-way and finished by the orphaned listener still gives exactly one record', { timeout: 240_000 }, async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  await (await w.runtime()).close();
  const jobId = w.fake.enqueueJob({ repository: 'octo/seen', runId: 42, steps: [{ name: 'short', run: 'sleep 3; echo done' }] });
  const first = startAgentProcess(w.configFile, { logLevel: 'info' });
  t.after(() => void first.kill());
  await waitForState(w.stateDir, 'job-running', { agent: first, timeoutMs: STEP_MS });
  await first.kill('SIGKILL');
  await w.fake.waitForJob(jobId, 'completed', STEP_MS);

  const second = startAgentProcess(w.configFile, { logLevel: 'info' });
  t.after(() => void second.kill());
  await drainAtIdle(second);

  const jobs = jobRecords(await w.journal());
  assert.equal(jobs.length, 1, `exactly one record: ${JSON.stringify(jobs, null, 1)}`);
  // What the dead agent did not live to see comes from the trace: the metadata and the result.
  assert.equal(jobs[0]?.job.repository, 'octo/seen');
  assert.equal(jobs[0]?.result, 'Succeeded');
  assert.notEqual(jobs[0]?.source, 'after-the-fact', 'the agent saw this job start: the record is its own');
  assert.deepEqual(w.fake.runners(), [], 'no ghost');
});
