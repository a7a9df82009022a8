/**
 * The GitHub slots of a host that knows its place in the fleet (host config `fleet`): after a
 * failure or a limit answer, every GitHub call of the host waits for its next slot (the retry
 * hook closes the host's gate until then, and the registration loop sleeps until then). The
 * window is sized from GitHub's secondary limit, the one a fleet coming back from an outage
 * meets first: each registration writes once to each endpoint it uses (token mint, the stale
 * runner's DELETE, generate-jitconfig), so one write per slot and endpoint keeps every endpoint
 * under the limit, and a fleet of `size` is back within one window, about size / 180 minutes.
 */
import { FleetSlots, type FleetPlace } from '../lib/fleet-slots.js';

/** GitHub's secondary limit: 900 points a minute per endpoint, a write costing 5. */
export const WRITES_PER_MINUTE = 900 / 5;
/**
 * Slots are 5% longer than one write's share of the minute: that leaves about nine writes a
 * minute for hosts whose clocks are a few hundred ms off and for first tries of hosts that were
 * not retrying, while the fleet is still back well within 1.2x the limit's bound.
 */
export const SLOT_MARGIN = 1.05;
/**
 * However small the fleet, a failing host tries at most once a minute: the limit counts by the
 * minute, so a shorter window gains nothing for the fleet, and a host whose own request is wrong
 * must not poll faster than that.
 */
export const MIN_WINDOW_MS = 60_000;

/** The window of a fleet of `size`: one slot per host, each a write's share of the limit plus the margin. */
export function githubWindowMs(size: number): number {
  return Math.max(MIN_WINDOW_MS, Math.ceil(((size * 60_000) / WRITES_PER_MINUTE) * SLOT_MARGIN));
}

/** The GitHub retry slots of the host at `place`. */
export function githubSlots(place: FleetPlace): FleetSlots {
  return new FleetSlots(place, githubWindowMs(place.size));
}
