/**
 * A fake GitHub on loopback: the runner REST endpoints (docs/runner-contract.md §10), the simulator's private
 * broker protocol (src/sim/PROTOCOL.md) and the registration flow, over real HTTP so that tests
 * point a real Octokit at it (docs/decisions.md, "Narrow ports over SDKs") and assert on the recorded requests.
 *
 *   test ──Octokit──► REST (prefix) ──► rest.ts ─┐
 *   simulated listener ──fetch──► /_broker/* ──► broker.ts ─┼─► state.ts (runners, sessions, jobs, tokens)
 *   config.sh flow ──► /actions/runner-registration ────────┘
 *
 * This file is the test's handle on a running fake (what it reads, the switches it throws) and its
 * start; serve.ts answers each request.
 */
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { systemClock } from '../../lib/clock.js';
import { Authenticator, DEFAULT_FAKE_TOKEN } from './auth.js';
import { createBrokerApi, createRegistrationApi } from './broker.js';
import { Faults } from './faults.js';
import { RateLimiter } from './ratelimit.js';
import { SecondaryLimiter } from './secondary.js';
import { createRestApi } from './rest.js';
import { createRequestListener } from './serve.js';
import { FakeState } from './state.js';
import type {
  FakeGitHubOptions,
  FakeRunnerGroup,
  JobRecord,
  JobSpec,
  JobStatus,
  RecordedRequest,
  RequestFilter,
  RestRunner,
} from './types.js';

export { DEFAULT_FAKE_TOKEN } from './auth.js';
export { decodeJitConfig } from './jit.js';
export { SECONDARY_LIMIT_MESSAGE, type FaultSpec, type FaultHandle } from './faults.js';
export type * from './types.js';

/** Default of waitForJob: long enough for a spawned simulator, short enough to fail a test fast. */
const DEFAULT_WAIT_FOR_JOB_MS = 10_000;

const STATUS_ORDER: JobStatus[] = ['queued', 'assigned', 'running', 'completed'];

/** What the handle is built from; see startFakeGitHub. */
interface FakeGitHubParts {
  server: Server;
  state: FakeState;
  limiter: RateLimiter;
  secondary: SecondaryLimiter | undefined;
  origin: string;
  prefix: string;
  latencyMs: number;
  closing: AbortController;
}

/** A running fake; see startFakeGitHub. */
export class FakeGitHub {
  /** Base URL for Octokit's `baseUrl` (includes the GHES prefix). */
  readonly url: string;
  /** `<origin>/_broker/`, the serverUrl written into `.runner`. */
  readonly brokerUrl: string;
  /** `http://host:port`, or `https://` when the options name a TLS key and certificate. */
  readonly origin: string;
  /** The token accepted when the options name none. */
  readonly defaultToken = DEFAULT_FAKE_TOKEN;
  /** Injected faults (errors, delays, resets, session conflicts); see FaultSpec. */
  readonly faults = new Faults();
  /** Every request in arrival order of its answer. */
  readonly requests: RecordedRequest[] = [];
  /** 'request', 'runner-created', 'session-created', 'job-assigned', 'job-started', 'job-completed', 'runner-deleted'. */
  readonly events: FakeState['events'];
  /** The org's runner groups (live). */
  readonly runnerGroups: FakeRunnerGroup[];
  /** Real-time delay before every answer; a test may change it at any time. */
  latencyMs: number;
  /** Installation access tokens minted so far. */
  tokensMinted = 0;

  private readonly server: Server;
  private readonly state: FakeState;
  private readonly limiter: RateLimiter;
  private readonly secondary: SecondaryLimiter | undefined;
  private readonly closing: AbortController;

  /** @internal Use startFakeGitHub. */
  constructor(parts: FakeGitHubParts) {
    this.server = parts.server;
    this.state = parts.state;
    this.limiter = parts.limiter;
    this.secondary = parts.secondary;
    this.closing = parts.closing;
    this.origin = parts.origin;
    this.url = `${parts.origin}${parts.prefix}`;
    this.brokerUrl = `${parts.origin}/_broker/`;
    this.events = parts.state.events;
    this.runnerGroups = parts.state.groups.list;
    this.latencyMs = parts.latencyMs;
  }

  /** Runners of every scope as REST objects, in id order. */
  runners(): RestRunner[] {
    this.state.jobs.sweep();
    return this.state.runners.all().map((r) => this.state.runners.rest(r));
  }

  /** Every job ever queued, oldest first (snapshots). */
  jobs(): JobRecord[] {
    this.state.jobs.sweep();
    return this.state.jobs.records();
  }

  /** One job's snapshot, or undefined. */
  job(id: string): JobRecord | undefined {
    this.state.jobs.sweep();
    return this.state.jobs.record(id);
  }

  /** Queues a job; it goes to the first matching runner that polls. Returns the job id. */
  enqueueJob(spec: JobSpec): string {
    return this.state.jobs.enqueue(spec);
  }

  /**
   * Resolves with the job once it has reached `status` (or a later one); rejects after
   * `timeoutMs` (default 10 s of real time) with the status it is stuck in.
   */
  waitForJob(jobId: string, status: JobStatus, timeoutMs = DEFAULT_WAIT_FOR_JOB_MS): Promise<JobRecord> {
    const reached = (): JobRecord | undefined => {
      const j = this.job(jobId);
      return j && STATUS_ORDER.indexOf(j.status) >= STATUS_ORDER.indexOf(status) ? j : undefined;
    };
    return new Promise((resolve, reject) => {
      if (!this.state.jobs.record(jobId)) {
        reject(new Error(`no job ${jobId}`));
        return;
      }
      const check = (): void => {
        const j = reached();
        if (j) finish(() => resolve(j));
      };
      const timer = setTimeout(() => {
        const now = this.state.jobs.record(jobId);
        finish(() => reject(new Error(`job ${jobId} did not reach ${status} within ${timeoutMs} ms (it is ${now?.status})`)));
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
    this.state.runners.pushMessage(runnerId, { type: 'update', version });
  }

  /**
   * From now on listeners older than `version` are refused messages as deprecated (403
   * AccessDeniedException, ErrorCode 1): the real service's answer to a runner past its 30-day
   * update window. Undefined serves every version again.
   */
  deprecateRunnerVersionsBelow(version: string | undefined): void {
    this.state.sessions.minimumRunnerVersion = version;
    this.state.changed();
  }

  /** The runner's next message is `{type:"crash"}`: the listener exits 2 (PROTOCOL.md Additions). */
  crashNext(runnerId: number): void {
    this.state.runners.pushMessage(runnerId, { type: 'crash' });
  }

  /** Cancels a job: queued → completed/Canceled; assigned or running → its next renew gets 404. */
  cancelJob(jobId: string): void {
    this.state.jobs.cancel(jobId);
  }

  /** Removes a registration as the service would (no busy check); its listener's next poll gets 404. */
  deleteRunnerServerSide(runnerId: number): boolean {
    return this.state.runners.remove(runnerId, 'server');
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

  // Over TLS when asked (the bench, to hold what an agent talking to github.com holds).
  const server: Server = opts.tls ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }) : createServer();
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
  const closing = new AbortController();
  const fake = new FakeGitHub({
    server,
    state,
    limiter,
    secondary,
    origin: `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}`,
    prefix,
    latencyMs: opts.latencyMs ?? 0,
    closing,
  });

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
  server.on(
    'request',
    createRequestListener({
      state,
      handlers,
      faults: fake.faults,
      secondary,
      prefix,
      latencyMs: () => fake.latencyMs,
      closing: closing.signal,
      record: (rec) => {
        fake.requests.push(rec);
        fake.events.emit('request', rec);
      },
    }),
  );
  return fake;
}

function matchesFilter(r: RecordedRequest, f?: RequestFilter | ((r: RecordedRequest) => boolean)): boolean {
  if (!f) return true;
  if (typeof f === 'function') return f(r);
  if (f.method && f.method.toUpperCase() !== r.method) return false;
  if (f.status !== undefined && f.status !== r.status) return false;
  if (f.path !== undefined && (typeof f.path === 'string' ? f.path !== r.apiPath : !f.path.test(r.apiPath))) return false;
  return true;
}
