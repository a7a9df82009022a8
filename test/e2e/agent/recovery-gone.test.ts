/**
 * A job no agent watched that erased its own trace: the agent is SIGKILLed, its orphaned listener
 * runs a job that deletes `_diag` (the runner user's directory) and finishes, the service removes
 * the spent registration, and no hook report reaches anyone. The restarted agent has only the
 * service's answer (gone): exactly one record, of unknown name and result, with its evidence. A job
 * the dead agent saw start keeps its own record (no second one). An operator's removal of an idle
 * registration whose listener had started gives the same distinguishable record (docs/recovery.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createWorld, jobRecords, until, type World } from './agent-world.js';
import { startAgentProcess, waitForState, type AgentProcess } from '../../helpers/agent-process.js';

/** Generous on two shared cores: a listener start, a job and a recovery each take seconds. */
const STEP_MS = 60_000;

/** Stops `agent` (SIGTERM, a drain) once it is idle: its recovery is then done. */
async function drainAtIdle(agent: AgentProcess): Promise<void> {
  await agent.waitForLog((l) => l.msg === 'state' && l.to === 'idle', 'the restarted agent to be idle', STEP_MS);
  await agent.kill('SIGTERM');
}

/** Starts an agent, waits until its listener is connected, SIGKILLs it: the listener lives on. Returns the registration's id. */
async function orphanListener(t: { after(fn: () => void): void }, w: World): Promise<number> {
  const first = startAgentProcess(w.configFile, { logLevel: 'info' });
  t.after(() => void first.kill());
  const idle = await waitForState(w.stateDir, 'idle', { agent: first, timeoutMs: STEP_MS });
  const runnerId = idle.runner?.id;
  assert.ok(runnerId !== undefined, 'the idle agent persisted its registration');
  await until(() => w.fake.runners().some((r) => r.id === runnerId && r.status === 'online'), 'the listener to connect', STEP_MS);
  await first.kill('SIGKILL');
  return runnerId;
}

/** A step that deletes the runner's trace, as the runner user may. */
function wipeDiag(w: World): string {
  return `rm -rf '${path.join(w.runnerRoot, '_diag')}'`;
}

test(
  'a job that deleted _diag while no agent watched: exactly one record, job unknown, with the evidence',
  { timeout: 240_000 },
  async (t) => {
    const w = await createWorld();
    t.after(() => w.dispose());
    await (await w.runtime()).close(); // the home baseline
    const runnerId = await orphanListener(t, w);

    const jobId = w.fake.enqueueJob({ repository: 'octo/hidden', runId: 51, steps: [{ name: 'erase', run: `${wipeDiag(w)}; echo gone` }] });
    const done = await w.fake.waitForJob(jobId, 'completed', STEP_MS);
    assert.equal(done.runnerId, runnerId, 'the orphaned listener ran the job');
    assert.equal(done.result, 'Succeeded');
    assert.equal(existsSync(path.join(w.runnerRoot, '_diag')), false, 'the job erased the trace');
    assert.equal(
      w.fake.runners().some((r) => r.id === runnerId),
      false,
      'the service removed the spent registration',
    );

    const second = startAgentProcess(w.configFile, { logLevel: 'info' });
    t.after(() => void second.kill());
    await drainAtIdle(second);

    const records = await w.journal();
    const jobs = jobRecords(records);
    assert.equal(jobs.length, 1, `exactly one record: ${JSON.stringify(jobs, null, 1)}`);
    const rec = jobs[0];
    assert.equal(rec?.runnerId, runnerId);
    assert.equal(rec?.source, 'after-the-fact');
    assert.equal(rec?.result, 'unknown');
    assert.deepEqual(rec?.job, {}, 'the job is not named from anything the runner user wrote');
    assert.equal(rec?.key, `${runnerId}@gone`);
    const ev = rec?.evidence ?? [];
    assert.ok(
      ev.some((e) => e.startsWith('_diag: no job')),
      JSON.stringify(ev),
    );
    assert.ok(ev.includes('hook report: none'), JSON.stringify(ev));
    assert.ok(
      ev.some((e) => e.includes(`no runner ${runnerId}`)),
      JSON.stringify(ev),
    );
    assert.equal(rec?.cleanup.clean, true, JSON.stringify(rec?.cleanup.verify.problems));
    assert.equal(
      records.some((r) => r.type === 'event' && r.event === 'recovery'),
      false,
      'a job record, not a recovery event',
    );
    assert.deepEqual(w.fake.runners(), [], 'no ghost');
  },
);

test(
  'a job the dead agent saw start, which deleted _diag and finished: still exactly one record, its own',
  { timeout: 240_000 },
  async (t) => {
    const w = await createWorld();
    t.after(() => w.dispose());
    await (await w.runtime()).close();
    const jobId = w.fake.enqueueJob({
      repository: 'octo/seen',
      runId: 52,
      steps: [{ name: 'erase later', run: `sleep 3; ${wipeDiag(w)}; echo done` }],
    });
    const first = startAgentProcess(w.configFile, { logLevel: 'info' });
    t.after(() => void first.kill());
    const running = await waitForState(w.stateDir, 'job-running', { agent: first, timeoutMs: STEP_MS });
    await first.kill('SIGKILL');
    await w.fake.waitForJob(jobId, 'completed', STEP_MS);
    assert.equal(existsSync(path.join(w.runnerRoot, '_diag')), false, 'the job erased the trace');

    const second = startAgentProcess(w.configFile, { logLevel: 'info' });
    t.after(() => void second.kill());
    await drainAtIdle(second);

    const jobs = jobRecords(await w.journal());
    assert.equal(jobs.length, 1, `exactly one record: ${JSON.stringify(jobs, null, 1)}`);
    assert.equal(jobs[0]?.key, running.job?.key, 'the record the dead agent started, not a second one');
    assert.notEqual(jobs[0]?.source, 'after-the-fact');
    assert.deepEqual(w.fake.runners(), [], 'no ghost');
  },
);

test(
  'an operator removes the idle registration of a dead agent: a record of unknown job, told apart from a named one',
  { timeout: 240_000 },
  async (t) => {
    const w = await createWorld();
    t.after(() => w.dispose());
    await (await w.runtime()).close();
    const runnerId = await orphanListener(t, w);
    assert.ok(w.fake.deleteRunnerServerSide(runnerId), 'the operator removed the registration');
    // The orphaned listener learns it at its next poll and exits.
    const second = startAgentProcess(w.configFile, { logLevel: 'info' });
    t.after(() => void second.kill());
    await drainAtIdle(second);

    const jobs = jobRecords(await w.journal());
    assert.equal(w.fake.jobs().filter((j) => j.startedAt !== null).length, 0, 'no job ran');
    // The agent cannot tell this removal from a job that erased its trace (docs/recovery.md): the
    // record says so and names no job, so an operator who removed the runner can set it aside.
    assert.equal(jobs.length, 1, JSON.stringify(jobs, null, 1));
    assert.equal(jobs[0]?.result, 'unknown');
    assert.deepEqual(jobs[0]?.job, {});
    assert.match(jobs[0]?.notes?.join(' ') ?? '', /operator/);
    assert.deepEqual(w.fake.runners(), [], 'no ghost');
  },
);
