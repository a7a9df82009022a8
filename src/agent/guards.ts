/**
 * The job guards (src/lib/job-guard.ts) as the agent calls them: prepare before the listener,
 * release while cleaning (a step `guard:<name>` in the cleanup report), verify while verifying.
 * A guard that throws is a failed step or a finding, never a crash of the agent.
 */
import { GuardUnfitError, type GuardFinding, type GuardJob, type JobGuard } from '../lib/job-guard.js';
import { describeError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Clock } from '../lib/clock.js';
import type { Policy } from '../policy/types.js';
import type { StepReport } from '../cleanup/types.js';
import type { GuardFindingRecord } from './journal.js';

/** What preparing every guard gave: the listener's extra environment and notes for the record. */
export interface GuardsPrepared {
  env: Record<string, string>;
  notes: string[];
}

/** A guard refused the job (GuardUnfitError): the host cannot serve this policy. */
export interface GuardRefusal {
  guard: string;
  message: string;
  fix?: string;
}

/** Calls the configured guards in order. */
export class GuardCalls {
  constructor(
    private readonly guards: readonly JobGuard<Policy>[],
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {}

  get count(): number {
    return this.guards.length;
  }

  /**
   * Prepares every guard; later guards' variables win on a clash. Stops at the first failure:
   * a refusal (GuardUnfitError) is returned, any other error is thrown (the registration fails).
   */
  async prepare(job: GuardJob, policy: Policy, signal: AbortSignal): Promise<GuardsPrepared | GuardRefusal> {
    const out: GuardsPrepared = { env: {}, notes: [] };
    for (const g of this.guards) {
      try {
        const r = await g.prepare(job, policy, { log: this.log.child({ guard: g.name }), signal });
        Object.assign(out.env, r.env ?? {});
        out.notes.push(...(r.notes ?? []).map((n) => `${g.name}: ${n}`));
      } catch (err) {
        if (err instanceof GuardUnfitError)
          return { guard: err.guard || g.name, message: err.message, ...(err.fix !== undefined ? { fix: err.fix } : {}) };
        throw new GuardPrepareError(g.name, err);
      }
    }
    return out;
  }

  /** Releases every guard (all of them, whatever one of them did); one step report each. */
  async release(job: GuardJob, policy: Policy, signal: AbortSignal): Promise<StepReport[]> {
    const steps: StepReport[] = [];
    for (const g of this.guards) {
      const t0 = this.clock.now();
      try {
        const r = await g.release(job, policy, { log: this.log.child({ guard: g.name }), signal });
        steps.push({
          name: `guard:${g.name}`,
          outcome: r.outcome,
          durationMs: this.clock.now() - t0,
          removed: r.removed ?? {},
          ...(r.reason ? { reason: r.reason } : {}),
        });
      } catch (err) {
        steps.push({
          name: `guard:${g.name}`,
          outcome: 'failed',
          durationMs: this.clock.now() - t0,
          removed: {},
          reason: describeError(err),
        });
      }
    }
    return steps;
  }

  /** Lets each guard start the next job's set-up while this host is verified (JobGuard.prewarm). */
  prewarm(policy: Policy, signal: AbortSignal): void {
    for (const g of this.guards) {
      try {
        g.prewarm?.(policy, { log: this.log.child({ guard: g.name }), signal });
      } catch (err) {
        this.log.warn({ guard: g.name, err: describeError(err) }, 'a job guard could not prewarm');
      }
    }
  }

  /**
   * Every guard's independent check; a guard that throws is itself a finding. The checks only
   * read, so the guards run side by side; the findings keep the guards' order.
   */
  async verify(job: GuardJob | undefined, policy: Policy, signal: AbortSignal): Promise<GuardFindingRecord[]> {
    const each = await Promise.all(
      this.guards.map(async (g) => {
        let found: GuardFinding[];
        try {
          found = await g.verify(job, policy, { log: this.log.child({ guard: g.name }), signal });
        } catch (err) {
          found = [{ problem: `verification could not run: ${describeError(err)}` }];
        }
        return found.map((f) => ({ guard: g.name, problem: f.problem, ...(f.detail ? { detail: f.detail } : {}) }));
      }),
    );
    return each.flat();
  }
}

/** A guard's prepare failed for a reason other than unfitness (an I/O error, a timeout). */
export class GuardPrepareError extends Error {
  override name = 'GuardPrepareError';
  constructor(
    readonly guard: string,
    cause: unknown,
  ) {
    super(`guard ${guard}: prepare failed: ${describeError(cause)}`, { cause });
  }
}

/** The one line a verify problem list shows for a finding. */
export function findingLine(f: GuardFindingRecord): string {
  return `guard:${f.guard}: ${f.problem}`;
}
