/**
 * A deadline signal that fires. On Node 20, `AbortSignal.any([s, AbortSignal.timeout(ms)])` holds
 * the timeout signal only weakly: a garbage collection before `ms` drops it and the combined signal
 * never aborts (seen: an Auto Scaling call to an API that never answered waited forever with a
 * 0.3 s timeout). Here the deadline is an AbortController aborted by a real timer, which keeps it
 * alive until it fires or is cleared.
 */

/** A signal that aborts after `ms` or when any of `also` aborts; call clear() once the work is done. */
export interface Deadline {
  readonly signal: AbortSignal;
  clear(): void;
}

/** The abort reason of a deadline that fired (a DOMException named TimeoutError, as AbortSignal.timeout gives). */
function timeoutReason(ms: number): DOMException {
  return new DOMException(`The operation was aborted due to timeout (${ms} ms)`, 'TimeoutError');
}

/** Starts a deadline of `ms` combined with the caller's signals. */
export function deadline(ms: number, ...also: (AbortSignal | undefined)[]): Deadline {
  const timer = new AbortController();
  const t = setTimeout(() => timer.abort(timeoutReason(ms)), ms);
  const others = also.filter((s): s is AbortSignal => s !== undefined);
  return {
    signal: others.length === 0 ? timer.signal : AbortSignal.any([timer.signal, ...others]),
    clear: () => clearTimeout(t),
  };
}

/** Runs `work` under a deadline of `ms` (and the caller's signals), clearing the timer after it. */
export async function underDeadline<T>(
  ms: number,
  signals: (AbortSignal | undefined)[],
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const d = deadline(ms, ...signals);
  try {
    return await work(d.signal);
  } finally {
    d.clear();
  }
}
