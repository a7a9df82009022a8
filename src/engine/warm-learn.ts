/**
 * Learning a team's warm images: at the end of a job, before its engine is torn down, the agent
 * asks that engine (as the runner user, engine-call.ts) which images it holds and records their
 * Docker Hub repo digests for the team (warm-store.ts). The job controlled that engine and its
 * data root, and could answer in its place: everything read here is hostile input.
 *
 * - Only `name@sha256:<64 hex>` Docker Hub references are kept (image-ref.ts); anything else is
 *   dropped, a malformed entry with a warning.
 * - The next engine pulls an entry BY DIGEST through the cache: the engine checks the manifest
 *   against the digest and every layer against its own, so an entry can only make it fetch what
 *   the upstream serves under that digest; a pull by digest creates no tag, so `node:20` in the
 *   next job is still resolved by the engine itself, through the cache.
 * - What the engine was asked to warm is not learnt again (it would keep itself alive forever).
 */
import type { Logger } from '../lib/log.js';
import { describeError } from '../lib/errors.js';
import { canonicalRef, parseHubRef } from './image-ref.js';
import { engineCallAsUser } from './engine-call.js';
import { recordLearned } from './warm-store.js';
import type { WarmPlan, WarmTotals } from './warm-images.js';

/** Reading the image list: an engine answers in milliseconds; this bounds what a job that answers in its place can make release wait. */
const LIST_TIMEOUT_MS = 5_000;
/** An image list of up to ~1000 images fits; a longer answer is cut and fails to parse (nothing learnt). */
const LIST_MAX_BYTES = 1 << 20;
/** At most this many images and repo digests per image are looked at. */
const MAX_IMAGES = 1000;
const MAX_DIGESTS_PER_IMAGE = 32;
/** Entries quoted in the warning about dropped ones. */
const QUOTED = 3;

/** What learn() saw: the references kept (most recent first) and the ones dropped. */
export interface Learnt {
  kept: string[];
  malformed: string[];
  notHub: string[];
}

/**
 * Reads the images the engine on `socket` holds and records the team's new ones. Never throws;
 * an engine that does not answer (dead, or the job's stand-in hanging) teaches nothing.
 */
export async function learnWarmImages(
  socket: string,
  user: { uid: number; gid: number },
  plan: Pick<WarmPlan, 'team' | 'stateDir' | 'policy' | 'listed' | 'learnt'>,
  totals: WarmTotals,
  log: Logger,
  cgroup?: string,
): Promise<Learnt | undefined> {
  const a = await engineCallAsUser({
    socket,
    user,
    method: 'GET',
    path: '/images/json',
    timeoutMs: LIST_TIMEOUT_MS,
    tailBytes: LIST_MAX_BYTES,
    ...(cgroup !== undefined ? { cgroup } : {}),
  });
  if (a.status !== 200) {
    log.info({ status: a.status, error: a.error }, 'warm images: the engine did not list its images; nothing learnt');
    return undefined;
  }
  let list: unknown;
  try {
    list = JSON.parse(a.body);
  } catch {
    totals.dropped++;
    log.warn({ bytes: a.body.length }, 'warm images: the image list is not JSON; nothing learnt');
    return undefined;
  }
  if (!Array.isArray(list)) {
    totals.dropped++;
    log.warn({}, 'warm images: the image list is not a list; nothing learnt');
    return undefined;
  }
  const learnt = pickDigests(list.slice(0, MAX_IMAGES), new Set([...plan.listed, ...plan.learnt]));
  totals.dropped += learnt.malformed.length + learnt.notHub.length;
  if (learnt.malformed.length > 0)
    log.warn({ count: learnt.malformed.length, first: learnt.malformed.slice(0, QUOTED) }, 'warm images: malformed entries dropped');
  if (learnt.notHub.length > 0)
    log.info({ count: learnt.notHub.length, first: learnt.notHub.slice(0, QUOTED) }, 'warm images: not Docker Hub, not learnt');
  try {
    const stored = await recordLearned(plan.stateDir, plan.team, learnt.kept, plan.policy.max);
    log.info({ team: plan.team, learnt: learnt.kept.length, stored: stored.length }, 'warm images learnt');
  } catch (err) {
    log.warn({ err: describeError(err) }, 'warm images: the team list could not be written');
  }
  return learnt;
}

const canonical = (t: unknown): string => {
  const r = parseHubRef(t);
  return r.ok ? canonicalRef(r.ref) : '';
};

/** The Docker Hub repo digests of `images` (the engine's `/images/json`), newest image first, minus `skip`. */
export function pickDigests(images: unknown[], skip: Set<string>): Learnt {
  const out: Learnt = { kept: [], malformed: [], notHub: [] };
  for (const i of images) if (typeof i !== 'object' || i === null) out.malformed.push(`an entry of type ${i === null ? 'null' : typeof i}`);
  const rows = images
    .filter((i): i is { Created?: unknown; RepoDigests?: unknown; RepoTags?: unknown } => typeof i === 'object' && i !== null)
    .map((i) => ({
      created: typeof i.Created === 'number' ? i.Created : 0,
      digests: Array.isArray(i.RepoDigests) ? (i.RepoDigests as unknown[]) : [],
      tags: Array.isArray(i.RepoTags) ? (i.RepoTags as unknown[]) : [],
    }))
    .sort((x, y) => y.created - x.created);
  for (const row of rows) {
    // An image the operator lists by name is warmed by that name anyway.
    if (row.tags.slice(0, MAX_DIGESTS_PER_IMAGE).some((t) => skip.has(canonical(t)))) continue;
    for (const d of row.digests.slice(0, MAX_DIGESTS_PER_IMAGE)) {
      const r = parseHubRef(d);
      const quoted = typeof d === 'string' ? d.slice(0, 120) : typeof d;
      if (!r.ok) (/not Docker Hub/.test(r.why) ? out.notHub : out.malformed).push(quoted);
      else if (r.ref.digest === undefined || r.ref.tag !== undefined) out.malformed.push(quoted);
      else {
        const ref = canonicalRef(r.ref);
        if (!skip.has(ref) && !out.kept.includes(ref)) out.kept.push(ref);
      }
    }
  }
  return out;
}
