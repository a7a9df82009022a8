/**
 * Runner releases on loopback: GitHub's releases API for actions/runner
 * (`GET /repos/actions/runner/releases`, `.../releases/latest`), the same release object as a
 * mirror's `latest.json`, and the assets themselves. Each asset carries `digest: "sha256:<hex>"`
 * as GitHub's API gives it, and the release body carries the SHA-256 lines the runner's own
 * release notes have (`<!-- BEGIN SHA linux-x64 -->hex<!-- END SHA linux-x64 -->`).
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One release a test serves; assets are the bytes of each file. */
export interface FakeRelease {
  version: string;
  assets: { name: string; bytes: Buffer }[];
  /** What the published digests say; default the true SHA-256. 'none' publishes no digest at all. */
  digest?: 'true' | 'wrong' | 'none';
}

/** A running release server. */
export interface FakeReleases {
  /** Base URL: the API base for `source: github`, and the mirror URL (latest.json) alike. */
  url: string;
  /** Paths requested, in order. */
  requests: string[];
  /** Replaces the releases served (newest first is not needed: the list is sorted). */
  set(releases: FakeRelease[]): void;
  close(): Promise<void>;
}

/** Starts the release server on 127.0.0.1:0. */
export async function startFakeReleases(initial: FakeRelease[] = []): Promise<FakeReleases> {
  let releases = initial;
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push(path);
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const sorted = [...releases].sort((a, b) => compare(b.version, a.version));
    if (path === '/repos/actions/runner/releases') return json(200, sorted.map(describe));
    if (path === '/repos/actions/runner/releases/latest' || path === '/latest.json') {
      return sorted[0] ? json(200, describe(sorted[0])) : json(404, { message: 'Not Found' });
    }
    const m = /^\/download\/v([^/]+)\/([^/]+)$/.exec(path);
    const asset = m ? releases.find((r) => r.version === m[1])?.assets.find((a) => a.name === m[2]) : undefined;
    if (!asset) return json(404, { message: 'Not Found' });
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(asset.bytes.length) }).end(asset.bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  function describe(r: FakeRelease): unknown {
    const sha = (b: Buffer): string =>
      r.digest === 'wrong' ? createHash('sha256').update('not the asset').digest('hex') : createHash('sha256').update(b).digest('hex');
    const body =
      r.digest === 'none'
        ? ''
        : r.assets.map((a) => `<!-- BEGIN SHA ${platformOf(a.name)} -->${sha(a.bytes)}<!-- END SHA ${platformOf(a.name)} -->`).join('\n');
    return {
      tag_name: `v${r.version}`,
      name: `v${r.version}`,
      draft: false,
      prerelease: false,
      body,
      assets: r.assets.map((a) => ({
        name: a.name,
        size: a.bytes.length,
        browser_download_url: `${url}/download/v${r.version}/${a.name}`,
        ...(r.digest === 'none' ? {} : { digest: `sha256:${sha(a.bytes)}` }),
      })),
    };
  }

  return {
    url,
    requests,
    set(next) {
      releases = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** `actions-runner-linux-x64-2.330.0.tar.gz` → `linux-x64`. */
function platformOf(name: string): string {
  return /^actions-runner-([a-z]+-[a-z0-9]+)-/.exec(name)?.[1] ?? name;
}

function compare(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}
