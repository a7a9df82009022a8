/**
 * How a decision is carried out: reuse (go on), recycle (ask the infrastructure for a new host),
 * quarantine (a persisted fact: never reused until an operator releases it or the host is
 * replaced), stop.
 */
import { describeError } from '../lib/errors.js';
import type { Policy } from '../policy/types.js';
import type { Decision } from '../recycle/decision.js';
import type { AgentCore } from './core.js';
import type { AgentExit } from './deps.js';
import { quarantineFact } from './quarantine-store.js';
import type { RunnerRegistrar } from './registrar.js';
import type { RegistrationLedger } from './registrations.js';

/** What the loop does next: stop with an exit, go on (undefined), or recover after a released quarantine. */
export type Next = AgentExit | undefined | 'released';

/** Providers after which the infrastructure stops this host itself (the agent waits for it). */
const TERMINATING_PROVIDERS = /^(aws-asg|gcp-mig|azure-vmss|kubernetes|shutdown)$/;

/**
 * How often a quarantined agent looks for an operator's release request: a person waiting at a
 * terminal for `unquarantine` gets an answer within seconds; the check is one stat.
 */
export const RELEASE_POLL_MS = 2_000;

/** Carries out decisions. */
export class Endings {
  constructor(
    private readonly core: AgentCore,
    private readonly ledger: RegistrationLedger,
    private readonly registrar: RunnerRegistrar,
  ) {}

  /** Acts on a decision. */
  async act(decision: Decision, policy: Policy, evidence: readonly string[] = []): Promise<Next> {
    switch (decision.action) {
      case 'reuse':
        await this.core.ctx.update((s) => (s.dirty = false));
        return undefined;
      case 'stop':
        await this.core.ctx.update((s) => (s.dirty = false));
        return this.stop(decision.reason);
      case 'recycle':
        return this.recycle(policy, decision.reason);
      case 'quarantine':
        return this.quarantine(policy, decision.reason, evidence);
    }
  }

  /** Asks the infrastructure to replace the host; a failure quarantines it. */
  async recycle(policy: Policy, reason: string): Promise<Next> {
    const { ctx, d, log, journal } = this.core;
    await ctx.transition('recycling');
    await this.registrar.discardAhead();
    await this.ledger.deleteStale(ctx.s.pendingName);
    // The host's state goes with it: a registration the service may still complete is waited for now.
    await this.ledger.settleLate();
    const recycler = d.recycler;
    if (!recycler || recycler.provider === 'none') {
      log.warn({ reason }, 'recycle requested but no recycle provider is configured; stopping');
      await journal.append({ type: 'event', event: 'recycle', at: this.core.iso(), detail: { reason, provider: 'none', ok: false } });
      return this.stop(`recycle (${reason}); no provider`);
    }
    const res = await recycler
      .recycle({ reason, team: policy.team, jobsServed: ctx.s.jobsServed }, AbortSignal.timeout(d.timeouts.cleanupTimeoutMs))
      .catch((err: unknown) => ({ ok: false, provider: recycler.provider, detail: describeError(err), exitCode: undefined }));
    if (res.ok) d.observer?.recycled?.(reason, res.provider);
    else d.observer?.recycleFailed?.(res.provider);
    await journal.append({
      type: 'event',
      event: 'recycle',
      at: this.core.iso(),
      detail: { reason, provider: res.provider, ok: res.ok, result: res.detail },
    });
    if (!res.ok) return this.quarantine(policy, `recycle failed: ${res.detail}`, [], true);
    // The host is being replaced: never serve another job on it.
    await ctx.update((s) => (s.dirty = true));
    if (TERMINATING_PROVIDERS.test(res.provider) && res.exitCode === undefined) {
      // The infrastructure ends this host from outside (pod deletion, ASG termination, poweroff).
      // Exiting now would let a supervisor (kubelet, systemd) start a fresh agent on a host that is
      // going away, which would register a runner there: wait for the end instead, bounded.
      log.info({ provider: res.provider, waitMs: d.timeouts.recycleWaitMs }, 'recycle signalled; waiting for the host to be stopped');
      await d.clock.sleep(d.timeouts.recycleWaitMs, this.core.drain.signal).catch(() => {});
    }
    return this.stop(`recycled (${reason})`, res.exitCode ?? 0);
  }

  /**
   * Quarantines the host: the fact is persisted first (it survives every restart), then the host
   * is recycled when a provider can, otherwise held (health 503) until stopped or released.
   */
  async quarantine(policy: Policy, reason: string, evidence: readonly string[] = [], recycleFailed = false): Promise<Next> {
    const { ctx, d, log, journal } = this.core;
    await ctx.setQuarantine(quarantineFact(reason, new Date(d.clock.now()), evidence));
    await ctx.transition('quarantined');
    await this.registrar.discardAhead();
    log.error({ reason }, 'host quarantined');
    await journal.append({
      type: 'event',
      event: 'quarantine',
      at: this.core.iso(),
      detail: { reason, since: ctx.quarantine?.at ?? this.core.iso() },
    });
    if (!recycleFailed && d.recycler && d.recycler.provider !== 'none') return this.recycle(policy, `quarantined: ${reason}`);
    return this.hold();
  }

  /**
   * A boot that found the quarantine fact: the host stays quarantined (no cleanup, no
   * registration); registrations the dead agent left are still deleted, and a configured
   * provider is asked again to replace the host.
   */
  async resume(policy: Policy, pendingName: string | undefined): Promise<Next> {
    const { ctx, d, log, journal } = this.core;
    const fact = ctx.quarantine;
    if (!fact) return undefined;
    await ctx.transition('quarantined');
    log.error({ reason: fact.reason, since: fact.at }, 'host still quarantined');
    await journal.append({ type: 'event', event: 'quarantine-kept', at: this.core.iso(), detail: { reason: fact.reason, since: fact.at } });
    await this.ledger.deleteStale(pendingName);
    if (d.recycler && d.recycler.provider !== 'none') return this.recycle(policy, `quarantined: ${fact.reason}`);
    return this.hold();
  }

  /** Stops the agent: deletes what it registered ahead, looks once more for late registrations. */
  async stop(reason: string, code = 0): Promise<AgentExit> {
    const { ctx, log, journal } = this.core;
    await this.registrar.discardAhead();
    // A registration the service may still complete (requested before a crash, timed out, given
    // up on): waited for, bounded, and looked up once more before going (what a failing lookup
    // could not settle stays in the state for the next boot, within its window).
    await this.ledger.settleLate();
    await ctx.transition('stopped');
    log.info({ reason, code }, 'agent stopped');
    await journal.append({ type: 'event', event: 'stop', at: this.core.iso(), detail: { reason, code } });
    return { code, reason };
  }

  /** Holds a quarantined host until a drain (stop) or an operator's release request. */
  private async hold(): Promise<Next> {
    const { ctx, d, drain, journal, log } = this.core;
    for (;;) {
      const fact = ctx.quarantine;
      if (!fact) return 'released';
      // A fact (or state) the full disk refused is written as soon as there is room.
      await ctx.rewrite();
      if (drain.draining) return this.stop(`quarantined: ${fact.reason}`);
      const req = await ctx.takeReleaseRequest();
      if (req) {
        log.warn({ by: req.by, reason: req.reason, quarantined: fact.reason }, 'quarantine released by an operator');
        await journal.append({
          type: 'event',
          event: 'unquarantine',
          at: this.core.iso(),
          detail: {
            reason: req.reason,
            by: req.by,
            requestedAt: req.at,
            quarantineReason: fact.reason,
            quarantinedAt: fact.at,
            via: 'running agent',
          },
        });
        await ctx.clearQuarantine();
        return 'released';
      }
      await d.clock.sleep(RELEASE_POLL_MS, drain.signal).catch(() => {});
    }
  }
}
