/**
 * The readiness gate before the first registration of a boot that needed no recovery. The
 * container engine, when the host has one, must answer, and the guards must find nothing
 * (verify(undefined)); then the host goes through the same cleanup and verification as after a
 * job, so the first job starts as clean as every later one and a broken image or an engine that
 * never came up is caught before it takes a job. Dirty or no engine → quarantine; disk below the
 * watermarks or the job limit already reached → recycle; otherwise register.
 */
import type { Policy } from '../policy/types.js';
import type { AgentCore } from './core.js';
import type { Endings, Next } from './endings.js';
import type { Settler } from './settle.js';
import { takeEngineInventory } from './supervisor.js';

/** Runs the gate and acts on it. */
export async function preflight(core: AgentCore, settler: Settler, endings: Endings, policy: Policy): Promise<Next> {
  const { d, drain, journal } = core;
  await core.ctx.transition('preflight');
  const problems = d.preflight ? await d.preflight(policy, drain.signal) : [];
  if (drain.draining) return endings.stop(`drained: ${drain.reason}`);
  if (problems.length > 0) {
    await journal.append({ type: 'event', event: 'preflight', at: core.iso(), detail: { ok: false, problems: problems.join('; ') } });
    return endings.quarantine(policy, `preflight: ${problems.join('; ')}`, problems);
  }
  // What the engine holds at boot is the image's or the admin's (a baked cache volume, images
  // pulled by user data): the inventory keeps it, and should listing fail, "created from now on"
  // keeps it as well. Only a job's objects are ever removed.
  await takeEngineInventory(core, policy);
  const { report, findings } = await settler.clean(policy, d.clock.now());
  const decision = settler.decide(policy, report);
  await journal.append({
    type: 'event',
    event: 'preflight',
    at: core.iso(),
    detail: {
      ok: decision.action === 'reuse',
      clean: report?.clean ?? false,
      readyMs: report?.readyMs ?? null,
      problems: report ? report.verify.problems.join('; ') : 'cleanup did not complete',
      decision: decision.action,
      decisionReason: decision.reason,
    },
    ...(findings.length > 0 ? { guardFindings: findings } : {}),
  });
  return endings.act(decision, policy, report?.verify.problems ?? ['cleanup did not complete']);
}
