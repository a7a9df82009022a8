/**
 * Host mode with `cleanup.containers.images: keep`: the shared engine's images are a cache every
 * later job trusts, so a job must not be able to retag one (`docker tag evil node:20`). The
 * baseline is every tag → image ID the engine had at preflight (root-only file in the state
 * directory); after each job every baseline tag must still name the same ID, and images that are
 * not in the baseline are removed.
 */
import http from 'node:http';
import path from 'node:path';
import { readIfExists, writeFileAtomic } from '../lib/fs.js';
import type { GuardFinding, GuardReleased } from '../lib/job-guard.js';

/** One engine call's limit: listing or removing images takes milliseconds to seconds. */
const API_TIMEOUT_MS = 30_000;
/** The baseline's file name in the agent's state directory. */
export const IMAGE_BASELINE_FILE = 'engine-images.json';

/** tag → image ID. */
export type ImageTags = Record<string, string>;

interface ImageSummary {
  Id: string;
  RepoTags?: string[] | null;
}

/** One request to the engine's API over its unix socket; the parsed JSON answer. */
function call(socket: string, method: string, p: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, path: p, method, timeout: API_TIMEOUT_MS }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 300 && res.statusCode !== 404) reject(new Error(`${method} ${p}: ${res.statusCode} ${body.trim()}`));
        else resolve(body ? JSON.parse(body) : undefined);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${p}: no answer within ${API_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The engine's images as tag → ID, and the set of IDs. */
export async function listTags(socket: string): Promise<{ tags: ImageTags; ids: Set<string> }> {
  const images = (await call(socket, 'GET', '/images/json')) as ImageSummary[];
  const tags: ImageTags = {};
  for (const img of images) for (const t of img.RepoTags ?? []) if (t !== '<none>:<none>') tags[t] = img.Id;
  return { tags, ids: new Set(images.map((i) => i.Id)) };
}

/** Takes the baseline (at preflight) into `<stateDir>/engine-images.json`. */
export async function takeImageBaseline(socket: string, stateDir: string): Promise<ImageTags> {
  const { tags } = await listTags(socket);
  await writeFileAtomic(path.join(stateDir, IMAGE_BASELINE_FILE), JSON.stringify(tags));
  return tags;
}

export async function readImageBaseline(stateDir: string): Promise<ImageTags | undefined> {
  const text = await readIfExists(path.join(stateDir, IMAGE_BASELINE_FILE));
  return text === undefined ? undefined : (JSON.parse(text) as ImageTags);
}

/** Baseline tags that no longer name their baseline image, one line each. */
export function retagged(baseline: ImageTags, now: ImageTags): string[] {
  const out: string[] = [];
  for (const [tag, id] of Object.entries(baseline)) {
    if (now[tag] === undefined) out.push(`image tag ${tag} is gone (baseline ${id})`);
    else if (now[tag] !== id) out.push(`image tag ${tag} now names ${now[tag]}, not its baseline ${id}`);
  }
  return out;
}

/** Removes every image whose ID is not a baseline image; returns how many were removed. */
export async function removeOtherImages(socket: string, baseline: ImageTags): Promise<number> {
  const keep = new Set(Object.values(baseline));
  const { ids } = await listTags(socket);
  let n = 0;
  for (const id of ids) {
    if (keep.has(id)) continue;
    await call(socket, 'DELETE', `/images/${encodeURIComponent(id)}?force=1`);
    n++;
  }
  return n;
}

/** A host-mode job's release: removes the images outside the baseline (skipped without one). */
export async function releaseHostImages(socket: string, stateDir: string): Promise<GuardReleased> {
  const baseline = await readImageBaseline(stateDir);
  if (!baseline) return { outcome: 'skipped', reason: 'no image baseline was taken at preflight' };
  const removed = await removeOtherImages(socket, baseline);
  return { outcome: 'ok', removed: { 'images not in the baseline': { count: removed, bytes: 0 } } };
}

/** A host-mode job's verify: every baseline tag still names its image. */
export async function verifyHostImages(socket: string, stateDir: string): Promise<GuardFinding[]> {
  const baseline = await readImageBaseline(stateDir);
  if (!baseline) return [{ problem: 'no image baseline of the host engine: a retagged image could not be detected' }];
  const { tags } = await listTags(socket);
  return retagged(baseline, tags).map((problem) => ({ problem }));
}
