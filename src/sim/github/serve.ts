/**
 * How the fake GitHub serves one HTTP request: read and parse the body, sort the path into REST,
 * broker or registration, apply the secondary limits, the latency and any injected fault, call the
 * route handlers, write the answer, and record the request (credentials redacted) for the test.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Faults } from './faults.js';
import { delay, type Reply, type RequestContext } from './http.js';
import { faultBody } from './faults.js';
import type { RestApi } from './rest.js';
import type { SecondaryLimiter } from './secondary.js';
import type { FakeState } from './state.js';
import type { RecordedRequest, RequestKind } from './types.js';

/** Request bodies above 1 MiB are refused; nothing the runner endpoints take comes close. */
const MAX_BODY_BYTES = 1024 * 1024;
/** Where every GitHub.com-style runner registration call goes, besides the prefix of a GHES fake. */
const GHES_PREFIX = '/api/v3';

/** The three sides of the fake that answer requests. */
export interface RequestHandlers {
  rest: RestApi;
  broker: (ctx: RequestContext) => Promise<Reply>;
  registration: (ctx: RequestContext) => Reply;
}

/** What serving needs from the running fake. */
export interface ServeDeps {
  state: FakeState;
  handlers: RequestHandlers;
  faults: Faults;
  secondary: SecondaryLimiter | undefined;
  /** The REST path prefix ('' or '/api/v3'). */
  prefix: string;
  /** Real-time delay before every answer, read per request so a test can change it. */
  latencyMs: () => number;
  /** Aborts when the server closes: long polls end. */
  closing: AbortSignal;
  /** Called with every request once it is answered (or its connection reset). */
  record: (rec: RecordedRequest) => void;
}

/** The `request` listener of the fake's HTTP server. */
export function createRequestListener(d: ServeDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    void serve(d, req, res);
  };
}

async function serve(d: ServeDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { state, handlers } = d;
  const at = state.clock.now();
  state.jobs.sweep();
  const url = new URL(req.url ?? '/', 'http://fake.invalid');
  const path = url.pathname;
  const method = (req.method ?? 'GET').toUpperCase();
  const { kind, routePath } = classify(d.prefix, path);
  const ac = new AbortController();
  const abort = (): void => ac.abort();
  res.on('close', abort);
  d.closing.addEventListener('abort', abort, { once: true });

  const { body, bodyInvalid, tooLarge } = await parsedBody(req);
  const ctx: RequestContext = {
    method,
    path,
    routePath,
    query: Object.fromEntries(url.searchParams),
    headers: req.headers,
    body,
    bodyInvalid,
    signal: ac.signal,
  };

  let reply: Reply | 'reset';
  // A REST request is in flight from arrival to answer; the concurrency cap counts it so.
  const admitted = kind === 'rest' && d.secondary ? d.secondary.enter(handlers.rest.callerKey(ctx)) : undefined;
  try {
    // The refusal goes to the catch below (err === admitted), which answers with it; it never escapes.
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- a sentinel, not an error
    if (admitted && 'refused' in admitted) throw admitted;
    await delay(d.latencyMs(), ac.signal);
    const fault = d.faults.take(kind, method, routePath);
    if (fault?.spec.delayMs) await delay(fault.spec.delayMs, ac.signal);
    if (fault?.spec.completeWhen) await fault.spec.completeWhen.catch(() => undefined);
    if (fault?.spec.reset) reply = 'reset';
    else if (fault && fault.spec.status !== undefined) {
      // A faulted REST answer still carries the caller's rate-limit headers, as every REST answer does.
      const rate = kind === 'rest' ? handlers.rest.rateHeaders(ctx) : {};
      reply = {
        status: fault.spec.status,
        body: fault.spec.body ?? faultBody(fault.spec.status),
        headers: { ...rate, ...fault.spec.headers },
      };
    } else if (tooLarge) reply = { status: 413, body: { message: 'Payload Too Large' } };
    else if (kind === 'rest') reply = await handlers.rest.handle(ctx);
    else if (kind === 'broker') reply = await handlers.broker(ctx);
    else reply = handlers.registration(ctx);
  } catch (err) {
    if (admitted && err === admitted && 'refused' in admitted) {
      reply = { ...admitted.refused, headers: { ...handlers.rest.rateHeaders(ctx), ...admitted.refused.headers } };
    } else {
      // A bug in the fake must show up in the failing test, not as a hung request.
      reply = { status: 500, body: { message: `fake GitHub error: ${(err as Error).stack ?? String(err)}` } };
    }
  } finally {
    if (admitted && 'release' in admitted) admitted.release();
    res.off('close', abort);
    d.closing.removeEventListener('abort', abort);
  }

  const rec: RecordedRequest = {
    kind,
    method,
    path,
    apiPath: kind === 'rest' ? routePath : path,
    query: ctx.query,
    status: 0,
    reqBody: body,
    resBody: undefined,
    reqHeaders: redactHeaders(req.headers),
    resHeaders: {},
    at,
  };
  if (reply === 'reset') req.socket.destroy();
  else write(res, reply, rec);
  d.record(rec);
}

/** Writes the answer (JSON, with its length) and fills in the recorded answer. */
function write(res: ServerResponse, reply: Reply, rec: RecordedRequest): void {
  const headers: Record<string, string> = { ...reply.headers };
  let text: string | undefined;
  if (reply.body !== undefined && reply.status !== 204) {
    text = JSON.stringify(reply.body);
    headers['content-type'] = 'application/json; charset=utf-8';
  }
  headers['content-length'] = String(text === undefined ? 0 : Buffer.byteLength(text));
  rec.status = reply.status;
  rec.resBody = text === undefined ? undefined : reply.body;
  rec.resHeaders = headers;
  if (!res.destroyed) {
    res.writeHead(reply.status, headers);
    res.end(text);
  }
}

/** Which side of the fake a path belongs to, and the path the route tables match. */
function classify(prefix: string, path: string): { kind: RequestKind; routePath: string } {
  for (const base of ['/_broker', `${prefix}/_broker`]) {
    if (path === base || path.startsWith(`${base}/`)) return { kind: 'broker', routePath: path.slice(base.length) || '/' };
  }
  const reg = '/actions/runner-registration';
  // The real runner derives this URL from --url (api.github.com or HOST/api/v3), so accept both.
  if (path === reg || path === `${GHES_PREFIX}${reg}` || path === `${prefix}${reg}`) return { kind: 'registration', routePath: reg };
  if (prefix && path.startsWith(`${prefix}/`)) return { kind: 'rest', routePath: path.slice(prefix.length) };
  // Outside the GHES prefix nothing is served; the route lookup then answers 404.
  return { kind: 'rest', routePath: prefix ? `/__outside_prefix__${path}` : path };
}

/** The body as JSON (or raw text when it is not JSON); too large bodies are flagged, not read. */
async function parsedBody(req: IncomingMessage): Promise<{ body: unknown; bodyInvalid: boolean; tooLarge: boolean }> {
  let raw: string;
  try {
    raw = await readBody(req);
  } catch {
    return { body: undefined, bodyInvalid: false, tooLarge: true };
  }
  if (raw.trim() === '') return { body: undefined, bodyInvalid: false, tooLarge: false };
  try {
    return { body: JSON.parse(raw) as unknown, bodyInvalid: false, tooLarge: false };
  } catch {
    return { body: raw, bodyInvalid: true, tooLarge: false };
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Lower-case header map with the credential of `authorization` removed (its scheme kept). */
function redactHeaders(h: IncomingMessage['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const value = Array.isArray(v) ? v.join(', ') : v;
    out[k] = k === 'authorization' ? `${value.split(/\s+/)[0] ?? ''} [REDACTED]` : value;
  }
  return out;
}
