/**
 * Slot pacing: each host of a fleet that shares one rate-limited API (one GitHub App
 * installation, one cloud account) retries only at its own moment of a repeating window. Host
 * `index` of `size` owns the instants `offset + k * window`, with `offset = index * window / size`:
 * no two hosts of different indexes ever share a slot, and however many hosts are retrying, the
 * fleet as a whole sends at most `size` retries per window. The window is sized by the caller from
 * the API's limit, so a fleet coming back from an outage fills the limit without going over it.
 *
 * Random jitter cannot do that: independent choices always leave some minutes over the limit (and
 * the hosts in them refused again), and spreading wide enough to avoid it makes the recovery slow.
 * The price is that a host must know its place: the host config's `fleet` section (docs/fleet-scale.md).
 * Slots are instants of the epoch clock, so hosts agree on them as far as their clocks agree (NTP
 * keeps them within a few milliseconds of each other; the window sizes leave room for more).
 */
import { ConfigError } from './errors.js';

/** Where this host stands in its fleet: `index` in [0, size). */
export interface FleetPlace {
  size: number;
  index: number;
}

/** The host config's `fleet` section as the schema types it (index optional). */
export interface FleetSection {
  size: number;
  index?: number;
}

/**
 * The place of this host: the configured index, or, when there is none, a hash of the host name
 * modulo the size. A hash needs no coordination but can give two hosts the same index (they then
 * share a slot); docs/fleet-scale.md says how much room that takes. `file` names the config in errors.
 */
export function fleetPlace(section: FleetSection, hostname: string, file: string): FleetPlace {
  const { size, index } = section;
  if (!Number.isInteger(size) || size < 1) {
    throw new ConfigError(`fleet.size ${size} is not a fleet size`, file, [`${file}: fleet.size: expected an integer >= 1, got ${size}`]);
  }
  if (index === undefined) return { size, index: hashName(hostname) % size };
  if (!Number.isInteger(index) || index < 0 || index >= size) {
    throw new ConfigError(`fleet.index ${index} is outside the fleet`, file, [
      `${file}: fleet.index: expected an integer from 0 to fleet.size - 1 (${size - 1}), got ${index}`,
    ]);
  }
  return { size, index };
}

/** FNV-1a (32 bits) of the name: stable across hosts, versions and restarts. */
export function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The slots of one host: its instants in a window of `windowMs` shared by `place.size` hosts. */
export class FleetSlots {
  /** Length of one host's slot (window / size). */
  readonly slotMs: number;
  /** Where in the window this host's slot starts. */
  readonly offsetMs: number;

  constructor(
    readonly place: FleetPlace,
    /** The repeating window; every host has one slot in each. */
    readonly windowMs: number,
  ) {
    if (!(windowMs > 0)) throw new RangeError(`a slot window must be positive, got ${windowMs}`);
    this.slotMs = windowMs / place.size;
    this.offsetMs = place.index * this.slotMs;
  }

  /** The start of this host's first slot at or after `notBefore` (epoch ms, whole ms, rounded up). */
  nextSlot(notBefore: number): number {
    const k = Math.ceil((notBefore - this.offsetMs) / this.windowMs);
    return Math.ceil(this.offsetMs + k * this.windowMs);
  }

  /**
   * The start of the slot the next try goes in after a failure at `now`, when the answer imposed
   * no wait or `imposedMs` (retry-after, a reset): the later of the two wins, and a slot never
   * holds two tries of this host.
   */
  retryAt(now: number, imposedMs = 0): number {
    return this.nextSlot(now + Math.max(1, imposedMs));
  }
}
