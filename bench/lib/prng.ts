/** Seeded randomness for the benches: fault schedules that a seed repeats. */

import { seededRandom } from '../../src/lib/backoff.js';

/** The agent's own seeded generator (mulberry32), so a fault schedule and a jitter sequence agree on what a seed means. */
export function prng(seed: number): () => number {
  return seededRandom(seed);
}

/** One element of `xs`, drawn from `rand`. */
export const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
