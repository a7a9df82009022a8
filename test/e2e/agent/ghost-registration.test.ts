/**
 * Ghost registrations: a generate-jitconfig the client gave up on (its deadline fired) that the
 * service completes later. The adapter retries the same name at once and that runner serves its
 * job and goes away; the first request then lands and creates a second runner with that name,
 * which nothing tracks. The agent must find and delete it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWorld, until } from './agent-world.js';
import { createOctokitPort } from '../../../src/github/octokit.js';
import { systemClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';

/** The adapter's request deadline here: short, so the stalled request is given up on at once. */
const REQUEST_DEADLINE_MS = 300;
/**
 * How long the service may complete a request late (the agent watches the name this long, and its
 * stop waits out the window): the test lands it one job after the send, ~2-8 s on a loaded
 * two-core machine (9 s seen at load 22), so this leaves more than twice that.
 */
const LATE_MS = 25_000;

test(
  'a registration the client timed out on and the service completed after its name was freed is deleted, not left a ghost',
  { timeout: 120_000 },
  async (t) => {
    const w = await createWorld({
      runner: { maxJobs: 2 },
      // A registration call slower than this had an attempt whose fate is unknown (a retry after a deadline).
      timeouts: { registrationRecheckAfterMs: REQUEST_DEADLINE_MS - 100, lateRegistrationMs: LATE_MS },
    });
    t.after(() => w.dispose());
    let complete!: () => void;
    const late = new Promise<void>((r) => (complete = r));
    // The first generate-jitconfig is answered only once the test says so (the client is gone by then).
    w.fake.faults.add({ match: { method: 'POST', path: /generate-jitconfig/ }, times: 1, completeWhen: late });
    const github = createOctokitPort({
      apiUrl: w.fake.url,
      scope: { kind: 'org', org: 'octo' },
      auth: { kind: 'token', token: w.fake.defaultToken },
      clock: systemClock,
      log: silentLogger(),
      requestTimeoutMs: REQUEST_DEADLINE_MS,
      random: () => 0,
    });
    const rt = await w.runtime({ github });
    t.after(() => rt.close());
    const sent = Date.now();
    const running = rt.agent.run(AbortSignal.timeout(110_000));
    w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'one', run: 'echo one' }] });
    await until(() => w.fake.jobs().some((j) => j.status === 'completed'), 'the first job to complete', 30_000);
    // The ephemeral runner of the first job is gone: its name is free again. Now the stalled request lands.
    const first = w.fake.jobs()[0]?.runnerName ?? '';
    await until(() => !w.fake.runners().some((r) => r.name === first), 'the first runner to be removed', 15_000);
    const created = new Promise<{ name: string; runnerId: number }>((resolve) => {
      const on = (r: { name: string; runnerId: number }): void => {
        if (r.name !== first) return;
        w.fake.events.off('runner-created', on);
        resolve(r);
      };
      w.fake.events.on('runner-created', on);
    });
    complete();
    const ghost = await created;
    t.diagnostic(`late completion ${Date.now() - sent} ms after the send (window ${LATE_MS} ms)`);
    assert.ok(
      Date.now() - sent < LATE_MS,
      'the late completion came after the window the agent watches: the machine is too slow for this test',
    );
    w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'two', run: 'echo two' }] });
    const exit = await running;
    assert.equal(exit.code, 0, exit.reason);
    assert.equal(w.fake.jobs().filter((j) => j.status === 'completed').length, 2, 'both jobs ran');
    // The late runner may be deleted at the next job boundary or before the agent stops; give the stop path its time.
    await until(
      () => !w.fake.runners().some((r) => r.id === ghost.runnerId),
      `the late runner ${JSON.stringify(ghost)} to be deleted`,
      10_000,
    ).catch(() => {});
    assert.deepEqual(
      w.fake
        .runners()
        .filter((r) => r.id === ghost.runnerId)
        .map((r) => `${r.id} ${r.name} ${r.status}`),
      [],
      'a runner the service created late for a request the client gave up on was left registered (a ghost)',
    );
  },
);
