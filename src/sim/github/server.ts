/**
 * A fake GitHub on loopback: the runner REST endpoints (docs/runner-contract.md §10), the simulator's private
 * broker protocol (src/sim/PROTOCOL.md) and the registration flow, over real HTTP so that tests
 * point a real Octokit at it (docs/decisions.md, "Narrow ports over SDKs") and assert on the recorded requests.
 *
 *   test ──Octokit──► REST (prefix) ──► rest.ts ─┐
 *   simulated listener ──fetch──► /_broker/* ──► broker.ts ─┼─► state.ts (runners, jobs, tokens)
 *   config.sh flow ──► /actions/runner-registration ────────┘
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { systemClock } from '../../lib/clock.js';
import { Authenticator, DEFAULT_FAKE_TOKEN } from './auth.js';
import { createBrokerApi, createRegistrationApi } from './broker.js';
import { Faults, faultBody } from './faults.js';
import { delay, type Reply, type RequestContext } from './http.js';
import { RateLimiter } from './ratelimit.js';
import { SecondaryLimiter } from './secondary.js';
import { createRestApi, type RestApi } from './rest.js';
import { FakeState } from './state.js';
import type {
  FakeGitHubOptions,
  FakeRunnerGroup,
  JobRecord,
  JobSpec,
  JobStatus,
  RecordedRequest,
  RequestFilter,
  RequestKind,
  RestRunner,
} from './types.js';

export { DEFAULT_FAKE_TOKEN } from './auth.js';
export { decodeJitConfig } from './jit.js';
export { SECONDARY_LIMIT_MESSAGE, type FaultSpec, type FaultHandle } from './faults.js';
export type * from './types.js';

/** Default of waitForJob: long enough for a spawned simulator, short enough to fail a test fast. */
const DEFAULT_WAIT_FOR_JOB_MS = 10_000;
/** Request bodies above 1 MiB are refused; nothing the runner endpoints take comes close. */
const MAX_BODY_BYTES = 1024 * 1024;
/** Where every GitHub.com-style runner registration call goes, besides the prefix of a GHES fake. */
const GHES_PREFIX = '/api/v3';

const STATUS_ORDER: JobStatus[] = ['queued', 'assigned', 'running', 'completed'];

/** A running fake; see startFakeGitHub. */
export class FakeGitHub {
  /** Base URL for Octokit's `baseUrl` (includes the GHES prefix). */
  readonly url: string;
  /** `<origin>/_broker/`, the serverUrl written into `.runner`. */
  readonly brokerUrl: string;
  /** `http://host:port`. */
  readonly origin: string;
  /** The token accepted when the options name none. */
  readonly defaultToken = DEFAULT_FAKE_TOKEN;
  /** Injected faults; see FaultSpec. */
  readonly faults = new Faults();
  /** Every request in arrival order of its answer. */
  readonly requests: RecordedRequest[] = [];
  /** 'request', 'runner-created', 'session-created', 'job-assigned', 'job-started', 'job-completed', 'runner-deleted'. */
  readonly events: FakeState['events'];
  /** The org's runner groups (live). */
  readonly runnerGroups: FakeRunnerGroup[];

  private latencyMs: number;
  private readonly closing = new AbortController();
  /** Installation access tokens minted so far. */
  tokensMinted = 0;
  /** @internal */
  secondary: SecondaryLimiter | undefined;

  /** @internal Use startFakeGitHub. */
  constructor(
    private readonly server: Server,
    private readonly state: FakeState,
    private readonly limiter: RateLimiter,
    origin: string,
    private readonly prefix: string,
    latencyMs: number,
  ) {
    this.origin = origin;
    this.url = `${origin}${prefix}`;
    this.brokerUrl = `${origin}/_broker/`;
    this.events = state.events;
    this.runnerGroups = state.groups;
    this.latencyMs = latencyMs;
  }

  /** Runners of every scope as REST objects, in id order. */
  runners(): RestRunner[] {
    this.state.sweep();
    return this.state.allRunners().map((r) => this.state.rest(r));
  }

  /** Every job ever queued, oldest first (snapshots). */
  jobs(): JobRecord[] {
    this.state.sweep();
    return this.state.jobRecords();
  }

  /** One job's snapshot, or undefined. */
  job(id: string): JobRecord | undefined {
    this.state.sweep();
    return this.state.jobRecord(id);
  }

  /** Queues a job; it goes to the first matching runner that polls. Returns the job id. */
  enqueueJob(spec: JobSpec): string {
    return this.state.enqueueJob(spec);
  }

  /**
   * Resolves with the job once it has reached `status` (or a later one); rejects after
   * `timeoutMs` (default 10 s of real time) with the status it is stuck in.
   */
  waitForJob(jobId: string, status: JobStatus, timeoutMs = DEFAULT_WAIT_FOR_JOB_MS): Promise<JobRecord> {
    const reached = (): JobRecord | undefined => {
      this.state.sweep();
      const j = this.state.jobRecord(jobId);
      return j && STATUS_ORDER.indexOf(j.status) >= STATUS_ORDER.indexOf(status) ? j : undefined;
    };
    return new Promise((resolve, reject) => {
      if (!this.state.jobRecord(jobId)) {
        reject(new Error(`no job ${jobId}`));
        return;
      }
      const check = (): void => {
        const j = reached();
        if (j) finish(() => resolve(j));
      };
      const timer = setTimeout(() => {
        const now = this.state.jobRecord(jobId);
        finish(() =>
          reject(new Error(`job ${jobId} did not reach ${status} within ${timeoutMs} ms (it is ${now?.status})`)),
        );
      }, timeoutMs);
      const names = ['job-assigned', 'job-started', 'job-completed'] as const;
      const finish = (then: () => void): void => {
        clearTimeout(timer);
        for (const n of names) this.events.off(n, check);
        then();
      };
      for (const n of names) this.events.on(n, check);
      check();
    });
  }

  /** The runner's next message is `{type:"update", version}` (docs/runner-contract.md §6). */
  requestUpdate(runnerId: number, version: string): void {
    this.state.pushMessage(runnerId, { type: 'update', version });
  }

  /**
   * From now on listeners older than `version` are refused messages as deprecated (403
   * AccessDeniedException, ErrorCode 1): the real service's answer to a runner past its 30-day
   * update window. Undefined serves every version again.
   */
  deprecateRunnerVersionsBelow(version: string | undefined): void {
    this.state.minimumRunnerVersion = version;
    this.state.changed();
  }

  /** The runner's next message is `{type:"crash"}`: the listener exits 2 (PROTOCOL.md Additions). */
  crashNext(runnerId: number): void {
    this.state.pushMessage(runnerId, { type: 'crash' });
  }

  /** Cancels a job: queued → completed/Canceled; assigned or running → its next renew gets 404. */
  cancelJob(jobId: string): void {
    this.state.cancelJob(jobId);
  }

  /** Removes a registration as the service would (no busy check); its listener's next poll gets 404. */
  deleteRunnerServerSide(runnerId: number): boolean {
    return this.state.deleteRunner(runnerId, 'server');
  }

  /** The runner's next session create gets 409 SessionConflict (as if another listener held it). */
  openConflictingSession(runnerId: number): void {
    this.state.setConflictNext(runnerId);
  }

  /** Every caller gets 403 (or 429) with x-ratelimit-remaining 0 until `resetInSeconds` pass on the clock. */
  exhaustPrimaryRateLimit(resetInSeconds: number, status: 403 | 429 = 403): void {
    this.limiter.exhaust(resetInSeconds, status);
  }

  /** Limit answers so far: primary (remaining 0), secondary by points, secondary by concurrency. */
  limitAnswers(): { primary: number; secondaryPoints: number; secondaryConcurrent: number } {
    const s = this.secondary?.answers ?? { points: 0, concurrent: 0 };
    return { primary: this.limiter.answers, secondaryPoints: s.points, secondaryConcurrent: s.concurrent };
  }

  /** Real-time delay before every answer from now on. */
  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  /** Number of recorded REST calls (all, or those matching the filter or predicate). */
  restCalls(filter?: RequestFilter | ((r: RecordedRequest) => boolean)): number {
    return this.requests.filter((r) => r.kind === 'rest' && matchesFilter(r, filter)).length;
  }

  /** Forgets the recorded requests (state is kept). */
  clearRequests(): void {
    this.requests.length = 0;
  }

  /** Ends long polls, drops connections and stops listening. */
  async close(): Promise<void> {
    this.closing.abort();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** @internal Serves one request. */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    handlers: {
      rest: RestApi;
      broker: (ctx: RequestContext) => Promise<Reply>;
      registration: (ctx: RequestContext) => Reply;
    },
  ): Promise<void> {
    const at = this.state.clock.now();
    this.state.sweep();
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const path = url.pathname;
    const method = (req.method ?? 'GET').toUpperCase();
    const { kind, routePath } = this.classify(path);
    const ac = new AbortController();
    const abort = (): void => ac.abort();
    res.on('close', abort);
    this.closing.signal.addEventListener('abort', abort, { once: true });

    let raw = '';
    let tooLarge = false;
    try {
      raw = await readBody(req);
    } catch {
      tooLarge = true;
    }
    let body: unknown;
    let bodyInvalid = false;
    if (raw.trim() !== '') {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
        bodyInvalid = true;
      }
    }
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
    const admitted = kind === 'rest' && this.secondary ? this.secondary.enter(handlers.rest.callerKey(ctx)) : undefined;
    try {
      // The refusal goes to the catch below (err === admitted), which answers with it; it never escapes.
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- a sentinel, not an error
      if (admitted && 'refused' in admitted) throw admitted;
      await delay(this.latencyMs, ac.signal);
      const fault = this.faults.take(kind, method, routePath);
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
      this.closing.signal.removeEventListener('abort', abort);
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
    if (reply === 'reset') {
      req.socket.destroy();
    } else {
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
    this.requests.push(rec);
    this.events.emit('request', rec);
  }

  private classify(path: string): { kind: RequestKind; routePath: string } {
    const p = this.prefix;
    for (const base of ['/_broker', `${p}/_broker`]) {
      if (path === base || path.startsWith(`${base}/`)) return { kind: 'broker', routePath: path.slice(base.length) || '/' };
    }
    const reg = '/actions/runner-registration';
    // The real runner derives this URL from --url (api.github.com or HOST/api/v3), so accept both.
    if (path === reg || path === `${GHES_PREFIX}${reg}` || path === `${p}${reg}`) return { kind: 'registration', routePath: reg };
    if (p && path.startsWith(`${p}/`)) return { kind: 'rest', routePath: path.slice(p.length) };
    // Outside the GHES prefix nothing is served; the route lookup then answers 404.
    return { kind: 'rest', routePath: p ? `/__outside_prefix__${path}` : path };
  }
}

/**
 * Starts a fake GitHub on `host:port` (default 127.0.0.1:0). Defaults: org 'octo', repos
 * ['octo/app'], enterprise 'acme', one runner group (1 "Default"), one full-rights token
 * (DEFAULT_FAKE_TOKEN), rate limit 5000/h, no latency, no prefix, the system clock.
 */
export async function startFakeGitHub(opts: FakeGitHubOptions = {}): Promise<FakeGitHub> {
  const clock = opts.clock ?? systemClock;
  const prefix = (opts.pathPrefix ?? '').replace(/\/+$/, '');
  if (prefix !== '' && !prefix.startsWith('/')) throw new TypeError(`pathPrefix must start with "/": ${prefix}`);
  const groups = opts.runnerGroups ?? [{ id: 1, name: 'Default', default: true }];
  const state = new FakeState(clock, groups, opts.sessionStaleMs ?? 30_000, opts.jobLockMs ?? 600_000);
  const limiter = new RateLimiter(clock, opts.rateLimit ?? 5000, opts.installationRateLimit ?? opts.rateLimit ?? 5000);
  const secondary = opts.secondaryLimits === false ? undefined : new SecondaryLimiter(clock, opts.secondaryLimits ?? {});
  const auth = new Authenticator(opts.tokens, opts.app, state);

  const server = createServer();
  // Keep-alive sockets must not hold close() open; close() drops them explicitly.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const fake = new FakeGitHub(server, state, limiter, `http://${host}:${addr.port}`, prefix, opts.latencyMs ?? 0);
  fake.secondary = secondary;

  const handlers = {
    rest: createRestApi({
      state,
      auth,
      limiter,
      org: opts.org ?? 'octo',
      repos: opts.repos ?? ['octo/app'],
      enterprise: opts.enterprise ?? 'acme',
      app: opts.app,
      restBase: () => fake.url,
      brokerUrl: () => fake.brokerUrl,
      secondary,
      onTokenMinted: () => {
        fake.tokensMinted++;
      },
    }),
    broker: createBrokerApi(state, () => fake.brokerUrl),
    registration: createRegistrationApi(state, () => fake.brokerUrl),
  };
  server.on('request', (req, res) => {
    void fake.handle(req, res, handlers);
  });
  return fake;
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

function matchesFilter(r: RecordedRequest, f?: RequestFilter | ((r: RecordedRequest) => boolean)): boolean {
  if (!f) return true;
  if (typeof f === 'function') return f(r);
  if (f.method && f.method.toUpperCase() !== r.method) return false;
  if (f.status !== undefined && f.status !== r.status) return false;
  if (f.path !== undefined && (typeof f.path === 'string' ? f.path !== r.apiPath : !f.path.test(r.apiPath))) return false;
  return true;
}
