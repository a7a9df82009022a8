/**
 * The registry mirror as a job's engine reaches it. The engine lives behind slirp4netns, where
 * the host's loopback is 10.0.2.2 and reachable only when host loopback is allowed; a mirror on
 * any other address keeps the host's loopback closed to the engine.
 */

/** slirp4netns's fixed address of the host (its default 10.0.2.0/24 network). */
export const SLIRP_HOST_ADDRESS = '10.0.2.2';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** The mirror URL for the engine, and whether the engine must reach the host's loopback for it. */
export function mirrorForEngine(mirror: string | null | undefined): { url?: string; hostLoopback: boolean } {
  if (!mirror) return { hostLoopback: false };
  const u = new URL(mirror);
  if (!LOOPBACK.has(u.hostname)) return { url: u.toString().replace(/\/$/, ''), hostLoopback: false };
  u.hostname = SLIRP_HOST_ADDRESS;
  return { url: u.toString().replace(/\/$/, ''), hostLoopback: true };
}
