/**
 * The small HTTP vocabulary the fake's route files share: a request context, a reply value that
 * the server writes and records, templated routes, and GitHub-shaped error bodies.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** The docs link on every error body; the value is what github.com sends for the REST docs. */
export const DOCS_URL = 'https://docs.github.com/rest';

/** What a handler returns; server.ts writes it and records it. */
export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** One parsed request as handlers see it. */
export interface RequestContext {
  method: string;
  /** Full path, no query. */
  path: string;
  /** Path below the REST prefix, or below `/_broker` for broker requests. */
  routePath: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  /** Parsed JSON, or undefined for an empty body. */
  body: unknown;
  /** True when the body was not empty and did not parse as JSON. */
  bodyInvalid: boolean;
  /** Aborts when the client goes away or the server closes (long polls watch it). */
  signal: AbortSignal;
}

/** A GitHub REST error: `{message, documentation_url, status}` (OpenAPI "Basic Error"). */
export function apiError(status: number, message: string, extra: Record<string, unknown> = {}): Reply {
  return { status, body: { message, documentation_url: DOCS_URL, status: String(status), ...extra } };
}

/** A 422 with the "Validation Error Simple" shape (errors are strings). */
export function validationError(problems: string[]): Reply {
  return apiError(422, `Invalid request.\n\n${problems.join('\n')}`, { errors: problems });
}

/** A handler for one route; `params` holds the decoded path parameters. */
export type Handler = (ctx: RequestContext, params: Record<string, string>) => Reply | Promise<Reply>;

/** A route built from a template like `/orgs/{org}/actions/runners/{runner_id}`. */
export interface Route {
  method: string;
  template: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
}

/** Compiles a template; each `{param}` matches one path segment. */
export function route(method: string, template: string, handler: Handler): Route {
  const keys: string[] = [];
  const source = template
    .split('/')
    .map((seg) => {
      const m = /^\{(\w+)\}$/.exec(seg);
      if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      keys.push(m[1]!);
      return '([^/]+)';
    })
    .join('/');
  return { method, template, pattern: new RegExp(`^${source}/?$`), keys, handler };
}

/** Finds the route for a request; literal segments win over parameters when both match. */
export function findRoute(routes: Route[], method: string, path: string): { route: Route; params: Record<string, string> } | undefined {
  let best: { route: Route; params: Record<string, string> } | undefined;
  for (const r of routes) {
    if (r.method !== method) continue;
    const m = r.pattern.exec(path);
    if (!m) continue;
    if (best && best.route.keys.length <= r.keys.length) continue;
    const params: Record<string, string> = {};
    r.keys.forEach((k, i) => {
      params[k] = decodeURIComponent(m[i + 1] ?? '');
    });
    best = { route: r, params };
  }
  return best;
}

/** The first value of a header. */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Resolves after `ms` of real time, or early when the signal aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
