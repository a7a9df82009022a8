/**
 * Public types of the fake GitHub API: options, recorded requests, jobs and events. The shapes of
 * REST objects follow docs/runner-contract.md §10; the broker shapes follow src/sim/PROTOCOL.md.
 */
import type { Clock } from '../../lib/clock.js';
import type { BrokerJob, JobContainer, JobStep } from '../protocol.js';
import type { SecondaryLimitOptions } from './secondary.js';

export type { BrokerJob, JobContainer, JobStep };

/** A classic PAT (`scopes`) or a fine-grained / App-style token (`permissions`) the fake accepts. */
export interface FakeTokenSpec {
  token: string;
  /** Classic PAT scopes, e.g. `['repo']`, `['admin:org']`, `['manage_runners:enterprise']`. */
  scopes?: string[];
  /** Fine-grained or App permissions, e.g. `{ administration: 'write' }`. */
  permissions?: Record<string, 'read' | 'write'>;
}

/** The GitHub App whose JWTs the fake accepts on POST /app/installations/{id}/access_tokens. */
export interface FakeAppSpec {
  appId: number | string;
  /** Also accepted as the JWT `iss` (GitHub accepts app id or client id). */
  clientId?: string;
  installationId: number;
  /** PEM of the app's public key; JWTs must be RS256-signed with the matching private key. */
  publicKeyPem: string;
  /** What the installation was granted; default administration + organization_self_hosted_runners write. */
  permissions?: Record<string, 'read' | 'write'>;
}

/** A runner group the org knows. */
export interface FakeRunnerGroup {
  id: number;
  name: string;
  visibility?: 'all' | 'selected' | 'private';
  default?: boolean;
}

/** Options of startFakeGitHub; every field has a default. */
export interface FakeGitHubOptions {
  /** Default 127.0.0.1 (loopback only). */
  host?: string;
  /** Default 0 (an ephemeral port). */
  port?: number;
  /** Serve HTTPS with this PEM key and certificate chain; default plain HTTP. */
  tls?: { key: string; cert: string };
  /** '' (default) for github.com-style paths, '/api/v3' for GHES-style. */
  pathPrefix?: string;
  /** Delay added before every answer; default 0. */
  latencyMs?: number;
  /** Accepted tokens; default one token, DEFAULT_FAKE_TOKEN, with every scope the runner endpoints need. */
  tokens?: FakeTokenSpec[];
  app?: FakeAppSpec;
  /** Known organisation; default 'octo'. */
  org?: string;
  /** Known repositories as owner/name; default ['octo/app']. */
  repos?: string[];
  /** Known enterprise slug; default 'acme'. */
  enterprise?: string;
  /** Default [{ id: 1, name: 'Default', default: true }]. */
  runnerGroups?: FakeRunnerGroup[];
  /** Drives token expiry, rate-limit resets and session staleness; default systemClock. */
  clock?: Clock;
  /** Primary rate limit per token per hour; default 5000 (the user-token limit, docs/runner-contract.md §10). */
  rateLimit?: number;
  /** Primary limit of the App installation, shared by all its tokens; default `rateLimit` (5000, GitHub's floor). */
  installationRateLimit?: number;
  /**
   * GitHub's secondary limits (900 points a minute per endpoint, 100 requests in flight, per
   * caller); on by default as on github.com, `false` turns them off.
   */
  secondaryLimits?: SecondaryLimitOptions | false;
  /**
   * How long an open session with no poll in flight still counts as online (and blocks a second
   * session with 409); default 30 000 ms. The real service keeps an abandoned session for minutes;
   * 30 s keeps tests of a crashed listener short while still exercising the conflict.
   */
  sessionStaleMs?: number;
  /**
   * A delivered job whose lock is not renewed for this long is abandoned (result 'Abandoned') and
   * its runner freed; default 600 000 ms, the 10-minute lock the service grants per renew. Without
   * it a listener killed mid-job would leave its runner busy (and undeletable, 422) forever.
   */
  jobLockMs?: number;
}

/** Which side of the fake a request hit. Only 'rest' counts as a GitHub API call. */
export type RequestKind = 'rest' | 'broker' | 'registration';

/** One request as the fake saw and answered it. */
export interface RecordedRequest {
  kind: RequestKind;
  method: string;
  /** Full request path without the query string (includes the GHES prefix). */
  path: string;
  /** Path relative to the REST base (the prefix removed); equals `path` when there is no prefix. */
  apiPath: string;
  query: Record<string, string>;
  status: number;
  /** Parsed JSON body, the raw text when it was not JSON, or undefined when empty. */
  reqBody: unknown;
  resBody: unknown;
  /** Lower-case header names; `authorization` keeps only its scheme. */
  reqHeaders: Record<string, string>;
  resHeaders: Record<string, string>;
  /** Clock time (ms) when the request arrived. */
  at: number;
}

/** Selects recorded requests for restCalls(). */
export interface RequestFilter {
  method?: string;
  /** Matched against apiPath. */
  path?: RegExp | string;
  status?: number;
}

/** What a test queues; everything but repository and steps has a default. */
export interface JobSpec {
  repository: string;
  workflow?: string;
  runId?: string | number;
  runNumber?: string | number;
  runAttempt?: string | number;
  /** The job's display name (alias: displayName); default 'build'. */
  job?: string;
  displayName?: string;
  /** Default ['self-hosted']. */
  labels?: string[];
  steps: JobStep[];
  sha?: string;
  ref?: string;
  eventName?: string;
  actor?: string;
  /** The job's timeout-minutes (default 360): once running this long, the service cancels it. */
  timeoutMinutes?: number;
  /** Cancel the job this long after it started running, as a user pressing "Cancel" would. */
  cancelAfterMs?: number | null;
  /** `container:`: the runner runs the job's steps in it (through the container hooks when set). */
  container?: JobContainer;
  /** `services:`, keyed by the service's name. */
  services?: Record<string, JobContainer>;
}

/** Job progress; the order matters for waitForJob. */
export type JobStatus = 'queued' | 'assigned' | 'running' | 'completed';

/** A snapshot of a job as the fake tracks it. */
export interface JobRecord {
  id: string;
  job: BrokerJob;
  status: JobStatus;
  /** As reported by the runner ('Succeeded', 'Failed', ...), or 'Canceled' for a job cancelled in the queue. */
  result: string | null;
  exitCode: number | null;
  runnerId: number | null;
  runnerName: string | null;
  cancelled: boolean;
  /** Why the service cancelled it: the job's timeout-minutes ran out, or cancelAfterMs. */
  cancelReason?: string;
  queuedAt: number;
  assignedAt: number | null;
  startedAt: number | null;
  completedAt: number | null;
}

/** A label as REST returns it. */
export interface RestLabel {
  id: number;
  name: string;
  type: 'read-only' | 'custom';
}

/** A runner as REST returns it (docs/runner-contract.md §10). */
export interface RestRunner {
  id: number;
  name: string;
  os: string;
  status: 'online' | 'offline';
  busy: boolean;
  labels: RestLabel[];
  runner_group_id: number;
  ephemeral: boolean;
  version: string | null;
}

/** Why a registration disappeared. */
export type DeleteReason = 'rest' | 'ephemeral' | 'server' | 'broker' | 'replaced';

/** Payloads of the fake's events. */
export interface FakeGitHubEvents {
  request: [RecordedRequest];
  'runner-created': [{ runnerId: number; name: string; via: 'jit' | 'registration' }];
  'session-created': [{ runnerId: number; sessionId: string; version: string }];
  'job-assigned': [{ jobId: string; runnerId: number; runnerName: string; displayName: string; repository: string }];
  /** The first renew: the listener has accepted the job. */
  'job-started': [{ jobId: string; runnerId: number }];
  'job-completed': [{ jobId: string; runnerId: number; result: string; exitCode: number | null }];
  'runner-deleted': [{ runnerId: number; name: string; reason: DeleteReason }];
}
