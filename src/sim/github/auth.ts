/**
 * Who is calling and what they may do: configured PATs, App JWTs (RS256, verified like GitHub
 * does per docs/runner-contract.md §10) and the installation tokens the fake issued, plus the permission each
 * runner endpoint needs.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { apiError, type Reply } from './http.js';
import type { Scope } from './scope.js';
import type { FakeState } from './state.js';
import type { FakeAppSpec, FakeTokenSpec } from './types.js';

/** The token accepted when no `tokens` option is given; it has every scope. Not a secret. */
export const DEFAULT_FAKE_TOKEN = 'fake-token-full-access';

/** Every classic scope the runner endpoints need (docs/runner-contract.md §10). */
const FULL_SCOPES = ['repo', 'admin:org', 'manage_runners:enterprise'];

/** GitHub tolerates this much clock drift on a JWT's `iat`; the docs suggest backdating by 60 s. */
const JWT_SKEW_S = 60;
/** A JWT may live at most 10 minutes (GitHub docs). */
const JWT_MAX_LIFETIME_S = 600;

/** The caller of a REST request. */
export type Principal =
  | { kind: 'anonymous'; key: string }
  | { kind: 'pat'; key: string; scopes: string[] }
  | { kind: 'fine-grained'; key: string; permissions: Record<string, 'read' | 'write'> }
  | {
      kind: 'installation';
      key: string;
      permissions: Record<string, 'read' | 'write'>;
      repositories: string[] | null;
    }
  | { kind: 'app'; key: string; appId: string };

/** Outcome of authenticating: a principal, or the 401 to send. */
export type AuthResult = { ok: true; principal: Principal } | { ok: false; reply: Reply };

/** Accepts the configured tokens, App JWTs and issued installation tokens. */
export class Authenticator {
  private readonly tokens: Map<string, FakeTokenSpec>;
  private readonly appKey: KeyObject | undefined;

  constructor(
    tokens: FakeTokenSpec[] | undefined,
    private readonly app: FakeAppSpec | undefined,
    private readonly state: FakeState,
  ) {
    const list = tokens ?? [{ token: DEFAULT_FAKE_TOKEN, scopes: FULL_SCOPES }];
    this.tokens = new Map(list.map((t) => [t.token, t]));
    this.appKey = app ? createPublicKey(app.publicKeyPem) : undefined;
  }

  /** Reads `Authorization: Bearer|token <t>`; no header is anonymous. */
  authenticate(authorization: string | undefined): AuthResult {
    if (!authorization) return { ok: true, principal: { kind: 'anonymous', key: 'anonymous' } };
    const m = /^(bearer|token)\s+(\S+)\s*$/i.exec(authorization);
    if (!m) return { ok: false, reply: badCredentials() };
    const credential = m[2]!;
    const spec = this.tokens.get(credential);
    if (spec) {
      if (spec.permissions) return { ok: true, principal: { kind: 'fine-grained', key: credential, permissions: spec.permissions } };
      return { ok: true, principal: { kind: 'pat', key: credential, scopes: spec.scopes ?? [] } };
    }
    const issued = this.state.tokens.find(credential, ['installation']);
    if (issued) {
      return {
        ok: true,
        principal: {
          kind: 'installation',
          // Every token of one installation draws on the installation's budget (GitHub docs).
          key: issued.installationId !== undefined ? `installation:${issued.installationId}` : credential,
          permissions: issued.permissions ?? {},
          repositories: issued.repositories ?? null,
        },
      };
    }
    // Three dot-separated parts: treat it as a JWT (App authentication).
    if (credential.split('.').length === 3) {
      const jwt = this.verifyJwt(credential);
      if (!jwt.ok) return { ok: false, reply: apiError(401, jwt.message) };
      return { ok: true, principal: { kind: 'app', key: `app:${jwt.appId}`, appId: jwt.appId } };
    }
    return { ok: false, reply: badCredentials() };
  }

  /** Checks an App JWT: RS256 signature by the app's key, `iss`, `iat` and `exp` (docs/runner-contract.md §10). */
  verifyJwt(jwt: string): { ok: true; appId: string } | { ok: false; message: string } {
    const undecodable = { ok: false as const, message: 'A JSON web token could not be decoded' };
    if (!this.app || !this.appKey) return undecodable;
    const [h, p, s] = jwt.split('.') as [string, string, string];
    let head: { alg?: string };
    let claims: { iss?: unknown; iat?: unknown; exp?: unknown };
    try {
      head = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as typeof head;
      claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      return undecodable;
    }
    if (head.alg !== 'RS256') return undecodable;
    const signed = verify('RSA-SHA256', Buffer.from(`${h}.${p}`), this.appKey, Buffer.from(s, 'base64url'));
    if (!signed) return undecodable;
    const iss = String(claims.iss);
    if (iss !== String(this.app.appId) && iss !== this.app.clientId)
      return { ok: false, message: "'Issuer' claim ('iss') must be an Integer" };
    const now = Math.floor(this.state.clock.now() / 1000);
    if (typeof claims.iat !== 'number' || claims.iat > now + JWT_SKEW_S)
      return {
        ok: false,
        message: "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued.",
      };
    if (typeof claims.exp !== 'number' || claims.exp <= now)
      return {
        ok: false,
        message: "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.",
      };
    if (claims.exp > now + JWT_MAX_LIFETIME_S + JWT_SKEW_S || claims.exp - claims.iat > JWT_MAX_LIFETIME_S)
      return { ok: false, message: "'Expiration time' claim ('exp') is too far in the future." };
    return { ok: true, appId: iss };
  }
}

/** 401 as GitHub sends it for an unknown or expired token. */
export function badCredentials(): Reply {
  return apiError(401, 'Bad credentials');
}

/** The classic scope a scope family needs (docs/runner-contract.md §10). */
function neededScope(scope: Scope): string {
  return scope.kind === 'repo' ? 'repo' : scope.kind === 'org' ? 'admin:org' : 'manage_runners:enterprise';
}

/** Classic scopes that imply others. */
function hasScope(scopes: string[], needed: string): boolean {
  if (scopes.includes(needed)) return true;
  if (needed === 'manage_runners:enterprise') return scopes.includes('admin:enterprise');
  return false;
}

/**
 * Checks that `p` may call a runner endpoint of `scope`; returns the reply to send when not.
 * Fine-grained and App permissions: `administration` for repos, `organization_self_hosted_runners`
 * for orgs, read for GET and write otherwise; enterprise endpoints are closed to Apps.
 */
export function checkRunnerPermission(p: Principal, scope: Scope, write: boolean): Reply | undefined {
  switch (p.kind) {
    case 'anonymous':
      // GitHub hides admin endpoints from anonymous callers.
      return apiError(401, 'Requires authentication');
    case 'app':
      return apiError(403, 'A JSON web token cannot be used to access this endpoint; use an installation token.');
    case 'pat':
      if (hasScope(p.scopes, neededScope(scope))) return undefined;
      return apiError(403, 'Resource not accessible by personal access token');
    case 'fine-grained':
    case 'installation': {
      const message =
        p.kind === 'installation' ? 'Resource not accessible by integration' : 'Resource not accessible by personal access token';
      if (scope.kind === 'enterprise') return apiError(403, message);
      if (p.kind === 'installation' && scope.kind === 'repo' && p.repositories !== null) {
        // A token limited to some repositories does not see the others at all.
        if (!p.repositories.includes(scope.repo.toLowerCase())) return apiError(404, 'Not Found');
      }
      const perm = scope.kind === 'repo' ? 'administration' : 'organization_self_hosted_runners';
      const level = p.permissions[perm];
      if (level === 'write' || (level === 'read' && !write)) return undefined;
      return apiError(403, message);
    }
  }
}

/** Headers GitHub adds for classic tokens, so a client can say which scope is missing. */
export function scopeHeaders(p: Principal, scope: Scope | undefined): Record<string, string> {
  if (p.kind !== 'pat') return {};
  const h: Record<string, string> = { 'x-oauth-scopes': p.scopes.join(', ') };
  if (scope) h['x-accepted-oauth-scopes'] = neededScope(scope);
  return h;
}
