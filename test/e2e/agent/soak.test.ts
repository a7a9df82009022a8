/**
 * A short soak (bench/lib/soak.ts, the engine of bench/soak.ts) so that its invariants are checked
 * on every run: a real agent process serves jobs while it is SIGKILLed (also while quarantined),
 * the host's state filesystem fills up, a second local user forges hook reports, a job tampers with
 * the runner installation, another kills its listener, and the fake API fails. Chances are raised
 * and the seed chosen so that each kind of fault lands (the seed fixes the draws); the API stall
 * (35 s, past the request deadline) is left to the bench. Then: no lost journal record, no ghost
 * registration, no dirty host reused, no quarantine lost, /healthz answering, no forged report taken.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSoak, type SoakResult } from '../../../bench/lib/soak.js';

let res: SoakResult | undefined;
const report = (): string => res?.lines.join('\n') ?? '(the soak did not run)';

test('a short soak under kills, ENOSPC, forged reports and tampering keeps every invariant', { timeout: 400_000 }, async (t) => {
  res = await runSoak({
    jobs: 6,
    seed: 29,
    baselineJobs: 1,
    p: { agentKill: 0.4, enospc: 0.4, forge: 1, taint: 0.3, quarantineKill: 1, apiStall: 0, api5xx: 0.2 },
    // No stall here: a 5xx never completes late (the fake answers it without creating anything), so
    // a stop or recycle need not wait the agent's minute for it; 1 s still takes the waiting path.
    lateRegistrationMs: 1_000,
  });
  t.diagnostic(report());
  // The soak must have exercised what it claims to check.
  for (const kind of ['agent-kill', 'enospc', 'forged-report', 'taint-job', 'listener-kill-job']) {
    assert.ok((res.injected[kind] ?? 0) > 0, `no ${kind} landed with this seed:\n${report()}`);
  }
  assert.ok(res.jobsRun >= 7, `only ${res.jobsRun} jobs ran:\n${report()}`);
  assert.ok(
    res.lines.some((l) => /polls [1-9]/.test(l)),
    `/healthz was not polled:\n${report()}`,
  );
  assert.deepEqual(res.broken, [], report());
});

test('/healthz answers from the moment the health server listens (no "loop stalled" before the loop starts)', () => {
  assert.ok(res, 'the soak did not run');
  assert.equal(res.invariants.healthStartupFailures, 0, report());
});
