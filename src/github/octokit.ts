// @octokit/core, not @octokit/rest: the agent sends every call with octokit.request(route), and
// rest's plugins (a method per endpoint of the whole API, pagination, request logging) were a
// table of about 1,000 routes built at start and kept for the agent's life (docs/release.md).
import { Octokit } from '@octokit/core';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { GitHubApiError, isAbort } from '../lib/errors.js';
import { isRateLimited } from './retry-policy.js';
import { withDeadline } from './deadline-fetch.js';
import type { HttpFetch } from './fetch-answer.js';
import { InstallationTokenCache } from './app-token.js';
import { HostGate } from './host-gate.js';
import type { FleetSlots } from '../lib/fleet-slots.js';
import { attemptsOf, cachedAppAuth, errorMessage, installRetryHook, type RequestObserver } from './request-hooks.js';
import { permissionHint, scopePath, type RunnerScope } from './scope.js';
import type { DeleteOutcome, GitHubPort, JitRegistration, RunnerInfo, RunnerToken } from './port.js';

/** How the adapter authenticates. Secrets arrive already read; the adapter never logs them. */
export type GitHubAuth =
  { kind: 'token'; token: string } | { kind: 'app'; appId: number | string; installationId: number; privateKey: string };

export type { RequestObserver } from './request-hooks.js';

/** Fleet-scale figures of one host's adapter. */
export interface FleetStats {
  /** Installation tokens minted in the last hour of clock time (0 with a token). */
  mintsLastHour(): number;
  /** Times a rate-limit answer closed the host's gate. */
  gatePauses(): number;
  /** Epoch ms until which every call of this host waits. */
  pausedUntil(): number;
}

/** Options of the adapter; defaults: system clock, no observer, 30 s per-request timeout. */
export interface OctokitPortOptions {
  apiUrl: string;
  scope: RunnerScope;
  auth: GitHubAuth;
  clock: Clock;
  log: Logger;
  onRequest?: RequestObserver;
  /** Aborts waits between retries (shutdown). */
  signal?: AbortSignal;
  /**
   * The fetch Octokit sends with: the agent passes its own over node:https (http-fetch.ts, also
   * where a GHES CA bundle is trusted); absent: Node's global fetch (undici).
   */
  fetch?: HttpFetch;
  userAgent?: string;
  /** Uniform numbers in [0, 1) for the retry jitter; default Math.random (a seeded one in simulations). */
  random?: () => number;
  /** Deadline of one HTTP exchange, headers and body; default REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
  /** This host's retry slots (host config `fleet`, github/fleet-pacing.ts); absent: full jitter alone. */
  slots?: FleetSlots;
}

/**
 * One HTTP request may take this long before it counts as a network error: the agent's calls
 * answer in well under a second, and 30 s outlasts GitHub's slowest documented answers while
 * keeping a hung TCP peer from holding a registration for minutes.
 */
export const REQUEST_TIMEOUT_MS = 30_000;

interface OctokitErrorLike {
  status?: number;
  message?: string;
  response?: { headers?: Record<string, string | number | undefined>; data?: unknown };
}

/**
 * The GitHubPort over @octokit/core. Retries follow docs/runner-contract.md §10 (see retry-policy.ts),
 * waiting on the injected Clock, so tests of retry-after need no real sleeping. The throttling and
 * retry plugins are not used: they wait on real timers (Bottleneck) and cannot take a Clock, and
 * the agent makes about one call per job, so their queueing buys nothing.
 */
export function createOctokitPort(opts: OctokitPortOptions): GitHubPort & { octokit: Octokit; fleet: FleetStats } {
  const { clock, log, scope } = opts;
  const timeoutMs = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  // The deadline sits on fetch itself: a signal added in a request hook never reaches fetch.
  const deadlineFetch = withDeadline(opts.fetch ?? globalThis.fetch, timeoutMs, opts.signal);
  const gate = new HostGate(clock);
  const app = opts.auth.kind === 'app' ? opts.auth : undefined;
  const tokens = app
    ? new InstallationTokenCache({
        appId: app.appId,
        privateKey: app.privateKey,
        clock,
        mint: async (jwt) => {
          const res = await octokit.request('POST /app/installations/{installation_id}/access_tokens', {
            installation_id: app.installationId,
            headers: { authorization: `bearer ${jwt}` },
          });
          const data = res.data as { token: string; expires_at?: string };
          return { token: data.token, expiresAt: data.expires_at };
        },
      })
    : undefined;
  const octokit = new Octokit({
    baseUrl: opts.apiUrl.replace(/\/+$/, ''),
    userAgent: opts.userAgent ?? 'runner-warden',
    log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
    request: {
      fetch: deadlineFetch,
      // Octokit's own retry is off: we retry in the hook below with the injected clock.
      retries: 0,
    },
    ...(tokens ? { authStrategy: cachedAppAuth(tokens) } : { auth: (opts.auth as { token: string }).token }),
  });

  installRetryHook(octokit, {
    clock,
    log,
    gate,
    ...(opts.onRequest ? { onRequest: opts.onRequest } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.random ? { random: opts.random } : {}),
    ...(opts.slots ? { slots: opts.slots } : {}),
  });

  const prefix = scopePath(scope);

  /** Turns an Octokit failure into a GitHubApiError with an operator hint. */
  const fail = (endpoint: string, err: unknown): never => {
    if (isAbort(err)) throw err;
    const e = err as OctokitErrorLike;
    const msg = errorMessage(e);
    let hint: string | undefined;
    if (e.status === 401) hint = `the credentials were refused (expired or wrong token); ${permissionHint(scope)}`;
    else if (e.status === 403 && !isRateLimited({ status: 403, headers: e.response?.headers ?? {}, message: msg }))
      hint = permissionHint(scope);
    else if (e.status === 404) hint = `not found: check github.org / github.repo / github.enterprise and that the token can see it`;
    throw new GitHubApiError(`GitHub API ${endpoint} failed${e.status ? ` with ${e.status}` : ''}: ${msg}`, e.status, endpoint, hint, {
      cause: err,
      attempts: attemptsOf(err),
    });
  };

  let cachedGroups: Map<string, number> | undefined;
  let defaultGroupId: number | undefined;

  return {
    octokit,
    fleet: {
      mintsLastHour: () => tokens?.mintsLastHour() ?? 0,
      gatePauses: () => gate.pauses,
      pausedUntil: () => gate.pausedUntil,
    },

    async generateJitConfig(req): Promise<JitRegistration> {
      const endpoint = `POST ${prefix}/actions/runners/generate-jitconfig`;
      try {
        const res = await octokit.request(`POST ${prefix}/actions/runners/generate-jitconfig`, {
          name: req.name,
          runner_group_id: req.runnerGroupId,
          labels: req.labels,
          work_folder: req.workFolder,
        });
        const data = res.data as { runner: RunnerInfo; encoded_jit_config: string };
        return { runner: data.runner, encodedJitConfig: data.encoded_jit_config };
      } catch (err) {
        return fail(endpoint, err);
      }
    },

    async resolveRunnerGroup(name): Promise<number> {
      if (scope.kind === 'repo') {
        // Repository runners have no groups API; they always join the default group (id 1).
        if (name && name !== 'Default') {
          throw new GitHubApiError(
            `runner group "${name}" cannot be used with a repository scope`,
            undefined,
            'runner-groups',
            'remove runner.group (repository runners always join the Default group)',
          );
        }
        return 1;
      }
      if (!cachedGroups) {
        const endpoint = `GET ${prefix}/actions/runner-groups`;
        const groups = new Map<string, number>();
        try {
          for (let page = 1; page < 100; page++) {
            const res = await octokit.request(`GET ${prefix}/actions/runner-groups`, { per_page: 100, page });
            const data = res.data as { runner_groups: { id: number; name: string; default: boolean }[] };
            for (const g of data.runner_groups) {
              groups.set(g.name, g.id);
              if (g.default) defaultGroupId = g.id;
            }
            if (data.runner_groups.length < 100) break;
          }
        } catch (err) {
          fail(endpoint, err);
        }
        cachedGroups = groups;
      }
      if (name === null || name === '') return defaultGroupId ?? 1;
      const id = cachedGroups.get(name);
      if (id === undefined) {
        throw new GitHubApiError(
          `runner group "${name}" does not exist`,
          404,
          `GET ${prefix}/actions/runner-groups`,
          `create the group or fix runner.group / the policy's runner.group; known: ${[...cachedGroups.keys()].join(', ')}`,
        );
      }
      return id;
    },

    async deleteRunner(id): Promise<DeleteOutcome> {
      const endpoint = `DELETE ${prefix}/actions/runners/{runner_id}`;
      try {
        await octokit.request(`DELETE ${prefix}/actions/runners/{runner_id}`, { runner_id: id });
        return 'deleted';
      } catch (err) {
        const status = (err as OctokitErrorLike).status;
        if (status === 404) return 'not-found';
        if (status === 422) return 'busy';
        return fail(endpoint, err);
      }
    },

    async findRunnersByName(name): Promise<RunnerInfo[]> {
      const endpoint = `GET ${prefix}/actions/runners`;
      try {
        const res = await octokit.request(`GET ${prefix}/actions/runners`, { name, per_page: 100 });
        return (res.data as { runners: RunnerInfo[] }).runners;
      } catch (err) {
        return fail(endpoint, err);
      }
    },

    async createRegistrationToken(): Promise<RunnerToken> {
      const endpoint = `POST ${prefix}/actions/runners/registration-token`;
      try {
        const res = await octokit.request(`POST ${prefix}/actions/runners/registration-token`);
        const data = res.data as { token: string; expires_at: string };
        return { token: data.token, expiresAt: data.expires_at };
      } catch (err) {
        return fail(endpoint, err);
      }
    },

    async createRemoveToken(): Promise<RunnerToken> {
      const endpoint = `POST ${prefix}/actions/runners/remove-token`;
      try {
        const res = await octokit.request(`POST ${prefix}/actions/runners/remove-token`);
        const data = res.data as { token: string; expires_at: string };
        return { token: data.token, expiresAt: data.expires_at };
      } catch (err) {
        return fail(endpoint, err);
      }
    },
  };
}
