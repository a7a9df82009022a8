/**
 * Every registration the agent created, until it is known to be gone: deletion (API, or in token
 * mode `config.sh remove`), and after a crash the lookup of a name that was being registered.
 * No ghosts: what is not deleted stays in the persisted state for the next boundary or boot.
 */
import { describeError } from '../lib/errors.js';
import { backoffDelay } from '../lib/backoff.js';
import type { AgentCore } from './core.js';

/** How one deletion ended. */
export type DeleteOutcome = 'deleted' | 'not-found' | 'busy' | 'failed';

/** A second way to remove a registration when the API call failed (token mode: config.sh remove). */
export type LocalRemove = (id: number, apiError: unknown) => Promise<'deleted' | 'not-found' | undefined>;

/**
 * How long a registration name requested before a crash is looked for again (at each job
 * boundary). GitHub answers or drops a request within its own timeout, well under a minute; ten
 * covers a slow restart and a long queue without keeping the extra lookup for long.
 */
export const RECHECK_WINDOW_MS = 10 * 60_000;

/** The registrations of this host. */
export class RegistrationLedger {
  constructor(
    private readonly core: AgentCore,
    private readonly localRemove?: LocalRemove,
  ) {}

  /** Deletes one registration; the persisted list forgets it unless the service said busy. */
  async delete(id: number): Promise<DeleteOutcome> {
    const { ctx, log } = this.core;
    try {
      const outcome = await this.core.d.github.deleteRunner(id);
      await ctx.update((s) => {
        if (outcome !== 'busy') s.registrations = s.registrations.filter((r) => r.id !== id);
      });
      if (outcome === 'busy') log.info({ runnerId: id }, 'registration busy (a job is assigned); not deleted yet');
      else log.info({ runnerId: id, outcome }, 'registration deleted');
      return outcome;
    } catch (err) {
      const local = this.localRemove ? await this.localRemove(id, err).catch(() => undefined) : undefined;
      if (local) {
        await this.forget(id);
        return local;
      }
      log.warn({ runnerId: id, err: describeError(err) }, 'could not delete registration; will retry before the next registration');
      return 'failed';
    }
  }

  /** Drops `id` from the persisted list (the service removed it itself). */
  forget(id: number): Promise<void> {
    return this.core.ctx.update((s) => {
      s.registrations = s.registrations.filter((r) => r.id !== id);
    });
  }

  /** Adds a registration found on the service (a late answer to a request this host made). */
  adopt(id: number, name: string): Promise<void> {
    return this.core.ctx.update((s) => {
      if (!s.registrations.some((r) => r.id === id)) s.registrations.push({ id, name });
    });
  }

  /**
   * Deletes leftover registrations (all but `keep`), looking up `pendingName` and the names still
   * in their recheck window first. Returns the ids the service called busy (a job was assigned)
   * and those it no longer had (an ephemeral runner is removed by the service after its job).
   */
  async deleteStale(pendingName: string | undefined, keep: number[] = []): Promise<{ busy: number[]; gone: number[] }> {
    const { ctx, d, log } = this.core;
    const busy: number[] = [];
    const gone: number[] = [];
    const now = d.clock.now();
    // A registration request in flight when the agent died may be completed by GitHub after the
    // restart first looked for it: names not found are looked up again until RECHECK_WINDOW_MS.
    const lookups = [
      ...(pendingName ? [{ name: pendingName, until: new Date(now + RECHECK_WINDOW_MS).toISOString() }] : []),
      ...(ctx.s.recheckNames ?? []).filter((r) => Date.parse(r.until) > now && r.name !== pendingName),
    ];
    const again: { name: string; until: string }[] = [];
    for (const entry of lookups) {
      try {
        const found = (await d.github.findRunnersByName(entry.name)).filter((r) => r.name === entry.name);
        for (const r of found) await this.adopt(r.id, r.name);
        if (found.length > 0 && entry.name !== pendingName) log.warn({ runner: entry.name }, 'a registration requested before a crash appeared late; deleting it');
        if (found.length === 0) again.push(entry);
      } catch (err) {
        log.warn({ err: describeError(err), runner: entry.name }, 'could not look up a registration made before a crash');
        again.push(entry);
      }
    }
    await ctx.update((s) => {
      if (pendingName) s.pendingName = undefined;
      if (again.length > 0) s.recheckNames = again;
      else delete s.recheckNames;
    });
    for (const r of ctx.s.registrations.filter((x) => !keep.includes(x.id))) {
      for (let i = 0; i < d.timeouts.recoveryDeleteTries; i++) {
        const outcome = await this.delete(r.id);
        if (outcome === 'busy' && !busy.includes(r.id)) busy.push(r.id);
        if (outcome === 'not-found' && !gone.includes(r.id)) gone.push(r.id);
        if (outcome === 'deleted' || outcome === 'not-found') break;
        const waitMs = backoffDelay(i, { baseMs: d.timeouts.registerBackoffBaseMs, maxMs: d.timeouts.registerBackoffMaxMs }, this.core.random);
        await d.clock.sleep(waitMs).catch(() => {});
      }
    }
    return { busy, gone };
  }
}
