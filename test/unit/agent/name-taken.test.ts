/**
 * A registration the client gave up on that the service completed anyway: the client's retry of
 * the same name is refused as taken (409) by the runner of its own first attempt. That runner is
 * the agent's, and must be looked up and deleted; before, "name taken" counted as a refusal that
 * proves nothing was made, and the soak left one ghost per such request. A refusal of a first
 * attempt is another host's name, slow or not: its runner is never touched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GitHubApiError } from '../../../src/lib/errors.js';
import { UNIT_TIMEOUTS, makeUnitWorld, settleUntil } from './fakes.js';
import type { JitRegistration } from '../../../src/github/port.js';

const CASES = [
  { retried: true, slow: true, title: 'a retry refused as taken (its first attempt timed out) is watched and its runner deleted' },
  { retried: false, slow: true, title: 'a first attempt refused as taken, however slow, is left alone (another host owns the name)' },
  { retried: false, slow: false, title: 'a quick refusal of a first attempt is left alone (another host may own it)' },
];

for (const { retried, slow, title } of CASES) {
  test(title, async (t) => {
    const w = await makeUnitWorld();
    t.after(() => w.dispose());
    let took = '';
    const real = w.github.generateJitConfig.bind(w.github);
    let calls = 0;
    w.github.generateJitConfig = async (req): Promise<JitRegistration> => {
      if (++calls !== 1) return real(req);
      // The service holds a runner of that name: made by the first attempt the client gave up on
      // (retried), or there before this host asked (another host's).
      const made = await real(req);
      took = made.runner.name;
      if (slow) await w.clock.sleep(UNIT_TIMEOUTS.registrationRecheckAfterMs + 1_000);
      throw new GitHubApiError(
        `Already exists - A runner with the name ${req.name} already exists.`,
        409,
        'generate-jitconfig',
        undefined,
        {
          attempts: retried ? 2 : 1,
        },
      );
    };
    const agent = w.agent();
    const running = agent.run(new AbortController().signal);
    if (slow) {
      await settleUntil(() => w.clock.sleeps.some((s) => s === UNIT_TIMEOUTS.registrationRecheckAfterMs + 1_000), 'the slow attempt');
      w.clock.advance(UNIT_TIMEOUTS.registrationRecheckAfterMs + 1_000);
    }
    const exit = await running;
    assert.equal(exit.code, 0, exit.reason);
    assert.notEqual(took, '');
    const left = [...w.github.runners.values()].map((r) => r.name);
    if (retried) assert.deepEqual(left, [], 'the runner of the attempt the client gave up on was left behind (a ghost)');
    else assert.deepEqual(left, [took], 'a runner this agent has no reason to think its own was deleted');
  });
}
