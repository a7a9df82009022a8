/**
 * The private runner protocol of src/sim/PROTOCOL.md: sessions, long-poll messages, job renew and
 * completion, and the config.sh registration flow (`/actions/runner-registration` and
 * `/_broker/agents`). The simulated listener talks to this; the agent never does.
 */
import { delay, findRoute, header, route, type Reply, type RequestContext, type Route } from './http.js';
import { buildRunnerFiles } from './jit.js';
import { scopeUrlPath } from './scope.js';
import type { RunnerState } from './runners.js';
import type { FakeState } from './state.js';

/** A long poll waits at most 50 s (PROTOCOL.md), the listener's own poll timeout. */
export const MAX_POLL_WAIT_MS = 50_000;
/** Version assumed when a session create names none; the contract's runner version. */
const DEFAULT_RUNNER_VERSION = '2.336.0';

const code = (status: number, c: string): Reply => ({ status, body: { code: c } });

/** Builds the handler for paths below `/_broker`. */
export function createBrokerApi(state: FakeState, brokerUrl: () => string): (ctx: RequestContext) => Promise<Reply> {
  const routes: Route[] = [];
  const clientOf = (ctx: RequestContext): RunnerState | undefined => state.runners.byClientId(header(ctx.headers, 'x-sim-client-id'));

  routes.push(
    route('POST', '/sessions', (ctx) => {
      const r = clientOf(ctx);
      // Unknown credentials (never issued, or the registration was deleted): OAuth invalid_client.
      if (!r) return code(401, 'invalid_client');
      const b = (ctx.body ?? {}) as { agentId?: unknown; version?: unknown; os?: unknown };
      if (b.agentId !== r.id) return code(404, 'RunnerNotFound');
      const version = typeof b.version === 'string' ? b.version : DEFAULT_RUNNER_VERSION;
      const os = typeof b.os === 'string' ? b.os : 'linux';
      const opened = state.sessions.open(r, version, os);
      if (!opened.ok) return code(409, 'SessionConflict');
      return { status: 201, body: { sessionId: opened.session.id } };
    }),
  );

  routes.push(
    route('GET', '/sessions/{sid}/message', async (ctx, p) => {
      const s = state.sessions.get(p.sid ?? '');
      if (!s) return code(404, 'SessionNotFound');
      const owner = state.runners.get(s.runnerId);
      if (!owner) return code(404, 'RunnerNotFound');
      if (clientOf(ctx) !== owner) return code(401, 'invalid_client');
      if (s.closed) return code(404, 'SessionNotFound');
      if (state.sessions.isDeprecated(owner.version)) {
        // The broker's RunnerVersionTooOld: AccessDeniedException with ErrorCode 1 (docs/runner-contract.md §2, §6).
        return {
          status: 403,
          body: {
            typeKey: 'AccessDeniedException',
            errorCode: 1,
            message: `Runner version v${owner.version ?? DEFAULT_RUNNER_VERSION} is deprecated and cannot receive messages.`,
          },
        };
      }
      const asked = Number(ctx.query.waitMs ?? MAX_POLL_WAIT_MS);
      const waitMs = Number.isFinite(asked) ? Math.min(Math.max(0, asked), MAX_POLL_WAIT_MS) : MAX_POLL_WAIT_MS;
      // Real time, not the injected clock: this is the wire protocol's own timeout.
      const deadline = Date.now() + waitMs;
      s.pollsInFlight++;
      try {
        for (;;) {
          const r = state.runners.get(s.runnerId);
          if (!r) return code(404, 'RunnerNotFound');
          if (s.closed) return code(404, 'SessionNotFound');
          // A client that went away must not be handed a job it will never see.
          if (ctx.signal.aborted) return { status: 204 };
          const msg = state.jobs.take(r);
          if (msg) return { status: 200, body: msg };
          const left = deadline - Date.now();
          if (left <= 0) return { status: 204 };
          await waitForChange(state, left, ctx.signal);
        }
      } finally {
        s.pollsInFlight--;
        s.lastSeen = state.clock.now();
      }
    }),
  );

  routes.push(
    route('DELETE', '/sessions/{sid}', (ctx, p) => {
      const r = clientOf(ctx);
      // After an ephemeral runner was removed its credentials are gone: 401, which the listener ignores.
      if (!r) return code(401, 'invalid_client');
      const s = state.sessions.get(p.sid ?? '');
      if (!s || s.runnerId !== r.id || s.closed) return code(404, 'SessionNotFound');
      state.sessions.close(s);
      return { status: 204 };
    }),
  );

  routes.push(
    route('POST', '/jobs/{jobId}/renew', (ctx, p) => {
      const j = state.jobs.state(p.jobId ?? '');
      if (!j || j.lost) return code(404, 'JobNotFound');
      if (j.record.cancelled) return code(404, 'JobCancelled');
      const r = clientOf(ctx);
      if (!r || r.id !== j.record.runnerId) return code(401, 'invalid_client');
      if (!state.jobs.renew(j.record.id)) return code(404, 'JobNotFound');
      if (r.session) r.session.lastSeen = state.clock.now();
      return { status: 200, body: { jobId: j.record.id, lockedUntil: new Date(state.clock.now() + state.jobs.lockMs).toISOString() } };
    }),
  );

  routes.push(
    route('POST', '/jobs/{jobId}/complete', (ctx, p) => {
      const j = state.jobs.state(p.jobId ?? '');
      if (!j) return code(404, 'JobNotFound');
      const r = clientOf(ctx);
      const owner = j.record.runnerId === null ? undefined : state.runners.get(j.record.runnerId);
      // The owner may already be gone (deleted server-side); its result is still recorded.
      if (owner && r !== owner) return code(401, 'invalid_client');
      const b = (ctx.body ?? {}) as { result?: unknown; exitCode?: unknown };
      const result = typeof b.result === 'string' ? b.result : 'Failed';
      const exitCode = typeof b.exitCode === 'number' ? b.exitCode : null;
      state.jobs.complete(j.record.id, result, exitCode);
      return { status: 200, body: {} };
    }),
  );

  routes.push(
    route('POST', '/agents', (ctx) => {
      const t = bearer(state, ctx, 'broker-register');
      if (!t) return code(401, 'invalid_token');
      const b = (ctx.body ?? {}) as Record<string, unknown>;
      if (typeof b.name !== 'string' || b.name === '' || !Array.isArray(b.labels) || !b.labels.every((l) => typeof l === 'string'))
        return code(400, 'InvalidRequest');
      const scope = t.scope!;
      const group =
        b.runnerGroup === null || b.runnerGroup === undefined || b.runnerGroup === ''
          ? state.groups.default()
          : state.groups.byName(typeof b.runnerGroup === 'string' ? b.runnerGroup : JSON.stringify(b.runnerGroup));
      if (!group) return code(404, 'RunnerGroupNotFound');
      const existing = state.runners.findByName(scope, b.name);
      if (existing) {
        if (b.replace !== true) return code(409, 'AgentExists');
        state.runners.remove(existing.id, 'replaced');
      }
      const workFolder = typeof b.workFolder === 'string' ? b.workFolder : '_work';
      const r = state.runners.create({
        scope,
        name: b.name,
        groupId: group.id,
        labels: b.labels,
        ephemeral: b.ephemeral === true,
        disableUpdate: b.disableUpdate === true,
        workFolder,
        via: 'registration',
      });
      const files = buildRunnerFiles({
        agentId: r.id,
        agentName: r.name,
        poolId: group.id,
        poolName: group.name,
        brokerUrl: brokerUrl(),
        workFolder,
        ephemeral: r.ephemeral,
        disableUpdate: r.disableUpdate,
        clientId: r.clientId,
      });
      return { status: 201, body: { runner: state.runners.rest(r), files } };
    }),
  );

  routes.push(
    route('DELETE', '/agents/{agentId}', (ctx, p) => {
      const t = bearer(state, ctx, 'broker-remove');
      if (!t) return code(401, 'invalid_token');
      const r = state.runners.get(Number(p.agentId));
      const scope = t.scope!;
      if (!r || !state.runners.inScope(scope).includes(r)) return code(404, 'RunnerNotFound');
      state.runners.remove(r.id, 'broker');
      return { status: 204 };
    }),
  );

  return async (ctx) => {
    const found = findRoute(routes, ctx.method, ctx.routePath);
    if (!found) return code(404, 'NotFound');
    if (ctx.bodyInvalid) return code(400, 'InvalidJson');
    return found.route.handler(ctx, found.params);
  };
}

/**
 * POST /actions/runner-registration: trades a registration (or remove) token for a broker token,
 * as config.sh does before it registers (or removes) a runner.
 */
export function createRegistrationApi(state: FakeState, brokerUrl: () => string): (ctx: RequestContext) => Reply {
  const notFound: Reply = { status: 404, body: { message: 'Not Found' } };
  return (ctx) => {
    if (ctx.method !== 'POST') return notFound;
    const m = /^RemoteAuth\s+(\S+)$/i.exec(header(ctx.headers, 'authorization') ?? '');
    const b = (ctx.body ?? {}) as { url?: unknown; runner_event?: unknown };
    const event = b.runner_event === 'remove' ? 'remove' : b.runner_event === 'register' ? 'register' : undefined;
    if (!m || !event) return notFound;
    const t = state.tokens.find(m[1]!, [event === 'register' ? 'registration' : 'remove']);
    if (!t || !t.scope) return notFound;
    // The token belongs to one repo/org/enterprise; config.sh's --url must name it.
    if (typeof b.url === 'string' && URL.canParse(b.url)) {
      const path = new URL(b.url).pathname.replace(/\/+$/, '').toLowerCase();
      if (!path.endsWith(`/${scopeUrlPath(t.scope).toLowerCase()}`)) return notFound;
    }
    const broker = state.tokens.issue({ kind: event === 'register' ? 'broker-register' : 'broker-remove', scope: t.scope }, '');
    return {
      status: 200,
      body: { url: brokerUrl(), token_schema: 'OAuthAccessToken', token: broker.token, use_v2_flow: true },
    };
  };
}

function bearer(state: FakeState, ctx: RequestContext, kind: 'broker-register' | 'broker-remove') {
  const m = /^Bearer\s+(\S+)$/i.exec(header(ctx.headers, 'authorization') ?? '');
  return m ? state.tokens.find(m[1]!, [kind]) : undefined;
}

/** Waits for a state change, the deadline, or the client leaving, whichever comes first. */
function waitForChange(state: FakeState, ms: number, signal: AbortSignal): Promise<void> {
  const ac = new AbortController();
  const stop = state.onChange(() => ac.abort());
  const onAbort = (): void => ac.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  return delay(ms, ac.signal).finally(() => {
    stop();
    signal.removeEventListener('abort', onAbort);
  });
}
