/**
 * When the agent asks for an in-place runner update (host config `runner.updates`, the port in
 * deps.ts): at boot an interrupted update is finished or undone before any listener; a deprecated
 * runner asks at once, before the decision; between jobs it asks every `checkEveryMinutes`, the
 * first time at a random offset in that period so a fleet booted together does not ask together.
 */
import { describeError } from '../lib/errors.js';
import type { UpdateResult } from '../runner/update.js';
import type { AgentCore } from './core.js';

/** The outcome of a deprecation: updated (register again) or why the host must be recycled. */
export type DeprecationOutcome = { updated: string } | { recycle: string };

/** The agent's side of runner updates; does nothing without the port. */
export class RunnerUpdates {
  private nextCheckAt: number | undefined;

  constructor(private readonly core: AgentCore) {}

  /** Boot: leaves a whole runner after a crash mid-update. */
  async recover(): Promise<void> {
    const port = this.core.d.runnerUpdates;
    if (!port) return;
    try {
      await port.recover();
    } catch (err) {
      // The installation check after the next job says whether the runner is whole.
      this.core.log.error({ err: describeError(err) }, 'could not recover an interrupted runner update');
    }
  }

  /** The service refused the running version: try an update; without one the host is recycled. */
  async onDeprecated(version: string): Promise<DeprecationOutcome> {
    if (!this.core.d.runnerUpdates) return { recycle: 'runner.updates is not configured' };
    const u = await this.attempt('deprecated', version);
    if ('updated' in u) return { updated: u.updated };
    return { recycle: 'refused' in u ? `update refused: ${u.refused}` : `no update: ${u.none}` };
  }

  /** Between jobs: asks when the period is due; a host keeps serving whatever the answer. */
  async between(): Promise<void> {
    const port = this.core.d.runnerUpdates;
    if (!port) return;
    const now = this.core.d.clock.now();
    if (this.nextCheckAt === undefined) {
      this.nextCheckAt = now + Math.floor(this.core.random() * port.checkEveryMs);
    }
    if (now < this.nextCheckAt) return;
    this.nextCheckAt = now + port.checkEveryMs;
    await this.attempt('periodic');
  }

  private async attempt(trigger: 'deprecated' | 'periodic', deprecated?: string): Promise<UpdateResult> {
    const { d, journal, log } = this.core;
    let u: UpdateResult;
    try {
      u = await d.runnerUpdates!.update();
    } catch (err) {
      u = { refused: describeError(err) };
    }
    if ('updated' in u) {
      log.info({ version: u.updated, from: u.from, ms: u.ms, trigger }, 'runner updated in place');
      await journal.append({
        type: 'event',
        event: 'runner-updated',
        at: this.core.iso(),
        detail: { version: u.updated, from: u.from, ms: u.ms, trigger, ...(deprecated !== undefined ? { deprecated } : {}) },
      });
    } else if ('refused' in u) {
      log.warn({ reason: u.refused, trigger }, 'runner update refused');
    } else {
      log.info({ reason: u.none, trigger }, 'no newer runner release');
    }
    return u;
  }
}
