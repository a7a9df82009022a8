/**
 * Where a newer runner comes from (host config `runner.updates.source`): GitHub's releases API
 * for actions/runner (`github`, through github.apiUrl and the agent's credentials), or a mirror
 * URL that serves `latest.json` (the release object exactly as GitHub's API returns it) with the
 * assets it names. A release is usable only with a published SHA-256 for its asset: the asset's
 * `digest` field (`sha256:<hex>`), or the `BEGIN SHA <platform>` line of the release notes.
 */

/** The release the update would install. */
export interface ReleaseCandidate {
  version: string;
  assetName: string;
  url: string;
  /** Lower-case hex SHA-256 as published. */
  sha256: string;
}

/** Why no candidate could be had. */
export class ReleaseSourceError extends Error {
  override name = 'ReleaseSourceError';
}

/** How the source is asked. */
export interface ReleaseQuery {
  /** 'github' or a mirror base URL. */
  source: string;
  /** The REST API base for 'github' (github.apiUrl). */
  apiUrl: string;
  /** e.g. 'linux-x64'. */
  platform: string;
  /** Authorization for the API (a token); never sent to a mirror or asset host of another origin. */
  token?: string;
  fetch: typeof fetch;
  /** Deadline of the request. */
  timeoutMs: number;
}

interface ReleaseJson {
  tag_name?: unknown;
  draft?: unknown;
  prerelease?: unknown;
  body?: unknown;
  assets?: { name?: unknown; browser_download_url?: unknown; digest?: unknown }[];
}

/** The newest release the source offers for `platform`, with its published digest. */
export async function latestRelease(q: ReleaseQuery): Promise<ReleaseCandidate> {
  const url =
    q.source === 'github'
      ? `${q.apiUrl.replace(/\/+$/, '')}/repos/actions/runner/releases/latest`
      : `${q.source.replace(/\/+$/, '')}/latest.json`;
  const headers: Record<string, string> = { accept: 'application/vnd.github+json' };
  if (q.source === 'github' && q.token) headers.authorization = `token ${q.token}`;
  let rel: ReleaseJson;
  try {
    const res = await q.fetch(url, { headers, signal: AbortSignal.timeout(q.timeoutMs) });
    if (!res.ok) throw new ReleaseSourceError(`${url} answered ${res.status}`);
    rel = (await res.json()) as ReleaseJson;
  } catch (err) {
    if (err instanceof ReleaseSourceError) throw err;
    throw new ReleaseSourceError(`${url} could not be read: ${(err as Error).message}`, { cause: err });
  }
  const tag = typeof rel.tag_name === 'string' ? rel.tag_name : '';
  const version = tag.replace(/^v/, '');
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new ReleaseSourceError(`${url}: tag_name "${tag}" is not a runner version`);
  if (rel.draft === true || rel.prerelease === true) throw new ReleaseSourceError(`${url}: v${version} is a draft or a prerelease`);
  const assetName = `actions-runner-${q.platform}-${version}.tar.gz`;
  const asset = rel.assets?.find((a) => a.name === assetName);
  if (!asset || typeof asset.browser_download_url !== 'string')
    throw new ReleaseSourceError(`${url}: v${version} has no asset ${assetName}`);
  const sha256 = digestOf(asset.digest) ?? bodyDigest(rel.body, q.platform);
  if (!sha256) throw new ReleaseSourceError(`${url}: v${version} publishes no SHA-256 for ${assetName}`);
  return { version, assetName, url: asset.browser_download_url, sha256 };
}

function digestOf(v: unknown): string | undefined {
  const m = typeof v === 'string' ? /^sha256:([0-9a-f]{64})$/i.exec(v) : null;
  return m ? m[1]!.toLowerCase() : undefined;
}

function bodyDigest(body: unknown, platform: string): string | undefined {
  if (typeof body !== 'string') return undefined;
  const p = platform.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`<!-- BEGIN SHA ${p} -->\\s*([0-9a-f]{64})\\s*<!-- END SHA ${p} -->`, 'i').exec(body);
  return m ? m[1]!.toLowerCase() : undefined;
}

/** -1, 0 or 1 as `a` is older than, equal to or newer than `b` (x.y.z). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}
