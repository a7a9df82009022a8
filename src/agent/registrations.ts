/**
 * Every registration the agent created, until it is known to be gone: deletion (API, or in token
 * mode `config.sh remove`), and after a crash the lookup of a name that was being registered.
 * No ghosts: what is not deleted stays in the persisted state for the next boundary or boot.
 */
import { GitHubApiError, describeError } from '../lib/errors.js';
import { backoffDelay } from '../lib/backoff.js';
import { ConfigShError } from '../runner/token-registration.js';
import type { AgentCore } from './core.js';
import type { PersistedState } from './state-store.js';

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
   * Puts `name` on the persisted recheck list: its request may still be completed by the service
   * (timed out, answered slowly, given up on), so the runner that may appear under it is looked up
   * and deleted at the next boundaries and before the agent stops. Without it, a late completion
   * after the name was freed (its retried runner served its job and went away) is a ghost.
   */
  watchLate(name: string): Promise<void> {
    return this.core.ctx.update((s) => addRecheck(s, name, this.core.d.clock.now(), this.core.d.timeouts.lateRegistrationMs));
  }

  /**
   * Before the agent stops or the host is recycled: waits (bounded by lateRegistrationMs) until no
   * watched request can still be completed, then looks the names up once more and deletes what
   * they found. A stop that did not wait would leave the late runner to a next boot that may never
   * come (a recycled host's state goes with it).
   */
  async settleLate(): Promise<void> {
    const { ctx, d, log } = this.core;
    const now = d.clock.now();
    const settle = Math.max(0, ...(ctx.s.recheckNames ?? []).map((r) => (r.settleAt ? Date.parse(r.settleAt) - now : 0)));
    const waitMs = Math.min(settle, d.timeouts.lateRegistrationMs);
    if (waitMs > 0) {
      log.info(
        { waitMs, names: ctx.s.recheckNames?.map((r) => r.name) },
        'waiting for registration requests the service may still complete',
      );
      await d.clock.sleep(waitMs).catch(() => {});
    }
    if (ctx.s.recheckNames?.length) await this.deleteStale(undefined);
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
    // The request sent before the crash may still be completed: it is watched from now (a restart
    // comes after the send), for as long as any late completion.
    const crashed = pendingName ? [{ ...recheckEntry(pendingName, now, d.timeouts.lateRegistrationMs), untilFound: true }] : [];
    const lookups = [...crashed, ...(ctx.s.recheckNames ?? []).filter((r) => Date.parse(r.until) > now && r.name !== pendingName)];
    const again: RecheckEntry[] = [];
    for (const entry of lookups) {
      try {
        const known = new Set(ctx.s.registrations.map((r) => r.id));
        const found = (await d.github.findRunnersByName(entry.name)).filter((r) => r.name === entry.name);
        for (const r of found) await this.adopt(r.id, r.name);
        const fresh = found.filter((r) => !known.has(r.id));
        if (fresh.length > 0 && entry.name !== pendingName)
          log.warn(
            { runner: entry.name, runnerIds: fresh.map((r) => r.id) },
            'a registration the service completed late appeared; deleting it',
          );
        // Until a late completion is no longer possible, a name is looked up again even when found:
        // the runner found may be the retried one, and the late one may still come.
        // A name sent before a crash (when, is unknown) is also looked for until found, within `until`.
        const open =
          (entry.settleAt !== undefined && Date.parse(entry.settleAt) > now) ||
          ((entry.untilFound ?? entry.settleAt === undefined) && found.length === 0);
        if (open) again.push(entry);
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
        const waitMs = backoffDelay(
          i,
          { baseMs: d.timeouts.registerBackoffBaseMs, maxMs: d.timeouts.registerBackoffMaxMs },
          this.core.random,
        );
        await d.clock.sleep(waitMs).catch(() => {});
      }
    }
    return { busy, gone };
  }
}

/**
 * True when a registration request's error leaves its fate unknown: no answer (deadline, network),
 * a 5xx (a proxy may have answered for a service that went on), or a rate limit on a retry. Only a
 * refusal the service itself gave (4xx: bad request, name taken, no permission) proves nothing was made.
 */
export function fateUnknown(err: unknown): boolean {
  if (err instanceof GitHubApiError) return err.status === undefined || err.status >= 500 || err.status === 429 || err.status === 408;
  if (err instanceof ConfigShError) return err.reason === 'timeout' || err.reason === 'failed';
  return true;
}

/** Adds (or extends) the recheck entry of `name` in `s`: watched until lateMs from `now`. */
export function addRecheck(s: Pick<PersistedState, 'recheckNames'>, name: string, now: number, lateMs: number): void {
  s.recheckNames = [...(s.recheckNames ?? []).filter((r) => r.name !== name), recheckEntry(name, now, lateMs)];
}

/** A recheck entry for a request sent at or before `now`. */
function recheckEntry(name: string, now: number, lateMs: number): RecheckEntry {
  return { name, until: new Date(now + Math.max(RECHECK_WINDOW_MS, lateMs)).toISOString(), settleAt: new Date(now + lateMs).toISOString() };
}

type RecheckEntry = NonNullable<PersistedState['recheckNames']>[number];
