/**
 * The next job's engine, started while the previous job's host is verified (JobGuard.prewarm),
 * so that a job's first `docker` call finds it answering (the listener does not wait for any
 * engine: its socket accepts from the spawn on, rootless-engine.ts). It is started only after
 * the previous job's processes were killed and proven gone, as the runner user with a fresh
 * directory, so nothing of the previous job can reach it; the next prepare takes it, and one
 * nobody takes is stopped:
 *
 * ```
 *  prewarm ─► <jobRoot>/.engine-warm-<hex>/   root, 0711
 *               engine.json                   its record until a job takes it
 *               engine/                       the engine directory (as in a job's directory)
 *  prepare ─► take(key): same runner user and mirror, still running (answering or still starting:
 *             its socket queues the job's calls) → the job's record points here
 *             otherwise stopped and deleted; the job gets a cold start
 *  unclaimed for WARM_UNCLAIMED_MS (the host was not reused) → stopped and deleted
 * ```
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Logger } from '../lib/log.js';
import { describeError } from '../lib/errors.js';
import { pidAlive, runCommand } from '../lib/process.js';
import { createWarmParent, type Launched } from './launch.js';
import { engineLayoutAt, EngineStartError, type EngineLayout } from './rootless-engine.js';
import { killEngine } from './teardown.js';

/**
 * A reused host's next prepare comes seconds after verification (the decision and one JIT
 * registration); an engine still unclaimed after two minutes belongs to a host that was not
 * reused (quarantined, recycled, draining) and is stopped.
 */
export const WARM_UNCLAIMED_MS = 120_000;
/** Deleting a warm engine's directory (vfs layers at most of an empty engine): background, bounded. */
const WARM_DELETE_TIMEOUT_MS = 600_000;

/** The name prefix of warm engine directories under the job root. */
export const WARM_DIR_PREFIX = '.engine-warm-';

interface Slot {
  key: string;
  dir: string;
  launched: Promise<Launched | undefined>;
  /** Set when the engine died or never answered (its `ready` rejected). */
  failed: boolean;
  abort: AbortController;
  timer: NodeJS.Timeout;
}

/** At most one warm engine per slot. */
export class WarmEngine {
  private slot: Slot | undefined;

  /** `track` receives every background deletion (the guard's drain waits for them). */
  constructor(private readonly track: (p: Promise<void>) => void) {}

  /** True while a warm engine is starting or waiting to be taken. */
  get pending(): boolean {
    return this.slot !== undefined;
  }

  /**
   * Starts a warm engine under `jobRoot` unless one is there. `key` says what it was started
   * for (runner user, mirror); `launch` starts it in the given layout, or resolves undefined
   * when the host cannot have one now. Never throws.
   */
  start(
    key: string,
    jobRoot: string,
    launch: (layout: EngineLayout, signal: AbortSignal) => Promise<Launched | undefined>,
    log: Logger,
  ): void {
    if (this.slot) return;
    const dir = path.join(jobRoot, `${WARM_DIR_PREFIX}${randomBytes(4).toString('hex')}`);
    const abort = new AbortController();
    const layout = engineLayoutAt(path.join(dir, 'engine'), path.join(dir, 'engine.json'));
    const failed = (err: unknown): undefined => {
      log.warn(
        { err: describeError(err), ...(err instanceof EngineStartError ? { engineLog: err.log } : {}) },
        'the warm engine did not start; the next job gets a cold start',
      );
      return undefined;
    };
    const launched = (async () => {
      await createWarmParent(dir);
      const l = await launch(layout, abort.signal);
      l?.ready.catch((err: unknown) => {
        slot.failed = true;
        failed(err);
      });
      return l;
    })().catch(failed);
    const timer = setTimeout(() => void this.discard(), WARM_UNCLAIMED_MS);
    timer.unref();
    const slot: Slot = { key, dir, launched, failed: false, abort, timer };
    this.slot = slot;
  }

  /**
   * The warm engine for a job asking `key`, as soon as it runs (its `ready` may still be pending:
   * the socket queues the job's calls); undefined (after stopping it) when there is none, it was
   * started for something else, or it died.
   */
  async take(key: string): Promise<Launched | undefined> {
    const slot = this.slot;
    this.slot = undefined;
    if (!slot) return undefined;
    clearTimeout(slot.timer);
    const l = await slot.launched;
    if (l && slot.key === key && !slot.failed && pidAlive(l.rec.pid)) return l;
    this.track(l ? stop(l, slot.dir) : deleteDir(slot.dir));
    return undefined;
  }

  /** Stops the warm engine, if any, and deletes its directory (in the background). */
  async discard(): Promise<void> {
    const slot = this.slot;
    this.slot = undefined;
    if (!slot) return;
    clearTimeout(slot.timer);
    slot.abort.abort();
    const l = await slot.launched;
    this.track(l ? stop(l, slot.dir) : deleteDir(slot.dir));
  }
}

/** Kills a warm engine's processes, then deletes its directory. */
async function stop(l: Launched, dir: string): Promise<void> {
  await killEngine(l.rec).catch(() => undefined);
  await deleteDir(dir);
}

async function deleteDir(dir: string): Promise<void> {
  await runCommand('rm', ['-rf', '--one-file-system', '--', dir], { timeoutMs: WARM_DELETE_TIMEOUT_MS }).catch(() => undefined);
}
