/**
 * Token-mode registration, for servers without JIT: a registration token and `config.sh`, which
 * writes the runner's files into the runner root. It cannot register ahead (the root holds the
 * current runner), and it has a second way to delete: `config.sh remove`.
 */
import { describeError } from '../lib/errors.js';
import type { TokenRegistrar } from '../runner/token-registration.js';
import type { AgentCore } from './core.js';
import type { Prefetched, RunnerRegistrar } from './registrar.js';

/** The token-mode registrar. */
export class TokenModeRegistrar implements RunnerRegistrar {
  readonly mode = 'token' as const;

  constructor(
    private readonly core: AgentCore,
    private readonly registrar: TokenRegistrar,
  ) {}

  async request(req: { name: string; labels: string[]; group: string | null; seq: number; signal: AbortSignal }): Promise<{ id: number }> {
    // config.sh gets a HOME and TMPDIR of its own under the job root; the next cleanup removes them.
    const dirs = await this.core.d.prepareJobDirs(`config-${req.seq}`);
    const r = await this.registrar.register({
      name: req.name,
      labels: req.labels,
      group: req.group,
      home: dirs.home,
      tmp: dirs.tmp,
      signal: req.signal,
    });
    return { id: r.id };
  }

  jobStarted(): void {}

  takeAhead(): Promise<Prefetched | undefined> {
    return Promise.resolve(undefined);
  }

  discardAhead(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * `config.sh remove` with a remove token, while the runner root still holds registration `id`.
   * Never right after a job: what it left running (killed only by the cleanup) could swap
   * `.runner` and have config.sh delete another runner of the scope.
   */
  async localRemove(id: number, apiError: unknown): Promise<'deleted' | 'not-found' | undefined> {
    const { ctx, d, log } = this.core;
    if (ctx.s.job) return undefined;
    try {
      const dirs = await d.prepareJobDirs('config-remove');
      const removed = await this.registrar.remove(id, { home: dirs.home, tmp: dirs.tmp });
      if (removed === 'not-local') return undefined;
      log.info({ runnerId: id, outcome: removed, via: 'config.sh remove', deleteErr: describeError(apiError) }, 'registration deleted');
      return removed === 'removed' ? 'deleted' : 'not-found';
    } catch (err) {
      log.warn({ runnerId: id, err: describeError(err) }, 'config.sh remove failed as well');
      return undefined;
    }
  }
}
