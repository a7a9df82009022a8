/**
 * Trusting a private CA for GitHub Enterprise Server (host config `github.caFile`).
 *
 * Node's global fetch cannot take a CA per call without the `undici` package (its `Agent` with
 * `connect: { ca }` would be the dispatcher), which is not a dependency of this project. So the
 * adapter gets a small fetch over node:https instead, passed as Octokit's `request.fetch`: it
 * trusts the system roots plus the bundle (as NODE_EXTRA_CA_CERTS would, but for the API calls
 * only), and answers with a standard `Response`. It covers what Octokit uses: method, headers,
 * a string or byte body, the abort signal, redirects, and compressed answers.
 */
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import zlib from 'node:zlib';
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../lib/errors.js';

/**
 * The largest answer body kept in memory. The agent's calls answer a few KiB (a runner list page
 * of 100 is about 60 KiB); 32 MiB means a runaway or hostile server fails the call rather than
 * the agent.
 */
export const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/** Redirects followed per call, as fetch's "follow" mode (whose own limit is 20) but tighter. */
const MAX_REDIRECTS = 5;

/** Statuses whose Response must have a null body (the fetch standard). */
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/** A fetch that trusts an extra CA bundle; `close()` drops its kept-alive connections. */
export interface CaFetch {
  fetch: typeof fetch;
  close(): void;
}

/** Options of createCaFetch; default: trust the system roots as well as the bundle. */
export interface CaFetchOptions {
  /** false: trust only the bundle (a GHES behind a private CA with no public certificate anywhere). */
  includeSystemRoots?: boolean;
}

/**
 * Reads the PEM bundle `github.caFile` names; throws ConfigError (exit 78) when it cannot be read
 * or holds no certificate. `configFile` is the host config, for the message.
 */
export async function readCaBundle(file: string, configFile: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`github.caFile ${file} cannot be read`, configFile, [
      `${configFile}: github.caFile: expected a readable PEM file, got "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
  if (!/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.test(text)) {
    throw new ConfigError(`github.caFile ${file} holds no certificate`, configFile, [
      `${configFile}: github.caFile: expected PEM certificates (-----BEGIN CERTIFICATE-----), got none in "${file}"`,
    ]);
  }
  return text;
}

/**
 * A fetch whose HTTPS connections trust `caPem` (one or more PEM certificates); undefined: Node's
 * own trust (its bundled roots and NODE_EXTRA_CA_CERTS), as the global fetch has it. The agent
 * uses it with no bundle too: Node's global fetch loads its own HTTP client (undici, with its
 * parser compiled from WebAssembly), about 11 MiB of an idle agent's memory that node:https does
 * not need (docs/release.md).
 */
export function createCaFetch(caPem: string | undefined, opts: CaFetchOptions = {}): CaFetch {
  const ca = caPem === undefined ? undefined : opts.includeSystemRoots === false ? [caPem] : [...tls.rootCertificates, caPem];
  const agents = {
    'https:': new https.Agent({ ...(ca ? { ca } : {}), keepAlive: true }),
    'http:': new http.Agent({ keepAlive: true }),
  };

  const caFetch = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    if (input instanceof Request) throw new TypeError('createCaFetch: pass a URL and an init object, not a Request');
    let url = new URL(String(input));
    let method = (init.method ?? 'GET').toUpperCase();
    const headers = new Headers(init.headers);
    let body = toBytes(init.body);
    const signal = init.signal ?? undefined;
    for (let hop = 0; ; hop++) {
      const res = await requestOnce(url, method, headers, body, signal, agents);
      const location = res.headers.get('location');
      if (init.redirect === 'manual' || ![301, 302, 303, 307, 308].includes(res.status) || !location) return res;
      if (init.redirect === 'error' || hop >= MAX_REDIRECTS) {
        throw new TypeError('fetch failed', { cause: new Error(`redirect not followed (${res.status} to ${location})`) });
      }
      const next = new URL(location, url);
      // A credential must not follow a redirect to another origin (fetch drops it the same way).
      if (next.origin !== url.origin) headers.delete('authorization');
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        headers.delete('content-type');
        headers.delete('content-length');
      }
      url = next;
    }
  };

  return {
    fetch: caFetch,
    close() {
      agents['https:'].destroy();
      agents['http:'].destroy();
    },
  };
}

function toBytes(body: RequestInit['body']): Buffer | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (body instanceof ArrayBuffer) return Buffer.from(new Uint8Array(body));
  if (body instanceof URLSearchParams) return Buffer.from(body.toString(), 'utf8');
  throw new TypeError('createCaFetch: only string and byte bodies are supported');
}

function requestOnce(
  url: URL,
  method: string,
  headers: Headers,
  body: Buffer | undefined,
  signal: AbortSignal | undefined,
  agents: { 'https:': https.Agent; 'http:': http.Agent },
): Promise<Response> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      reject(new TypeError('fetch failed', { cause: new Error(`unsupported protocol ${url.protocol}`) }));
      return;
    }
    const out: Record<string, string> = {};
    headers.forEach((v, k) => {
      out[k] = v;
    });
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
          const h = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
          let data: Buffer | null = NULL_BODY_STATUS.has(status) || method === 'HEAD' ? null : Buffer.concat(chunks);
          if (data) data = decode(data, h);
          const response = new Response(data, { status, statusText: res.statusMessage ?? '', headers: h });
          Object.defineProperty(response, 'url', { value: url.href });
          resolve(response);
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
function decode(data: Buffer, h: Headers): Buffer {
  const enc = (h.get('content-encoding') ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity') return data;
  let out: Buffer;
  if (enc === 'gzip' || enc === 'x-gzip') out = zlib.gunzipSync(data, { maxOutputLength: MAX_RESPONSE_BYTES });
  else if (enc === 'deflate') out = zlib.inflateSync(data, { maxOutputLength: MAX_RESPONSE_BYTES });
  else if (enc === 'br') out = zlib.brotliDecompressSync(data, { maxOutputLength: MAX_RESPONSE_BYTES });
  else return data;
  h.delete('content-encoding');
  h.delete('content-length');
  return out;
}
