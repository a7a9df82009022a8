/**
 * Client of the fake GitHub's private broker (src/sim/PROTOCOL.md): sessions, messages, job
 * renew/complete, and the registration exchange that `configure`/`remove` use.
 */
import type { BrokerJob } from '../protocol.js';
import { underDeadline } from '../../lib/deadline.js';

/** A job as the fake hands it to a runner (PROTOCOL.md "Job"). */
export type SimJob = BrokerJob;

/** A message from the long poll; `none` is a 204. */
export type BrokerMessage =
  | { type: 'job'; job: SimJob }
  | { type: 'update'; version: string }
  | { type: 'crash' }
  | { type: 'runnerNotFound' }
  /** 403 AccessDeniedException with ErrorCode 1: the service no longer serves this version. */
  | { type: 'deprecated'; message: string }
  | { type: 'none' }
  | { type: 'other'; raw: unknown };

/** The outcome of creating a session. */
export type SessionResult =
  { kind: 'created'; sessionId: string } | { kind: 'notFound'; message: string } | { kind: 'unauthorized' } | { kind: 'conflict' };

/** The broker could not be reached (connection refused, reset, DNS): the caller retries. */
export class BrokerUnreachableError extends Error {
  override name = 'BrokerUnreachableError';
}

/** The broker answered with a status the caller does not expect. */
export class BrokerHttpError extends Error {
  override name = 'BrokerHttpError';
  constructor(
    readonly status: number,
    readonly method: string,
    readonly url: string,
    readonly body: string,
  ) {
    super(`Http response code: ${status} from '${method} ${url}'${body ? `\n${body}` : ''}`);
  }
}

/** True for errors the listener retries until reconnected: unreachable, or a 5xx. */
export function isConnectError(err: unknown): boolean {
  return err instanceof BrokerUnreachableError || (err instanceof BrokerHttpError && err.status >= 500);
}

/** How long one message long poll may wait on the server (PROTOCOL.md: max 50000). */
export const LONG_POLL_WAIT_MS = 50_000;

/** How long any other broker call may take before it counts as unreachable. */
export const REQUEST_TIMEOUT_MS = 100_000;

interface Reply {
  status: number;
  text: string;
  json: unknown;
}

async function call(method: string, url: string, headers: Record<string, string>, body?: unknown, signal?: AbortSignal): Promise<Reply> {
  // lib/deadline.ts, not AbortSignal.any + AbortSignal.timeout: on Node 20 the combined signal can
  // lose its timeout to a garbage collection, and a broker that never answers then hangs the listener.
  return underDeadline(REQUEST_TIMEOUT_MS, [signal], async (deadlineSignal) => {
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: deadlineSignal,
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      const cause = (err as { cause?: { message?: string } }).cause;
      throw new BrokerUnreachableError(cause?.message ?? (err as Error).message, { cause: err });
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      throw new BrokerUnreachableError((err as Error).message, { cause: err });
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, text, json };
  });
}

/** The runner side of the broker protocol, authenticated with the `.credentials` client id. */
export class BrokerClient {
  constructor(
    private readonly serverUrl: string,
    private readonly clientId: string,
  ) {}

  private url(rel: string): string {
    return new URL(rel, this.serverUrl.endsWith('/') ? this.serverUrl : `${this.serverUrl}/`).toString();
  }

  private get headers(): Record<string, string> {
    return { 'x-sim-client-id': this.clientId };
  }

  /** POST sessions. Throws BrokerUnreachableError or BrokerHttpError for anything unexpected. */
  async createSession(agentId: number, version: string, signal?: AbortSignal): Promise<SessionResult> {
    const url = this.url('sessions');
    const r = await call('POST', url, this.headers, { agentId, version }, signal);
    if (r.status === 201 || r.status === 200) {
      return { kind: 'created', sessionId: String((r.json as { sessionId?: string })?.sessionId) };
    }
    if (r.status === 404) {
      const body = r.json as { code?: string; message?: string } | undefined;
      return { kind: 'notFound', message: String(body?.message ?? body?.code ?? 'RunnerNotFound') };
    }
    if (r.status === 401) return { kind: 'unauthorized' };
    if (r.status === 409) return { kind: 'conflict' };
    throw new BrokerHttpError(r.status, 'POST', url, r.text);
  }

  /** One long poll for the next message. */
  async getMessage(sessionId: string, signal?: AbortSignal): Promise<BrokerMessage> {
    const url = this.url(`sessions/${encodeURIComponent(sessionId)}/message?waitMs=${LONG_POLL_WAIT_MS}`);
    const r = await call('GET', url, this.headers, undefined, signal);
    if (r.status === 204) return { type: 'none' };
    if (r.status === 404) return { type: 'runnerNotFound' };
    if (r.status === 403) {
      const e = r.json as { typeKey?: string; errorCode?: number; message?: string } | undefined;
      if (e?.typeKey === 'AccessDeniedException' && e.errorCode === 1) {
        return { type: 'deprecated', message: String(e.message ?? 'Runner version is deprecated and cannot receive messages.') };
      }
    }
    if (r.status !== 200) throw new BrokerHttpError(r.status, 'GET', url, r.text);
    const m = r.json as { type?: string; job?: SimJob; version?: string } | undefined;
    if (m?.type === 'job' && m.job) return { type: 'job', job: m.job };
    if (m?.type === 'update') return { type: 'update', version: String(m.version ?? '') };
    if (m?.type === 'crash') return { type: 'crash' };
    return { type: 'other', raw: m };
  }

  /** Renews the job lock; false when the job was cancelled or lost (404). */
  async renewJob(jobId: string, signal?: AbortSignal): Promise<boolean> {
    const url = this.url(`jobs/${encodeURIComponent(jobId)}/renew`);
    const r = await call('POST', url, this.headers, {}, signal);
    if (r.status === 404) return false;
    if (r.status >= 300) throw new BrokerHttpError(r.status, 'POST', url, r.text);
    return true;
  }

  /** Reports the job's result. */
  async completeJob(jobId: string, result: string, exitCode: number): Promise<void> {
    const url = this.url(`jobs/${encodeURIComponent(jobId)}/complete`);
    const r = await call('POST', url, this.headers, { result, exitCode });
    if (r.status >= 300) throw new BrokerHttpError(r.status, 'POST', url, r.text);
  }

  /** Deletes the session; errors are ignored (the server may have removed the runner already). */
  async deleteSession(sessionId: string): Promise<void> {
    try {
      await call('DELETE', this.url(`sessions/${encodeURIComponent(sessionId)}`), this.headers);
    } catch {
      // 401/404 after an ephemeral runner was removed, or the fake is gone: expected
    }
  }
}

/** The answer of `POST {api}/actions/runner-registration`. */
export interface RegistrationExchange {
  url: string;
  token: string;
  token_schema?: string;
  use_v2_flow?: boolean;
}

/** Exchanges a registration or remove token (PROTOCOL.md `POST /actions/runner-registration`). */
export async function exchangeToken(
  apiUrl: string,
  token: string,
  githubUrl: string,
  event: 'register' | 'remove',
): Promise<RegistrationExchange> {
  const url = `${apiUrl.replace(/\/+$/, '')}/actions/runner-registration`;
  const r = await call('POST', url, { authorization: `RemoteAuth ${token}` }, { url: githubUrl, runner_event: event });
  if (r.status !== 200) {
    throw new BrokerHttpError(r.status, 'POST', url, r.text);
  }
  return r.json as RegistrationExchange;
}

/** The body of `POST /_broker/agents`. */
export interface AddAgentRequest {
  name: string;
  labels: string[];
  ephemeral: boolean;
  disableUpdate: boolean;
  runnerGroup: string | null;
  replace: boolean;
  workFolder: string;
}

/** The outcome of `POST /_broker/agents`. */
export type AddAgentResult =
  { kind: 'added'; replaced: boolean; files: Record<string, string>; runner: unknown } | { kind: 'exists' } | { kind: 'groupNotFound' };

/** Registers the runner with the broker token from the exchange. */
export async function addAgent(brokerUrl: string, brokerToken: string, req: AddAgentRequest): Promise<AddAgentResult> {
  const url = new URL('agents', brokerUrl.endsWith('/') ? brokerUrl : `${brokerUrl}/`).toString();
  const r = await call('POST', url, { authorization: `Bearer ${brokerToken}` }, req);
  if (r.status === 201 || r.status === 200) {
    const j = r.json as { files?: Record<string, string>; runner?: unknown; replaced?: boolean };
    return { kind: 'added', replaced: Boolean(j.replaced), files: j.files ?? {}, runner: j.runner };
  }
  if (r.status === 409) return { kind: 'exists' };
  if (r.status === 404) return { kind: 'groupNotFound' };
  throw new BrokerHttpError(r.status, 'POST', url, r.text);
}

/** Deletes a registration; throws BrokerHttpError for any failure, 404 (already gone) included. */
export async function deleteAgent(brokerUrl: string, brokerToken: string, agentId: number): Promise<void> {
  const url = new URL(`agents/${agentId}`, brokerUrl.endsWith('/') ? brokerUrl : `${brokerUrl}/`).toString();
  const r = await call('DELETE', url, { authorization: `Bearer ${brokerToken}` });
  if (r.status >= 300) throw new BrokerHttpError(r.status, 'DELETE', url, r.text);
}
