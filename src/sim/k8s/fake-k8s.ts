/**
 * A loopback fake of the one Kubernetes API call the kubernetes provider makes:
 * DELETE /api/v1/namespaces/{ns}/pods/{name}. It checks the bearer token (401 Status otherwise),
 * answers 404 for an unknown pod and 200 with the pod (deletionTimestamp set) on success, like the
 * API server's graceful deletion. Plain HTTP by default; pass `tls` (key and cert PEM) for HTTPS.
 */
import http from 'node:http';
import https from 'node:https';
import { listenOnLoopback } from '../loopback.js';

/** One request the fake saw (the token itself is never recorded, only whether it matched). */
export interface FakeK8sCall {
  method: string;
  path: string;
  tokenValid: boolean;
  /** Parsed DeleteOptions body, if any. */
  body?: unknown;
  status: number;
}

/** The fake's world. */
export interface FakeK8sOptions {
  /** The service-account token the fake accepts. */
  token: string;
  /** Pods that exist, as "namespace/name". */
  pods: string[];
  tls?: { key: string; cert: string };
}

/** A running fake. */
export interface FakeK8s {
  url: string;
  calls: FakeK8sCall[];
  /** Pods deleted so far, as "namespace/name". */
  deleted: string[];
  /** Makes the next `times` (default 1) requests with a valid token answer `status` (e.g. 403, 500). */
  failNext(status: number, times?: number): void;
  close(): Promise<void>;
}

const REASONS: Record<number, string> = {
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  500: 'InternalError',
  503: 'ServiceUnavailable',
};

function status(code: number, message: string): string {
  return JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: REASONS[code] ?? 'Unknown',
    code,
  });
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeK8s(opts: FakeK8sOptions): Promise<FakeK8s> {
  const pods = new Set(opts.pods);
  const calls: FakeK8sCall[] = [];
  const deleted: string[] = [];
  let failStatus = 0;
  let failTimes = 0;

  const handler: http.RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = raw === '' ? undefined : JSON.parse(raw);
      } catch {
        body = raw;
      }
      const path = new URL(req.url ?? '/', 'http://fake').pathname;
      const tokenValid = req.headers.authorization === `Bearer ${opts.token}`;
      const reply = (code: number, text: string): void => {
        calls.push({ method: req.method ?? '', path, tokenValid, ...(body !== undefined ? { body } : {}), status: code });
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(text);
      };
      if (!tokenValid) return reply(401, status(401, 'Unauthorized'));
      if (failTimes > 0) {
        failTimes -= 1;
        return reply(failStatus, status(failStatus, `programmed failure ${failStatus}`));
      }
      const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/.exec(path);
      if (!m) return reply(404, status(404, 'the server could not find the requested resource'));
      if (req.method !== 'DELETE') return reply(405, status(405, `method ${req.method} not allowed`));
      const ns = decodeURIComponent(m[1] ?? '');
      const name = decodeURIComponent(m[2] ?? '');
      const key = `${ns}/${name}`;
      if (!pods.has(key)) return reply(404, status(404, `pods "${name}" not found`));
      pods.delete(key);
      deleted.push(key);
      const now = new Date().toISOString();
      reply(
        200,
        JSON.stringify({
          kind: 'Pod',
          apiVersion: 'v1',
          metadata: { name, namespace: ns, deletionTimestamp: now, deletionGracePeriodSeconds: 30 },
          status: { phase: 'Running' },
        }),
      );
    });
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : http.createServer(handler);
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    calls,
    deleted,
    failNext(code, times = 1) {
      failStatus = code;
      failTimes = times;
    },
    close,
  };
}
