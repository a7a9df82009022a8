/**
 * The recycle slots of a host that knows its place in the fleet (host config `fleet`): a recycle
 * call the cloud API refused for its rate is tried again only in the host's own slot of a window
 * sized from that API's bucket, so a fleet recycled at once (a policy change, a runner
 * deprecation) is through in about the time the bucket allows, each host refused at most once.
 *
 * The first call is never held back: the bucket's burst admits the first hosts at once, and a host
 * recycling alone is not delayed for a fleet that is not recycling. The refused hosts need
 * (size - burst) / perSecond seconds at the least, but which hosts the burst took is chance, so
 * every host keeps a slot: the window is size / perSecond plus a margin, each slot at least one
 * token's refill apart. A window sized for size - burst would put the refused hosts' slots closer
 * than the refill, and a run of them would find the bucket empty and be refused again (a second
 * refusal costs a whole window). So the fleet is through within size / (size - burst) x 1.05 of
 * the bound: 1.1x for a thousand hosts on AWS's bucket, 1.3x on Azure's larger burst.
 */
import { FleetSlots, type FleetPlace } from '../lib/fleet-slots.js';

/** A cloud API's token bucket: `burst` calls at once, refilled at `perSecond`. */
export interface ApiRate {
  burst: number;
  perSecond: number;
}

/**
 * The documented buckets of the APIs the providers call. AWS publishes none for Auto Scaling:
 * EC2's for mutating actions (50, 5 a second). Azure Resource Manager: 200 writes, 10 a second, per
 * subscription and region. Compute Engine: a per-minute quota of a few thousand, 1,200 at the least.
 */
export const CLOUD_API_RATES = {
  'aws-asg': { burst: 50, perSecond: 5 },
  'gcp-mig': { burst: 1200, perSecond: 20 },
  'azure-vmss': { burst: 200, perSecond: 10 },
} as const satisfies Record<string, ApiRate>;

/**
 * Slots are 5% longer than one call's share of the refill: the bucket then always has a token by
 * the time a slot comes, with room for hosts whose clocks are a few hundred ms apart.
 */
export const RECYCLE_SLOT_MARGIN = 1.05;
/**
 * A fleet the burst holds still retries in slots of at least ten seconds: its refusals then come
 * from others sharing the account, and ten seconds of refill serves a few dozen of them.
 */
export const MIN_RECYCLE_WINDOW_MS = 10_000;

/** The window of a fleet of `size` against `rate`: one token's refill per host, plus the margin. */
export function recycleWindowMs(size: number, rate: ApiRate): number {
  return Math.max(MIN_RECYCLE_WINDOW_MS, Math.ceil((size / rate.perSecond) * 1000 * RECYCLE_SLOT_MARGIN));
}

/** The recycle slots of the host at `place` against `rate`. */
export function recycleSlots(place: FleetPlace, rate: ApiRate): FleetSlots {
  return new FleetSlots(place, recycleWindowMs(place.size, rate));
}
