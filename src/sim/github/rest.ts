/**
 * The public REST endpoints of docs/runner-contract.md §10 for repo, org and enterprise scopes, with GitHub's
 * authentication, permission, rate-limit and error behaviour. Only these count as API calls.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { checkRunnerPermission, scopeHeaders, type Authenticator, type Principal } from './auth.js';
import { apiError, findRoute, header, route, validationError, type Reply, type RequestContext, type Route } from './http.js';
import { buildRunnerFiles, encodeJitConfig } from './jit.js';
import type { RateLimiter } from './ratelimit.js';
import type { SecondaryLimiter } from './secondary.js';
import { scopeRestPath, type Scope } from './scope.js';
import type { RunnerState } from './runners.js';
import type { FakeState } from './state.js';
import type { FakeAppSpec } from './types.js';

/** GitHub's page size default and maximum for list endpoints. */
const DEFAULT_PER_PAGE = 30;
const MAX_PER_PAGE = 100;
/** generate-jitconfig and the label endpoints take 1..100 labels (OpenAPI minItems/maxItems). */
const MAX_LABELS = 100;
/** An installation token may be limited to at most 500 repositories (docs/runner-contract.md §10). */
const MAX_TOKEN_REPOSITORIES = 500;

/** Installation permissions when the app spec names none. */
const DEFAULT_APP_PERMISSIONS: Record<string, 'read' | 'write'> = {
  administration: 'write',
  organization_self_hosted_runners: 'write',
  metadata: 'read',
};

/** What the REST side needs from the server. */
export interface RestDeps {
  state: FakeState;
  auth: Authenticator;
  limiter: RateLimiter;
  org: string;
  repos: string[];
  enterprise: string;
  app: FakeAppSpec | undefined;
  /** The REST base URL (with the GHES prefix), for Link headers and runners_url. */
  restBase: () => string;
  brokerUrl: () => string;
  /** Secondary limits (points per endpoint, concurrency); undefined turns them off. */
  secondary?: SecondaryLimiter;
  /** Called for each installation token minted. */
  onTokenMinted?: () => void;
}

interface Call {
  ctx: RequestContext;
  principal: Principal;
  params: Record<string, string>;
}

type RestHandler = (call: Call) => Reply | Promise<Reply>;

/** The REST side: the request handler and the rate-limit headers for answers it does not make (faults). */
export interface RestApi {
  handle: (ctx: RequestContext) => Promise<Reply>;
  /** The caller's current x-ratelimit-* headers, without counting a call. */
  rateHeaders: (ctx: RequestContext) => Record<string, string>;
  /** The rate-limit key of the caller (a token, or `installation:<id>`). */
  callerKey: (ctx: RequestContext) => string;
}

/** Builds the REST request handler; the server calls it with the path below the prefix. */
export function createRestApi(deps: RestDeps): RestApi {
  const { state } = deps;
  const routes: Route[] = [];
  // The caller of each request in flight, set before its handler runs.
  const principals = new WeakMap<RequestContext, Principal>();
  const add = (method: string, template: string, h: RestHandler): void => {
    routes.push(
      route(method, template, (ctx, params) =>
        h({ ctx, principal: principals.get(ctx) ?? { kind: 'anonymous', key: 'anonymous' }, params }),
      ),
    );
  };

  /** Resolves the scope named by the path, or the 404 GitHub gives for an unknown one. */
  const scopeOf = (kind: Scope['kind'], p: Record<string, string>): Scope | undefined => {
    if (kind === 'org') return eq(p.org, deps.org) ? { kind, org: deps.org } : undefined;
    if (kind === 'enterprise') return eq(p.enterprise, deps.enterprise) ? { kind, enterprise: deps.enterprise } : undefined;
    const full = deps.repos.find((r) => eq(r, `${p.owner}/${p.repo}`));
    if (!full) return undefined;
    const [owner, repo] = full.split('/') as [string, string];
    return { kind, owner, repo };
  };

  /** Wraps a scoped handler with the scope lookup and the permission check. */
  const scoped = (kind: Scope['kind'], h: (call: Call, scope: Scope) => Reply | Promise<Reply>): RestHandler => {
    return (call) => {
      const scope = scopeOf(kind, call.params);
      if (!scope) return apiError(404, 'Not Found');
      const denied = checkRunnerPermission(call.principal, scope, call.ctx.method !== 'GET');
      const extra = scopeHeaders(call.principal, scope);
      const reply = denied ?? (h(call, scope) as Reply);
      return Promise.resolve(reply).then((r) => ({ ...r, headers: { ...extra, ...r.headers } }));
    };
  };

  /** The runner with the path's runner_id in this scope, or undefined. */
  const runnerIn = (scope: Scope, p: Record<string, string>): RunnerState | undefined => {
    const id = Number(p.runner_id);
    if (!Number.isInteger(id)) return undefined;
    return state.runners.inScope(scope).find((r) => r.id === id);
  };

  const families: [Scope['kind'], string][] = [
    ['repo', '/repos/{owner}/{repo}'],
    ['org', '/orgs/{org}'],
    ['enterprise', '/enterprises/{enterprise}'],
  ];
  for (const [kind, base] of families) {
    const runners = `${base}/actions/runners`;
    add(
      'POST',
      `${runners}/generate-jitconfig`,
      scoped(kind, (c, s) => generateJitConfig(c, s)),
    );
    add(
      'POST',
      `${runners}/registration-token`,
      scoped(kind, (_c, s) => runnerToken(s, 'registration')),
    );
    add(
      'POST',
      `${runners}/remove-token`,
      scoped(kind, (_c, s) => runnerToken(s, 'remove')),
    );
    add(
      'GET',
      runners,
      scoped(kind, (c, s) => listRunners(c, s)),
    );
    add(
      'GET',
      `${runners}/{runner_id}`,
      scoped(kind, (c, s) => {
        const r = runnerIn(s, c.params);
        return r ? { status: 200, body: state.runners.rest(r) } : apiError(404, 'Not Found');
      }),
    );
    add(
      'DELETE',
      `${runners}/{runner_id}`,
      scoped(kind, (c, s) => {
        const r = runnerIn(s, c.params);
        if (!r) return apiError(404, 'Not Found');
        // The service refuses to remove a runner that is running a job (docs/runner-contract.md §10, 422).
        if (r.jobId !== null) return apiError(422, `Bad request - Runner "${r.name}" is still running a job"`);
        state.runners.remove(r.id, 'rest');
        return { status: 204 };
      }),
    );
    const labels = `${runners}/{runner_id}/labels`;
    for (const method of ['GET', 'POST', 'PUT', 'DELETE'] as const) {
      add(
        method,
        labels,
        scoped(kind, (c, s) => {
          const r = runnerIn(s, c.params);
          if (!r) return apiError(404, 'Not Found');
          return labelsCall(c, r, method);
        }),
      );
    }
    add(
      'DELETE',
      `${labels}/{name}`,
      scoped(kind, (c, s) => {
        const r = runnerIn(s, c.params);
        const name = c.params.name ?? '';
        const label = r?.labels.find((l) => eq(l.name, name));
        if (!r || !label) return apiError(404, 'Not Found');
        if (label.type === 'read-only') return validationError([`Cannot remove read-only label "${label.name}".`]);
        r.labels = r.labels.filter((l) => l !== label);
        return labelList(r);
      }),
    );
  }

  add(
    'GET',
    '/orgs/{org}/actions/runner-groups',
    scoped('org', (c, s) => {
      const all = state.groups.list.map((g) => ({
        id: g.id,
        name: g.name,
        visibility: g.visibility ?? 'all',
        default: g.default ?? g.id === 1,
        runners_url: `${deps.restBase()}${scopeRestPath(s)}/actions/runner-groups/${g.id}/runners`,
        inherited: false,
        allows_public_repositories: false,
        restricted_to_workflows: false,
        selected_workflows: [],
        workflow_restrictions_read_only: false,
      }));
      const { items, links } = paginate(c.ctx, all, `${deps.restBase()}${c.ctx.routePath}`);
      return { status: 200, body: { total_count: all.length, runner_groups: items }, headers: links };
    }),
  );

  add('POST', '/app/installations/{installation_id}/access_tokens', (c) => installationToken(c));

  add('GET', '/rate_limit', (c) => {
    const core = deps.limiter.snapshot(c.principal.key);
    const other = (limit: number) => ({ limit, remaining: limit, used: 0, reset: core.reset });
    return {
      status: 200,
      body: {
        resources: {
          core,
          search: other(30),
          graphql: other(5000),
          actions_runner_registration: other(10000),
        },
        rate: core,
      },
    };
  });

  function generateJitConfig(c: Call, scope: Scope): Reply {
    const b = c.ctx.body as Record<string, unknown> | undefined;
    const problems: string[] = [];
    if (!isObject(b)) return validationError(['Request body must be a JSON object.']);
    if (typeof b.name !== 'string' || b.name.trim() === '') problems.push('"name" is required and must be a non-empty string.');
    if (!Number.isInteger(b.runner_group_id)) problems.push('"runner_group_id" is required and must be an integer.');
    problems.push(...labelProblems(b.labels, 1));
    if (b.work_folder !== undefined && typeof b.work_folder !== 'string') problems.push('"work_folder" must be a string.');
    if (problems.length > 0) return validationError(problems);
    const name = b.name as string;
    const group = state.groups.byId(b.runner_group_id as number);
    if (!group) return apiError(404, 'Not Found');
    // The service refuses a second runner with the same name in the same scope.
    if (state.runners.findByName(scope, name)) return apiError(409, `Already exists - A runner with the name "${name}" already exists.`);
    const workFolder = (b.work_folder as string | undefined) ?? '_work';
    const r = state.runners.create({
      scope,
      name,
      groupId: group.id,
      labels: b.labels as string[],
      ephemeral: true,
      disableUpdate: false,
      workFolder,
      via: 'jit',
    });
    const files = buildRunnerFiles({
      agentId: r.id,
      agentName: r.name,
      poolId: group.id,
      poolName: group.name,
      brokerUrl: deps.brokerUrl(),
      workFolder,
      ephemeral: true,
      disableUpdate: false,
      clientId: r.clientId,
    });
    return { status: 201, body: { runner: state.runners.rest(r), encoded_jit_config: encodeJitConfig(files) } };
  }

  function runnerToken(scope: Scope, kind: 'registration' | 'remove'): Reply {
    const t = state.tokens.issue({ kind, scope }, '');
    return { status: 201, body: { token: t.token, expires_at: new Date(t.expiresAt).toISOString() } };
  }

  function listRunners(c: Call, scope: Scope): Reply {
    const name = c.ctx.query.name;
    let list = state.runners.inScope(scope);
    if (name !== undefined) list = list.filter((r) => r.name === name);
    const all = list.map((r) => state.runners.rest(r));
    const { items, links } = paginate(c.ctx, all, `${deps.restBase()}${c.ctx.routePath}`);
    return { status: 200, body: { total_count: all.length, runners: items }, headers: links };
  }

  function labelsCall(c: Call, r: RunnerState, method: 'GET' | 'POST' | 'PUT' | 'DELETE'): Reply {
    if (method === 'GET') return labelList(r);
    if (method === 'DELETE') {
      r.labels = r.labels.filter((l) => l.type === 'read-only');
      return labelList(r);
    }
    const b = c.ctx.body;
    const problems = isObject(b) ? labelProblems(b.labels, method === 'POST' ? 1 : 0) : ['Request body must be a JSON object.'];
    if (problems.length > 0) return validationError(problems);
    const names = (b as { labels: string[] }).labels;
    const keep = method === 'PUT' ? r.labels.filter((l) => l.type === 'read-only') : r.labels;
    const added = names.filter((n) => !keep.some((l) => eq(l.name, n))).map((n) => state.labels.label(n, 'custom'));
    r.labels = dedupe([...keep, ...added]);
    state.changed();
    return labelList(r);
  }

  function labelList(r: RunnerState): Reply {
    return { status: 200, body: { total_count: r.labels.length, labels: r.labels.map((l) => ({ ...l })) } };
  }

  function installationToken(c: Call): Reply {
    if (c.principal.kind !== 'app') return apiError(401, 'A JSON web token could not be decoded');
    const app = deps.app;
    if (!app || Number(c.params.installation_id) !== app.installationId) return apiError(404, 'Not Found');
    const b = (c.ctx.body ?? {}) as Record<string, unknown>;
    const errors: { code: string; field: string; resource: string }[] = [];
    const invalid = (field: string): void => {
      errors.push({ resource: 'InstallationAccessToken', field, code: 'invalid' });
    };
    if (!isObject(b)) invalid('body');
    else {
      if (b.repositories !== undefined && (!isStringArray(b.repositories) || b.repositories.length > MAX_TOKEN_REPOSITORIES))
        invalid('repositories');
      if (b.repository_ids !== undefined && !(Array.isArray(b.repository_ids) && b.repository_ids.every(Number.isInteger)))
        invalid('repository_ids');
      if (
        b.permissions !== undefined &&
        !(isObject(b.permissions) && Object.values(b.permissions).every((v) => v === 'read' || v === 'write'))
      )
        invalid('permissions');
    }
    if (errors.length > 0) return apiError(422, 'Validation Failed', { errors });
    const granted = app.permissions ?? DEFAULT_APP_PERMISSIONS;
    const requested = b.permissions as Record<string, 'read' | 'write'> | undefined;
    if (requested) {
      for (const [perm, level] of Object.entries(requested)) {
        const has = granted[perm];
        if (!has || (level === 'write' && has !== 'write'))
          return apiError(422, 'The permissions requested are not granted to this installation.');
      }
    }
    let repositories: string[] | null = null;
    if (b.repositories !== undefined) {
      const known = deps.repos.map((r) => r.split('/')[1]!.toLowerCase());
      repositories = (b.repositories as string[]).map((n) => n.toLowerCase());
      if (repositories.some((n) => !known.includes(n)))
        return apiError(422, 'There is at least one repository that does not exist or is not accessible to the parent installation.');
    }
    const permissions = requested ?? granted;
    // Installation tokens are `ghs_` prefixed and last one hour (docs/runner-contract.md §10).
    const t = state.tokens.issue({ kind: 'installation', permissions, repositories, installationId: app.installationId }, 'ghs_');
    deps.onTokenMinted?.();
    return {
      status: 201,
      body: {
        token: t.token,
        expires_at: new Date(t.expiresAt).toISOString(),
        permissions,
        repository_selection: repositories ? 'selected' : 'all',
      },
    };
  }

  const callerKey = (ctx: RequestContext): string => {
    const auth = deps.auth.authenticate(header(ctx.headers, 'authorization'));
    return auth.ok ? auth.principal.key : 'anonymous';
  };
  const rateHeaders = (ctx: RequestContext): Record<string, string> => deps.limiter.take(callerKey(ctx), false).headers;

  const handle = async (ctx: RequestContext): Promise<Reply> => {
    const auth = deps.auth.authenticate(header(ctx.headers, 'authorization'));
    const requestId = `${randomBytes(4).toString('hex').toUpperCase()}:${randomUUID().slice(0, 8).toUpperCase()}`;
    const common: Record<string, string> = {
      'x-github-api-version-selected': '2022-11-28',
      'x-github-media-type': 'github.v3; format=json',
      'x-github-request-id': requestId,
    };
    const isRateLimit = ctx.routePath.replace(/\/$/, '') === '/rate_limit';
    if (!auth.ok) {
      const rl = deps.limiter.take('anonymous', true);
      return { ...auth.reply, headers: { ...common, ...rl.headers } };
    }
    principals.set(ctx, auth.principal);
    // GET /rate_limit does not count against the primary limit (docs/runner-contract.md §10).
    const rl = deps.limiter.take(auth.principal.key, !isRateLimit);
    if (rl.limited) return { ...rl.limited, headers: { ...common, ...rl.headers } };
    const found = findRoute(routes, ctx.method, ctx.routePath);
    let reply: Reply;
    if (!found) reply = apiError(404, 'Not Found');
    else if (ctx.bodyInvalid) reply = apiError(400, 'Problems parsing JSON');
    else
      reply =
        deps.secondary?.charge(auth.principal.key, ctx.method, found.route.template) ?? (await found.route.handler(ctx, found.params));
    return { ...reply, headers: { ...common, ...rl.headers, ...reply.headers } };
  };
  return { handle, rateHeaders, callerKey };

  function paginate<T>(ctx: RequestContext, all: T[], selfUrl: string): { items: T[]; links: Record<string, string> } {
    const perPage = clamp(parseInt(ctx.query.per_page ?? '', 10) || DEFAULT_PER_PAGE, 1, MAX_PER_PAGE);
    const page = Math.max(1, parseInt(ctx.query.page ?? '', 10) || 1);
    const items = all.slice((page - 1) * perPage, page * perPage);
    const last = Math.max(1, Math.ceil(all.length / perPage));
    const link = (p: number, rel: string): string => {
      const q = new URLSearchParams({ ...ctx.query, per_page: String(perPage), page: String(p) });
      return `<${selfUrl}?${q.toString()}>; rel="${rel}"`;
    };
    const parts: string[] = [];
    if (page > 1) parts.push(link(page - 1, 'prev'));
    if (page < last) parts.push(link(page + 1, 'next'), link(last, 'last'));
    if (page > 1) parts.push(link(1, 'first'));
    return { items, links: parts.length > 0 ? { link: parts.join(', ') } : {} };
  }
}

function labelProblems(labels: unknown, min: number): string[] {
  if (!Array.isArray(labels)) return ['"labels" is required and must be an array of strings.'];
  const problems: string[] = [];
  if (labels.length < min) problems.push(`"labels" needs at least ${min} item(s).`);
  if (labels.length > MAX_LABELS) problems.push(`"labels" allows at most ${MAX_LABELS} items.`);
  if (!labels.every((l) => typeof l === 'string' && l.trim() !== '')) problems.push('"labels" items must be non-empty strings.');
  return problems;
}

function dedupe<T extends { name: string }>(labels: T[]): T[] {
  const out: T[] = [];
  for (const l of labels) if (!out.some((o) => eq(o.name, l.name))) out.push(l);
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function eq(a: string | undefined, b: string): boolean {
  return a !== undefined && a.toLowerCase() === b.toLowerCase();
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}
