/**
 * The drain request (SIGTERM, `runner-warden drain`, a spot or scale-in notice): set once, read by
 * every wait of the agent through `signal`.
 */

/** The reason a drain aborts waits with (an AbortError, so aborted waits read as outcomes). */
export class DrainSignal extends Error {
  override name = 'AbortError';
  constructor(readonly reason: string) {
    super(`draining: ${reason}`);
  }
}

/** Whether, why and how the agent is draining. */
export class DrainControl {
  private readonly ac = new AbortController();
  draining = false;
  reason = '';
  /** The drain asks for recycling (spot notice, `runner-warden drain`) rather than a plain stop (SIGTERM). */
  recycle = false;
  /** Epoch ms by which the host goes away (spot notice); the busy-drain grace ends before it. */
  deadlineAt: number | undefined;

  /** Aborts when a drain starts. */
  get signal(): AbortSignal {
    return this.ac.signal;
  }

  /** Starts draining; later calls may only add `recycle` or an earlier deadline. True on the first call. */
  request(reason: string, opts: { recycle?: boolean; deadlineAt?: number } = {}): boolean {
    if (opts.recycle) this.recycle = true;
    if (opts.deadlineAt !== undefined) this.deadlineAt = Math.min(this.deadlineAt ?? Infinity, opts.deadlineAt);
    if (this.draining) return false;
    this.draining = true;
    this.reason = reason;
    this.ac.abort(new DrainSignal(reason));
    return true;
  }
}

/**
 * Resolves when `signal` aborts. With `until`, the listener is removed once `until` aborts, so a
 * long-lived signal (the drain) does not collect one listener per job.
 */
export function abortable(signal: AbortSignal, until?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const onAbort = (): void => resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    until?.addEventListener('abort', () => signal.removeEventListener('abort', onAbort), { once: true });
  });
}
