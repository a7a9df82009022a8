/**
 * Whether the host's image cache answers, for /status and `runner-warden status`: a GET of the
 * registry API root (`/v2/`) with node's own http client, so the idle agent's sampler loads no
 * fetch client. Any HTTP answer means the registry is up (a registry behind auth answers 401);
 * no answer, a refused connection or a timeout means down, and engines then pull from the
 * upstream themselves.
 */
import http from 'node:http';
import https from 'node:https';
import type { JanitorTotals } from './mirror-janitor.js';

/** A loopback registry answers `/v2/` in a millisecond; 2 s covers a loaded host and still shows a hung one as down. */
export const MIRROR_STATUS_TIMEOUT_MS = 2_000;

/** What /status shows of the image cache. */
export interface ImageCacheStatus {
  /** The policy's docker.mirror. */
  url: string;
  up: boolean;
  /** Why it is down (the connection error or the timeout). */
  error?: string;
  /** The agent's last prune found the cache over its cap with every blob in use (only for this host's cache). */
  full?: boolean;
  /** Cached blob bytes and the cap at the last prune (only for this host's cache). */
  bytes?: number;
  capBytes?: number;
}

/** Probes `url` once; never throws. */
export function probeMirror(url: string, signal?: AbortSignal, timeoutMs = MIRROR_STATUS_TIMEOUT_MS): Promise<ImageCacheStatus> {
  return new Promise((resolve) => {
    let target: URL;
    try {
      target = new URL(`${url.replace(/\/$/, '')}/v2/`);
    } catch {
      resolve({ url, up: false, error: 'not a URL' });
      return;
    }
    const client = target.protocol === 'https:' ? https : http;
    const req = client.get(target, { timeout: timeoutMs, ...(signal ? { signal } : {}) }, (res) => {
      res.resume();
      resolve({ url, up: true });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ url, up: false, error: err.code ? `${err.code}: ${err.message}` : err.message }),
    );
  });
}

/** The probe plus what the agent's last prune found, when it prunes this cache. */
export async function imageCacheStatus(url: string, totals: JanitorTotals | undefined, signal?: AbortSignal): Promise<ImageCacheStatus> {
  const s = await probeMirror(url, signal);
  const last = totals?.last;
  return last ? { ...s, full: last.overCap, bytes: last.bytes, capBytes: last.capBytes } : s;
}
