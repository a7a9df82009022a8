/**
 * One small HTTP(S) client for the providers that talk plain HTTP (IMDS, Kubernetes, webhook).
 * node:http/https rather than fetch because the Kubernetes API and private webhook receivers need a
 * CA bundle per request, which fetch in Node 20 cannot take without a dependency.
 */
import http from 'node:http';
import https from 'node:https';

/** Largest response body kept; providers only read short answers. */
export const MAX_RESPONSE_BYTES = 1 << 20;

/** A finished response. */
export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Options of httpRequest; `timeoutMs` bounds the whole exchange (connect to last byte). */
export interface HttpRequestOptions {
  method: string;
  headers?: Record<string, string>;
  body?: string;
  /** PEM CA bundle for https; default the system store. */
  ca?: string | Buffer;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** A request that did not get an HTTP answer (refused, reset, timed out). Retryable by nature. */
export class HttpNetworkError extends Error {
  override name = 'HttpNetworkError';
  constructor(
    message: string,
    readonly url: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Sends one request on a fresh connection (no keep-alive pool left behind) and resolves with the
 * response, whatever its status. Rejects with HttpNetworkError, or with the signal's reason on abort.
 */
export function httpRequest(url: string, opts: HttpRequestOptions): Promise<HttpResponse> {
  const target = new URL(url);
  const mod = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(opts.signal.reason);
      return;
    }
    let settled = false;
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
    const req = mod.request(
      target,
      {
        method: opts.method,
        headers,
        agent: false,
        ...(opts.ca !== undefined && target.protocol === 'https:' ? { ca: opts.ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size <= MAX_RESPONSE_BYTES) chunks.push(d);
        });
        res.on('end', () =>
          finish(() =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          ),
        );
        res.on('error', (err) => fail(err));
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new HttpNetworkError(`no answer within ${opts.timeoutMs} ms`, url));
    }, opts.timeoutMs);
    const onAbort = (): void => {
      finish(() => reject(opts.signal?.reason));
      req.destroy();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    function finish(fn: () => void): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      fn();
    }
    function fail(err: unknown): void {
      finish(() =>
        reject(
          err instanceof HttpNetworkError
            ? err
            : new HttpNetworkError(err instanceof Error ? err.message : String(err), url, { cause: err }),
        ),
      );
    }
    req.on('error', fail);
    req.end(opts.body);
  });
}

/**
 * `HTTP <status> <code>: <message>` from a cloud API's error body, `{"error": {"code"|"status",
 * "message"}}` (Google APIs put the name in `status`, Azure Resource Manager in `code`); `HTTP
 * <status>` when the body is not one.
 */
export function describeApiError(status: number, body: string): string {
  try {
    const e = (JSON.parse(body) as { error?: { code?: unknown; status?: unknown; message?: unknown } }).error;
    if (typeof e?.message === 'string') {
      const name = typeof e.code === 'string' ? e.code : typeof e.status === 'string' ? e.status : '';
      return `HTTP ${status}${name ? ` ${name}` : ''}: ${e.message}`;
    }
  } catch {
    // not JSON: the status alone
  }
  return `HTTP ${status}`;
}
