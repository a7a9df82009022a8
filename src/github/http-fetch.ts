/**
 * The agent's fetch for the GitHub API, over node:http and node:https, passed to Octokit as its
 * `request.fetch`. Node's global fetch and its `Response` and `Headers` are undici, Node's second
 * HTTP client with its parser compiled from WebAssembly: loading it costs an idle agent about
 * 11 MiB, and the agent has node:https loaded anyway (docs/release.md). This one covers what
 * Octokit uses: method, headers, a string or byte body, the abort signal, redirects (follow,
 * manual, error) and compressed answers; its answers are whole bodies in memory (fetch-answer.ts).
 *
 * Proxies: as before it, the agent's API calls go direct (the environment's proxy variables are
 * the listener's, host config `runner.env`).
 */
import http from 'node:http';
import https from 'node:https';
import { AnswerHeaders, FetchAnswer, NULL_BODY_STATUS, requestHeaders, type HttpInit } from './fetch-answer.js';

/**
 * The largest answer body kept in memory. The agent's calls answer a few KiB (a runner list page
 * of 100 is about 60 KiB); 32 MiB means a runaway or hostile server fails the call rather than
 * the agent.
 */
export const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/** Redirects followed per call, as fetch's "follow" mode (whose own limit is 20) but tighter. */
const MAX_REDIRECTS = 5;

const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);

/** A fetch over node:http(s) and what closing it takes (its kept-alive connections). */
export interface NodeFetch {
  fetch: (input: string | URL, init?: HttpInit) => Promise<FetchAnswer>;
  close(): void;
}

/** Options of createHttpFetch; `ca`: the certificates HTTPS trusts (default: Node's own trust). */
export interface HttpFetchOptions {
  ca?: string[];
}

export function createHttpFetch(opts: HttpFetchOptions = {}): NodeFetch {
  const agents = {
    'https:': new https.Agent({ ...(opts.ca ? { ca: opts.ca } : {}), keepAlive: true }),
    'http:': new http.Agent({ keepAlive: true }),
  };

  const nodeFetch = async (input: string | URL, init: HttpInit = {}): Promise<FetchAnswer> => {
    if (typeof input !== 'string' && !(input instanceof URL)) {
      throw new TypeError('the agent fetch takes a URL and an init object, not a Request');
    }
    let url = new URL(String(input));
    let method = (init.method ?? 'GET').toUpperCase();
    const headers = requestHeaders(init.headers);
    let body = toBytes(init.body);
    const signal = init.signal ?? undefined;
    for (let hop = 0; ; hop++) {
      const res = await requestOnce(url, method, headers, body, signal, agents);
      const location = res.headers.get('location');
      if (init.redirect === 'manual' || !REDIRECT_STATUS.has(res.status) || !location) return res;
      if (init.redirect === 'error' || hop >= MAX_REDIRECTS) {
        throw new TypeError('fetch failed', { cause: new Error(`redirect not followed (${res.status} to ${location})`) });
      }
      const next = new URL(location, url);
      // A credential must not follow a redirect to another origin (fetch drops it the same way).
      if (next.origin !== url.origin) delete headers.authorization;
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        delete headers['content-type'];
        delete headers['content-length'];
      }
      url = next;
    }
  };

  return {
    fetch: nodeFetch,
    close() {
      agents['https:'].destroy();
      agents['http:'].destroy();
    },
  };
}

function toBytes(body: HttpInit['body']): Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (body instanceof ArrayBuffer) return Buffer.from(new Uint8Array(body));
  if (body instanceof URLSearchParams) return Buffer.from(body.toString(), 'utf8');
  throw new TypeError('the agent fetch sends only string and byte bodies');
}

function requestOnce(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: Buffer | undefined,
  signal: AbortSignal | undefined,
  agents: { 'https:': https.Agent; 'http:': http.Agent },
): Promise<FetchAnswer> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      reject(new TypeError('fetch failed', { cause: new Error(`unsupported protocol ${url.protocol}`) }));
      return;
    }
    const out = { ...headers };
    if (body !== undefined) out['content-length'] = String(body.length);
    const lib = url.protocol === 'https:' ? https : http;
    const fail = (err: unknown): void => {
      // As fetch: the signal's reason on abort, else a TypeError whose cause says what failed.
      reject(signal?.aborted ? signal.reason : new TypeError('fetch failed', { cause: err }));
    };
    const req = lib.request(url, { method, headers: out, agent: agents[url.protocol], ...(signal ? { signal } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) {
          res.destroy(new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('error', fail);
      // A connection cut mid-answer (or an abort) may close the stream without 'end' or 'error'.
      res.on('close', () => {
        if (!res.complete) fail(new Error('connection closed before the answer ended'));
      });
      res.on('end', () => {
        try {
          const status = res.statusCode ?? 0;
          const h = new AnswerHeaders();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
          let data: Buffer | null = NULL_BODY_STATUS.has(status) || method === 'HEAD' ? null : Buffer.concat(chunks);
          if (data) data = decode(data, h);
          resolve(new FetchAnswer(data, { status, statusText: res.statusMessage ?? '', headers: h, url: url.href }));
        } catch (err) {
          fail(err);
        }
      });
    });
    req.on('error', fail);
    req.end(body);
  });
}

/** Undoes a content-encoding, as fetch does; the header is dropped with it. */
function decode(data: Buffer, h: AnswerHeaders): Buffer {
  const enc = (h.get('content-encoding') ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return data;
  // Loaded here, not at start: the agent asks for no encoding (no Accept-Encoding), so GitHub
  // answers plain and an idle agent has no use for zlib (about 0.3 MiB resident).
  const zlib = process.getBuiltinModule('node:zlib');
  let out: Buffer;
  if (enc === 'gzip' || enc === 'x-gzip') out = zlib.gunzipSync(data, { maxOutputLength: MAX_RESPONSE_BYTES });
  else if (enc === 'deflate') out = zlib.inflateSync(data, { maxOutputLength: MAX_RESPONSE_BYTES });
  else if (enc === 'br') out = zlib.brotliDecompressSync(data, { maxOutputLength: MAX_RESPONSE_BYTES });
  else return data;
  h.delete('content-encoding');
  h.delete('content-length');
  return out;
}
