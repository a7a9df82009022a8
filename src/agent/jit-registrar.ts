/**
 * JIT registration: one `generate-jitconfig` call per runner. With `runner.prefetch`, the next
 * runner is registered while the current job runs, so a reused host need not wait for the API.
 */
import { describeError } from '../lib/errors.js';
import type { Policy } from '../policy/types.js';
import type { AgentCore } from './core.js';
import { addRecheck, fateUnknown, type RegistrationLedger } from './registrations.js';
import { registrationTarget, renderName, type Prefetched, type RunnerRegistrar } from './registrar.js';

/** The JIT registrar (with prefetch). */
export class JitRegistrar implements RunnerRegistrar {
  readonly mode = 'jit' as const;
  private ahead: Promise<Prefetched | undefined> | undefined;

  constructor(
    private readonly core: AgentCore,
    private readonly ledger: RegistrationLedger,
    private readonly prefetch: boolean,
  ) {}

  async request(req: { name: string; labels: string[]; group: string | null }): Promise<{ id: number; jit: string }> {
    const gh = this.core.d.github;
    const groupId = await gh.resolveRunnerGroup(req.group);
    const j = await gh.generateJitConfig({ name: req.name, labels: req.labels, runnerGroupId: groupId, workFolder: '_work' });
    return { id: j.runner.id, jit: j.encodedJitConfig };
  }

  jobStarted(policy: Policy): void {
    if (this.prefetch && !this.ahead) this.ahead = this.registerAhead(policy);
  }

  async takeAhead(): Promise<Prefetched | undefined> {
    const task = this.ahead;
    this.ahead = undefined;
    return task ? await task : undefined;
  }

  async discardAhead(): Promise<void> {
    const pre = await this.takeAhead();
    if (pre) await this.ledger.delete(pre.id);
  }

  /** Registers the next runner in the background while a job runs; failures just mean no prefetch. */
  private async registerAhead(policy: Policy): Promise<Prefetched | undefined> {
    const { ctx, d, log } = this.core;
    const { labels, group } = registrationTarget(this.core, policy);
    const name = renderName(d.runner.name, d.hostname, ctx.s.seq);
    await ctx.update((s) => {
      s.seq += 1;
      s.pendingName = name;
    });
    if (ctx.writeProblem !== undefined) {
      // The name is not on disk: a crash after the request would leave its runner unknown.
      await ctx.update((s) => (s.pendingName = undefined));
      return undefined;
    }
    const sentAt = d.clock.now();
    try {
      const r = await this.request({ name, labels, group });
      const slow = d.clock.now() - sentAt > d.timeouts.registrationRecheckAfterMs;
      await ctx.update((s) => {
        s.pendingName = undefined;
        s.registrations.push({ id: r.id, name });
        if (slow) addRecheck(s, name, d.clock.now(), d.timeouts.lateRegistrationMs);
      });
      log.info({ runner: name, runnerId: r.id }, 'next runner prefetched');
      return { id: r.id, name, labels, jit: r.jit, group };
    } catch (err) {
      // The main registration will overwrite pendingName: a request whose fate is unknown is watched instead.
      await ctx.update((s) => {
        if (s.pendingName === name) s.pendingName = undefined;
        if (fateUnknown(err)) addRecheck(s, name, d.clock.now(), d.timeouts.lateRegistrationMs);
      });
      log.warn({ err: describeError(err) }, 'prefetch failed; will register after cleanup');
      return undefined;
    }
  }
}
