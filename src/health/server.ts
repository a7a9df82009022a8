/**
 * The health endpoint: a small HTTP server that only reads the status snapshot the
 * agent keeps current and renders the metrics. It never does work and never calls GitHub, so a
 * probe gets its answer in well under a millisecond even while a cleanup keeps the host busy.
 *
 *   GET /healthz  200 while the agent's loop is alive and the host is not quarantined, else 503
 *                 (a cloud health check then replaces the host)
 *   GET /readyz   200 when idle or running a job, 503 while registering, cleaning, draining...
 *   GET /status   the snapshot as JSON (typed to hold no secret)
 *   GET /metrics  Prometheus text format
 *   POST /drain   asks the agent to drain (only with the token; 403 when none is configured)
 *
 * Bad input gets a 4xx and bounded resources: only GET/HEAD (405), unknown paths (404), malformed
 * requests (400, from Node's parser), huge headers (431), slow clients (408 / closed), a deadline
 * for a connection's first request and for keep-alive idleness, and a cap on connections that
 * evicts the oldest connection with no request in progress, so that a new probe always gets in
 * (idle or half-open sockets a job opens cannot starve /healthz). A last defensive check refuses to serve any body that contains one of the secrets
 * the agent names (its token, the current JIT config): 500 and an error log instead.
 */
import http, { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Gauge, type Registry } from 'prom-client';
import { ConfigError, describeError } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/log.js';
import type { StatusSnapshot } from './snapshot.js';
import { readTokenFile, TokenCheck } from './token.js';

/** The address the server listens on by default (user-facing: probes and monitors rely on it). */
export const DEFAULT_HEALTH_LISTEN = '127.0.0.1:9469';

/** Socket and parser limits of the health server; the defaults are HEALTH_LIMITS. */
export interface HealthServerLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  socketTimeoutMs: number;
  connectionsCheckingIntervalMs: number;
  maxHeaderSize: number;
  maxConnections: number;
  firstRequestTimeoutMs: number;
  closeGraceMs: number;
}

/** Default limits; each says why it has its value. */
export const HEALTH_LIMITS: Readonly<HealthServerLimits> = Object.freeze({
  /**
   * A probe sends its whole request in one packet; 5 s is plenty even over a congested link, and a
   * slow client ("slowloris") dribbling header bytes cannot hold a connection longer than that.
   */
  headersTimeoutMs: 5_000,
  /** Requests have no body, so the whole request takes as long as its headers; 10 s bounds it. */
  requestTimeoutMs: 10_000,
  /** Lets a scraper reuse its connection within a burst without holding idle sockets for long. */
  keepAliveTimeoutMs: 5_000,
  /** Inactivity limit, also for a client that stops reading a response (a /metrics body). */
  socketTimeoutMs: 15_000,
  /**
   * How often Node checks the two timeouts above; its default (30 s) would let a slow client
   * linger 30 s past them.
   */
  connectionsCheckingIntervalMs: 1_000,
  /**
   * A probe's headers are a few hundred bytes; 8 KiB (half Node's default) still fits any real
   * client and bounds what a huge-header request can make the server buffer (431 beyond it).
   */
  maxHeaderSize: 8 * 1024,
  /**
   * A host has a handful of legitimate clients (Prometheus, a load balancer's health check, an
   * autoscaler, an operator with curl); 64 leaves room for bursts and bounds file descriptors and
   * memory. A connection beyond it evicts the oldest one with no request in progress (an idle,
   * half-open or slow socket), so the room for a new probe is always there; only when all 64 are
   * mid-request (each takes well under a millisecond) is the newcomer dropped.
   */
  maxConnections: 64,
  /**
   * A connection must deliver its first complete request headers within this long, measured from
   * accept (Node's own headers timeout only starts at the first byte, so a silent socket would
   * otherwise live until the inactivity timeout). A probe sends them in its first packet.
   */
  firstRequestTimeoutMs: 5_000,
  /** On close, in-flight responses get this long before their connections are cut. */
  closeGraceMs: 2_000,
});

/**
 * Shortest string treated as a secret by the response scrub. Anything shorter would match by
 * accident (and real tokens and JIT configs are far longer).
 */
export const MIN_SECRET_LENGTH = 8;

/** Where /metrics comes from: AgentMetrics, or anything with the same two members. */
export interface MetricsSource {
  render(): Promise<string>;
  readonly contentType: string;
  /** When given, the server adds `runner_warden_health_exposure{bind,auth}` to it. */
  readonly registry?: Registry;
}

/** Options of startHealthServer. */
export interface HealthServerOptions {
  /** `host:port` (`[::1]:9469` for IPv6); port 0 picks a free port (tests). */
  listen: string;
  /** Root-only file holding the bearer token; when set, /status and /metrics require it. */
  tokenFile?: string;
  /**
   * Also require the token on /healthz and /readyz. Default false: cloud load-balancer health
   * checks (ELB target groups, GCP MIGs, Azure scale sets) cannot send an Authorization header,
   * and those two endpoints reveal one bit each.
   */
  protectProbes?: boolean;
  /** The uid that must own the token file; default the effective uid (root). */
  tokenOwnerUid?: number;
  /** The agent's current snapshot; called once per request, must be cheap. */
  snapshot: () => StatusSnapshot;
  metrics: MetricsSource;
  /** Strings that must never appear in a response (the agent's token, the current JIT config). */
  secrets?: () => readonly string[];
  log?: Logger;
  limits?: Partial<HealthServerLimits>;
  /**
   * Called for an authorized `POST /drain` (`runner-warden drain --url`). Drain over HTTP needs the
   * token: without a tokenFile the endpoint answers 403, since anyone who can reach the port could
   * otherwise take the host out of service.
   */
  onDrain?: () => void;
}

/** A started health server. */
export interface HealthServer {
  address: { host: string; port: number };
  /** Stops accepting, lets in-flight responses finish within closeGraceMs, then cuts the rest. */
  close(): Promise<void>;
}

/** States in which /readyz answers 200: a registered runner that is idle or running a job. */
export const READY_STATES: ReadonlySet<string> = new Set(['idle', 'job-running']);

/** Splits `host:port` (or `[v6]:port`); throws ConfigError on anything else. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new ConfigError(`health.listen must be host:port, got ${JSON.stringify(listen)}`, '', [
      `health.listen: expected host:port (e.g. ${DEFAULT_HEALTH_LISTEN}), got ${JSON.stringify(listen)}`,
    ]);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

interface Reply {
  status: number;
  type: string;
  body: string;
  headers?: Record<string, string>;
}

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';
const ROUTES = new Set(['/', '/healthz', '/readyz', '/status', '/metrics', '/drain']);
const PROBES = new Set(['/healthz', '/readyz']);

/** Starts the health server; resolves once it listens. */
export async function startHealthServer(opts: HealthServerOptions): Promise<HealthServer> {
  const limits: HealthServerLimits = { ...HEALTH_LIMITS, ...opts.limits };
  const log = opts.log ?? silentLogger();
  const { host, port } = parseListen(opts.listen);
  const token =
    opts.tokenFile === undefined
      ? undefined
      : new TokenCheck(await readTokenFile(opts.tokenFile, 'tokenOwnerUid' in opts ? { ownerUid: opts.tokenOwnerUid } : {}));

  const drainRoute = (req: IncomingMessage): Reply => {
    if (req.method !== 'POST') return { ...text(405, 'method not allowed\n'), headers: { Allow: 'POST' } };
    if (!token) return text(403, 'drain over HTTP needs health.tokenFile; use `runner-warden drain` on the host\n');
    if (!token.matches(req.headers.authorization)) {
      return { ...text(401, 'unauthorized\n'), headers: { 'WWW-Authenticate': 'Bearer realm="runner-warden"' } };
    }
    log.info({}, 'drain requested over HTTP');
    opts.onDrain?.();
    return text(202, 'drain requested\n');
  };

  const route = async (req: IncomingMessage): Promise<Reply> => {
    const url = req.url ?? '';
    // Only origin-form targets ("/path?query"); absolute-form and "*" are not for this server.
    if (!url.startsWith('/') || url.startsWith('//')) {
      return { ...text(400, 'bad request target\n'), headers: { Connection: 'close' } };
    }
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    if (!ROUTES.has(path) || (path === '/drain' && !opts.onDrain)) return text(404, 'not found\n');
    if (path === '/drain') return drainRoute(req);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return { ...text(405, 'method not allowed\n'), headers: { Allow: 'GET, HEAD' } };
    }
    // No endpoint takes a body; refusing one keeps a client from streaming into the server.
    if (
      req.headers['transfer-encoding'] !== undefined ||
      (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0')
    ) {
      return { ...text(400, 'request body not allowed\n'), headers: { Connection: 'close' } };
    }
    if (token && (opts.protectProbes || !PROBES.has(path)) && !token.matches(req.headers.authorization)) {
      return {
        ...text(401, 'unauthorized\n'),
        headers: { 'WWW-Authenticate': 'Bearer realm="runner-warden"' },
      };
    }
    switch (path) {
      case '/healthz': {
        const s = opts.snapshot();
        if (s.quarantined) return text(503, 'unhealthy: quarantined\n');
        if (!s.loopAlive) return text(503, 'unhealthy: agent loop stalled\n');
        return text(200, 'ok\n');
      }
      case '/readyz': {
        const s = opts.snapshot();
        const ready = READY_STATES.has(s.state) && s.loopAlive && !s.quarantined;
        return text(ready ? 200 : 503, `${ready ? 'ready' : 'not ready'}: ${s.state}\n`);
      }
      case '/status':
        return { status: 200, type: JSON_TYPE, body: `${JSON.stringify(opts.snapshot())}\n` };
      case '/metrics':
        return { status: 200, type: opts.metrics.contentType, body: await opts.metrics.render() };
      default:
        return text(200, 'runner-warden health: /healthz /readyz /status /metrics\n');
    }
  };

  const leaks = (body: string): boolean => {
    if (!opts.secrets) return false;
    for (const secret of opts.secrets()) {
      if (typeof secret !== 'string' || secret.length < MIN_SECRET_LENGTH) continue;
      // The raw form, and the form JSON.stringify gives it inside /status.
      if (body.includes(secret) || body.includes(JSON.stringify(secret).slice(1, -1))) return true;
    }
    return false;
  };

  const send = (req: IncomingMessage, res: ServerResponse, reply: Reply): void => {
    let r = reply;
    if (leaks(r.body)) {
      // Never name the secret or echo the body: the path and the fact are enough to find the bug.
      log.error({ path: (req.url ?? '').slice(0, 100), status: r.status }, 'response withheld: it contained a secret');
      r = text(500, 'internal error\n');
    }
    res.writeHead(r.status, {
      'Content-Type': r.type,
      'Content-Length': Buffer.byteLength(r.body),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      ...r.headers,
    });
    if (req.method === 'HEAD') res.end();
    else res.end(r.body);
  };

  const server = http.createServer(
    {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: limits.connectionsCheckingIntervalMs,
    },
    (req, res) => {
      route(req).then(
        (reply) => send(req, res, reply),
        (err: unknown) => {
          log.error({ path: (req.url ?? '').slice(0, 100), err: describeError(err) }, 'health request failed');
          if (res.headersSent) res.destroy();
          else send(req, res, text(500, 'internal error\n'));
        },
      );
    },
  );
  server.timeout = limits.socketTimeoutMs;
  guardConnections(server, limits, log);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // What Node would do by itself (400, 431 for huge headers, 408 for slow clients), plus a
    // debug line; nothing is answered once a response has started on this socket.
    log.debug({ code: err.code }, 'health client error');
    if (err.code !== 'ECONNRESET' && socket.writable && socket.bytesWritten === 0) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
    } else {
      socket.destroy();
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(listenError(err, opts.listen));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err: describeError(err) }, 'health server error'));
  const addr = server.address() as AddressInfo;
  log.info({ host: addr.address, port: addr.port, auth: token !== undefined }, 'health server listening');
  const bind = bindScope(host);
  if (bind !== 'loopback' && !token) {
    log.warn(
      { host: addr.address, port: addr.port },
      'health server listens beyond loopback without a token: anyone who reaches the port reads /status and /metrics (set health.tokenFile)',
    );
  }
  exposureGauge(opts.metrics.registry)?.set({ bind, auth: token ? 'token' : 'none' }, 1);

  let closing: Promise<void> | undefined;
  return {
    address: { host: addr.address, port: addr.port },
    close() {
      closing ??= new Promise<void>((resolve) => {
        const grace = setTimeout(() => server.closeAllConnections(), limits.closeGraceMs);
        server.close(() => {
          clearTimeout(grace);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

/** Runs the health server until `signal` aborts, then closes it (docs/decisions.md, "Long-running parts take a signal"). */
export async function runHealthServer(
  opts: HealthServerOptions & { onListening?: (address: { host: string; port: number }) => void },
  signal: AbortSignal,
): Promise<void> {
  if (signal.aborted) return;
  const server = await startHealthServer(opts);
  opts.onListening?.(server.address);
  try {
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    await server.close();
  }
}

function text(status: number, body: string): Reply {
  return { status, type: TEXT, body };
}

/** Socket state the connection guard keeps. */
interface Tracked {
  acceptedAt: number;
  requests: number;
  active: number;
}

/**
 * Deadlines and the connection cap (see HEALTH_LIMITS): a first request within
 * firstRequestTimeoutMs, and, beyond maxConnections, eviction of the oldest connection that has no
 * request in progress.
 */
function guardConnections(server: http.Server, limits: HealthServerLimits, log: Logger): void {
  const conns = new Map<Socket, Tracked>();
  server.on('connection', (sock: Socket) => {
    const t: Tracked = { acceptedAt: Date.now(), requests: 0, active: 0 };
    conns.set(sock, t);
    const first = setTimeout(() => {
      if (t.requests === 0) sock.destroy();
    }, limits.firstRequestTimeoutMs);
    first.unref();
    sock.once('close', () => {
      clearTimeout(first);
      conns.delete(sock);
    });
    if (conns.size <= limits.maxConnections) return;
    let victim: Socket | undefined;
    for (const [s, st] of conns) {
      // Map order is accept order: the first one without a request in progress is the oldest.
      if (s !== sock && st.active === 0) {
        victim = s;
        break;
      }
    }
    log.debug({ connections: conns.size, evicted: victim !== undefined }, 'health connection cap reached');
    (victim ?? sock).destroy();
    conns.delete(victim ?? sock);
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const t = conns.get(req.socket);
    if (!t) return;
    t.requests++;
    t.active++;
    res.once('close', () => {
      t.active--;
    });
  });
}

/** A listen failure as a ConfigError naming health.listen (exit 78), with what was wrong. */
function listenError(err: NodeJS.ErrnoException, listen: string): Error {
  const why: Record<string, string> = {
    EADDRINUSE: 'in use by another process',
    EACCES: 'a port this user may not bind',
    EADDRNOTAVAIL: 'an address this host does not have',
  };
  const reason = err.code ? why[err.code] : undefined;
  if (!reason) return err;
  return new ConfigError(
    `health.listen ${listen}: ${reason}`,
    '',
    [`health.listen: expected a free local address, got ${JSON.stringify(listen)} (${err.code}: ${reason})`],
    { cause: err },
  );
}

/** Where a listen host is reachable from: loopback only, every interface, or one other address. */
export function bindScope(host: string): 'loopback' | 'all' | 'address' {
  if (host === 'localhost' || host === '::1' || /^127\./.test(host)) return 'loopback';
  if (host === '0.0.0.0' || host === '::' || host === '') return 'all';
  return 'address';
}

function exposureGauge(registry: Registry | undefined): Gauge<'bind' | 'auth'> | undefined {
  if (!registry) return undefined;
  const name = 'runner_warden_health_exposure';
  const existing = registry.getSingleMetric(name) as Gauge<'bind' | 'auth'> | undefined;
  if (existing) return existing;
  return new Gauge({
    name,
    help: 'Always 1; bind (loopback, all, address) and auth (token, none) say who can read the health endpoint.',
    labelNames: ['bind', 'auth'],
    registers: [registry],
  });
}
