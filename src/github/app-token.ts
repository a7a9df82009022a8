/**
 * The GitHub App installation token of one host: minted with an App JWT, cached, and renewed
 * before it expires, all on the injected Clock (so a fleet simulation can run hours in seconds,
 * and the renewal is tested without waiting). @octokit/auth-app caches on real timers and its JWT
 * reads Date.now, which no fake clock reaches; that is why the adapter does not use it any more.
 */
import { createSign } from 'node:crypto';
import type { Clock } from '../lib/clock.js';

/**
 * A token is renewed this long before GitHub's one-hour expiry: a call that starts just before
 * the expiry must still carry a valid token when it arrives, and ten minutes also covers a host
 * clock running a few minutes slow.
 */
export const RENEW_BEFORE_MS = 10 * 60_000;
/** A JWT is backdated by this much: GitHub tolerates that much clock drift and its docs advise it. */
const JWT_BACKDATE_S = 60;
/** A JWT lives 9 minutes (GitHub refuses more than 10 from iat). */
const JWT_LIFETIME_S = 540;
/** Without an `expires_at` in the answer, GitHub's documented lifetime of an installation token. */
const DEFAULT_TOKEN_LIFETIME_MS = 60 * 60_000;

/** An App JWT (RS256) for `appId`, issued at `nowMs`. A secret: never log it. */
export function signAppJwt(appId: number | string, privateKeyPem: string, nowMs: number): string {
  const now = Math.floor(nowMs / 1000);
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const iss = typeof appId === 'number' || /^\d+$/.test(appId) ? Number(appId) : appId;
  const unsigned = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64({ iat: now - JWT_BACKDATE_S, exp: now + JWT_LIFETIME_S, iss })}`;
  const sig = createSign('RSA-SHA256').update(unsigned).sign(privateKeyPem).toString('base64url');
  return `${unsigned}.${sig}`;
}

/** What minting needs: the call that exchanges a JWT for a token (the adapter makes it, through its gate). */
export type MintCall = (jwt: string) => Promise<{ token: string; expiresAt: string | undefined }>;

/** Options of the token cache. */
export interface InstallationTokenOptions {
  appId: number | string;
  privateKey: string;
  clock: Clock;
  mint: MintCall;
}

/** Caches one installation token; concurrent callers share one mint. */
export class InstallationTokenCache {
  private current: { token: string; expiresAt: number } | undefined;
  private pending: Promise<string> | undefined;
  /** Clock times of every mint, for the mints-per-hour figure. */
  readonly mints: number[] = [];

  constructor(private readonly o: InstallationTokenOptions) {}

  /** A token valid for at least RENEW_BEFORE_MS more, minting one when needed. */
  async get(): Promise<string> {
    const now = this.o.clock.now();
    if (this.current && now < this.current.expiresAt - RENEW_BEFORE_MS) return this.current.token;
    this.pending ??= this.mint().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  /**
   * A fresh App JWT for the mint request. Every try of a mint carries its own: a mint retried in
   * the host's slots can span several windows, longer than one JWT lives (GitHub answers 401 to
   * an expired one, which is not retried).
   */
  jwt(): string {
    return signAppJwt(this.o.appId, this.o.privateKey, this.o.clock.now());
  }

  /** Forgets `token` after GitHub refused it (401), so the next get() mints a new one. */
  invalidate(token: string): void {
    if (this.current?.token === token) this.current = undefined;
  }

  /** Mints in the last hour of clock time. */
  mintsLastHour(): number {
    const since = this.o.clock.now() - 60 * 60_000;
    return this.mints.filter((t) => t > since).length;
  }

  private async mint(): Promise<string> {
    const at = this.o.clock.now();
    const r = await this.o.mint(this.jwt());
    const parsed = r.expiresAt ? Date.parse(r.expiresAt) : NaN;
    this.current = { token: r.token, expiresAt: Number.isFinite(parsed) ? parsed : at + DEFAULT_TOKEN_LIFETIME_MS };
    this.mints.push(at);
    if (this.mints.length > 64) this.mints.splice(0, this.mints.length - 64);
    return r.token;
  }
}
