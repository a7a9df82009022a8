/**
 * Keeps a child registry (the demo's image cache) running: when it exits, it is started again on
 * the same address after a full-jitter backoff (lib/backoff.ts), each exit and restart logged.
 * While it is down the jobs' engines keep working: a pull of a Docker Hub name finds the mirror
 * refusing connections and dockerd tries the upstream registry itself (docs/docker.md, "When the
 * cache is down"); the agent's /metrics shows `runner_warden_mirror_up 0` (its debug server does
 * not answer). Production runs the cache under systemd instead (Restart=always,
 * packaging/systemd/runner-warden-mirror.service), which this mirrors for the demo.
 */
import type { Logger } from '../lib/log.js';
import { backoffDelay, type BackoffPolicy, type RandomSource } from '../lib/backoff.js';
import { MirrorError, type RegistryMirror } from './mirror.js';

/**
 * First restart within a second (a crash is usually a one-off), doubling to at most thirty
 * seconds (a proxy whose upstream does not answer exits at every start: no tight loop).
 */
export const MIRROR_RESTART_BACKOFF: BackoffPolicy = { baseMs: 1_000, maxMs: 30_000 };
/** A registry that served this long after a restart is healthy again: the next exit backs off from the start. */
export const MIRROR_STABLE_MS = 60_000;

/** What a supervisor reports (for the demo's summary and the tests). */
export interface MirrorSupervision {
  /** Whether the registry is running now (false from its exit to its next successful start). */
  up: boolean;
  /** Successful restarts so far. */
  restarts: number;
  /** Starts that failed (each followed by a longer wait). */
  failedStarts: number;
}

/** Options: the backoff envelope, the random source of its jitter and the clock are injectable for tests. */
export interface MirrorSupervisorOptions {
  log: Logger;
  /** Names the registry in the log (`image cache`, or the demo's stand-in upstream). */
  name: string;
  backoff?: BackoffPolicy;
  random?: RandomSource;
  now?: () => number;
}

/** Supervises one started {@link RegistryMirror} until `signal` aborts (it is then left to the owner to stop). */
export class MirrorSupervisor {
  readonly state: MirrorSupervision = { up: true, restarts: 0, failedStarts: 0 };

  constructor(
    private readonly mirror: RegistryMirror,
    private readonly o: MirrorSupervisorOptions,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    const log = this.o.log.child({ component: 'mirror-supervisor', mirror: this.o.name, url: this.mirror.url });
    const now = this.o.now ?? Date.now;
    const aborted = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    let attempt = 0;
    let upSince = now();
    while (!signal.aborted) {
      const exit = await Promise.race([this.mirror.exited(), aborted.then(() => undefined)]);
      if (!exit || signal.aborted) return;
      this.state.up = false;
      if (now() - upSince >= MIRROR_STABLE_MS) attempt = 0;
      log.warn({ code: exit.code, signal: exit.signal }, `${this.o.name} exited`);
      for (;;) {
        const waitMs = backoffDelay(attempt, this.o.backoff ?? MIRROR_RESTART_BACKOFF, this.o.random);
        log.info({ attempt: attempt + 1, waitMs }, `${this.o.name}: restart after a wait`);
        await Promise.race([new Promise((r) => setTimeout(r, waitMs)), aborted]);
        if (signal.aborted) return;
        attempt++;
        try {
          await this.mirror.start();
        } catch (err) {
          if (!(err instanceof MirrorError)) throw err;
          this.state.failedStarts++;
          log.warn({ err: err.message, attempt }, `${this.o.name} did not start again`);
          continue;
        }
        break;
      }
      this.state.up = true;
      this.state.restarts++;
      upSince = now();
      log.info({ restarts: this.state.restarts }, `${this.o.name} restarted`);
    }
  }
}
