/**
 * The images each team's jobs pulled, learnt at the end of each job (warm-learn.ts) and pulled by
 * digest into the next engine of the same team: root-only state, one file per team, most recent
 * first, capped. Another team's engine never reads it.
 *
 * ```
 *  <stateDir>/warm-images/          root, 0700
 *    <team>.json                    root, 0600: { team, images: ["docker.io/library/node@sha256:<64>", ...] }
 * ```
 * Every entry is checked again when read (image-ref.ts): a file edited by hand or cut short
 * yields fewer entries, never a reference that is not a Docker Hub name by digest.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../lib/fs.js';
import { canonicalRef, parseHubRef } from './image-ref.js';

/** The team names the policy accepts: none can name a directory or start with a dot. */
const TEAM = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** The policy's `docker.warm.max` is at most 20; a file longer than this is not ours. */
const MAX_STORED = 64;

/** The team's file, or undefined for a team name the policy could not have given. */
function teamFile(stateDir: string, team: string): string | undefined {
  return TEAM.test(team) ? path.join(stateDir, 'warm-images', `${team}.json`) : undefined;
}

/** A canonical `docker.io/<repo>@sha256:<64>` for a stored entry, or undefined. */
export function digestRef(s: unknown): string | undefined {
  const r = parseHubRef(s);
  return r.ok && r.ref.digest !== undefined && r.ref.tag === undefined ? canonicalRef(r.ref) : undefined;
}

/** The team's learnt images, most recent first (none when it has no file yet). */
export async function readLearned(stateDir: string, team: string): Promise<string[]> {
  const file = teamFile(stateDir, team);
  if (!file) return [];
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return [];
  }
  const d = data as { team?: unknown; images?: unknown };
  if (d.team !== team || !Array.isArray(d.images)) return [];
  return d.images
    .slice(0, MAX_STORED)
    .map(digestRef)
    .filter((x): x is string => x !== undefined);
}

/** Puts `found` (most recent first) before the team's earlier entries, drops `forget`, keeps `max`. */
export async function recordLearned(
  stateDir: string,
  team: string,
  found: readonly string[],
  max: number,
  forget: readonly string[] = [],
): Promise<string[]> {
  const file = teamFile(stateDir, team);
  if (!file) return [];
  const gone = new Set(forget);
  const images = [...new Set([...found, ...(await readLearned(stateDir, team))])].filter((x) => !gone.has(x)).slice(0, max);
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await fsp.chmod(path.dirname(file), 0o700);
  await writeFileAtomic(file, `${JSON.stringify({ team, images }, null, 1)}\n`, 0o600);
  return images;
}
