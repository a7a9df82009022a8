/**
 * Retry waits with FULL jitter: the wait before retry n (0-based) is uniform in
 * [0, min(maxMs, baseMs * 2^n)]. A fleet that lost its API at the same moment then comes back
 * spread over the whole window instead of in lockstep (see docs on "exponential backoff and
 * jitter": full jitter gives the fewest collisions for the same total work).
 */

/** A source of uniform numbers in [0, 1); injectable so tests can fix the sequence. */
export type RandomSource = () => number;

/** The exponential envelope the jitter is drawn under. */
export interface BackoffPolicy {
  /** Envelope of the first retry. */
  baseMs: number;
  /** The envelope never grows past this. */
  maxMs: number;
}

/** The envelope (upper bound) of retry `attempt`: min(maxMs, baseMs * 2^attempt). */
export function backoffCeiling(attempt: number, p: BackoffPolicy): number {
  const n = Math.max(0, Math.floor(attempt));
  // 2^n overflows to Infinity long after the cap matters; min() keeps the result finite.
  return Math.max(0, Math.min(p.maxMs, p.baseMs * 2 ** Math.min(n, 1024)));
}

/** The wait before retry `attempt` (0-based): uniform in [0, ceiling], whole milliseconds. */
export function backoffDelay(attempt: number, p: BackoffPolicy, random: RandomSource = Math.random): number {
  return Math.floor(random() * (backoffCeiling(attempt, p) + 1));
}

/**
 * A small seeded generator (mulberry32) for tests and simulations that want a repeatable jitter
 * sequence; not for anything secret.
 */
export function seededRandom(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
