/**
 * The short-lived tokens the fake GitHub issues (registration, remove, the broker's own, App
 * installation tokens), as opposed to the configured PATs auth.ts accepts. Each lasts one hour.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import type { Scope } from './scope.js';

/** Registration, remove and installation tokens last one hour (docs/runner-contract.md §10). */
export const TOKEN_TTL_MS = 60 * 60 * 1000;

/** A token the fake issued (not a configured PAT). */
export interface IssuedToken {
  token: string;
  kind: 'registration' | 'remove' | 'broker-register' | 'broker-remove' | 'installation';
  scope?: Scope;
  expiresAt: number;
  permissions?: Record<string, 'read' | 'write'>;
  /** The installation an installation token belongs to: its tokens share one rate-limit budget. */
  installationId?: number;
  /** Installation tokens limited to these repositories (names, lower case); null = all. */
  repositories?: string[] | null;
}

/** Random token text with a GitHub-like prefix; length is not part of any contract. */
export function mintToken(prefix: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(36);
  let out = prefix;
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

/** Every token issued so far; expiry follows the injected clock. */
export class TokenStore {
  private readonly tokens = new Map<string, IssuedToken>();

  constructor(private readonly clock: Clock) {}

  /** Mints a token of `t.kind` that expires TOKEN_TTL_MS from now. */
  issue(t: Omit<IssuedToken, 'token' | 'expiresAt'>, prefix: string): IssuedToken {
    const issued: IssuedToken = { ...t, token: mintToken(prefix), expiresAt: this.clock.now() + TOKEN_TTL_MS };
    this.tokens.set(issued.token, issued);
    return issued;
  }

  /** A live issued token of one of `kinds`, or undefined (unknown or expired). */
  find(token: string, kinds: IssuedToken['kind'][]): IssuedToken | undefined {
    const t = this.tokens.get(token);
    if (!t || !kinds.includes(t.kind)) return undefined;
    if (this.clock.now() >= t.expiresAt) return undefined;
    return t;
  }
}
