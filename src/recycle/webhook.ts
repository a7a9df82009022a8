import { createHmac } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { backoffDelay, type RandomSource } from '../lib/backoff.js';
import type { Clock } from '../lib/clock.js';
import { describeError } from '../lib/errors.js';
import { RECYCLE_DEFAULTS, type WebhookRecycleConfig } from './config.js';
import { HttpNetworkError, httpRequest } from './http.js';
import type { RecycleProvider } from './port.js';
import { retryAfterMs } from './throttle.js';

/** Header carrying `sha256=<hex HMAC-SHA256 of the raw body>`. */
export const SIGNATURE_HEADER = 'x-runner-warden-signature';

/** Status codes worth another try besides 5xx: request timeout and too many requests. */
const RETRYABLE_4XX = new Set([408, 429]);
/** A receiver's Retry-After is honoured up to this: a used-up host may wait, but not for hours on a bad header. */
const MAX_RETRY_AFTER_MS = 10 * 60_000;

/** The signature header value for `body` (the receiver recomputes it over the raw bytes). */
export function signBody(secret: string | Buffer, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

/**
 * Reads the signing secret, refusing a file that is not root-owned or that group/other can access:
 * a secret the runner user can read lets a job forge recycle events.
 */
export async function readSecretFile(file: string): Promise<string> {
  const st = await fsp.stat(file);
  if (st.uid !== 0 || (st.mode & 0o077) !== 0) {
    throw new Error(`secret file ${file} must be owned by root with mode 600 or stricter`);
  }
  const secret = (await fsp.readFile(file, 'utf8')).trim();
  if (secret === '') throw new Error(`secret file ${file} is empty`);
  return secret;
}

/**
 * The envelope of the wait before retry `n` (1-based): initial × 2^(n-1), capped. The wait itself
 * is drawn uniformly under it (full jitter): a fleet recycled at once (a policy change, a runner
 * deprecation) whose receiver failed them together must not come back to it together.
 */
export function backoffMs(retry: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** (retry - 1));
}

/** What webhookProvider needs besides its config. */
export interface WebhookDeps {
  clock: Clock;
  /** Uniform numbers in [0, 1) for the jitter; default Math.random. */
  random?: RandomSource;
}

/**
 * `webhook`: POSTs the event as JSON with `X-Runner-Warden-Signature` and `Idempotency-Key`,
 * retrying 5xx, 408, 429 and network errors with full-jitter exponential backoff (a `Retry-After`
 * the receiver sent is kept whole, the jitter on top); any other 4xx is final.
 */
export function webhookProvider(config: WebhookRecycleConfig, deps: WebhookDeps): RecycleProvider {
  const d = RECYCLE_DEFAULTS.webhook;
  const maxAttempts = config.maxAttempts ?? d.maxAttempts;
  const initialMs = config.initialBackoffMs ?? d.initialBackoffMs;
  const maxMs = config.maxBackoffMs ?? d.maxBackoffMs;
  const timeoutMs = (config.timeoutSeconds ?? d.timeoutSeconds) * 1000;
  const fail = (detail: string) => ({ provider: 'webhook', ok: false, detail });
  return {
    name: 'webhook',
    async recycle(event, signal) {
      let secret: string;
      let ca: string | undefined;
      try {
        // Read at use time: a rotated secret or CA needs no agent restart.
        secret = await readSecretFile(config.secretFile);
        if (config.caFile !== undefined) ca = await fsp.readFile(config.caFile, 'utf8');
      } catch (err) {
        return fail(describeError(err));
      }
      const body = JSON.stringify(event);
      const headers = {
        ...config.headers,
        'content-type': 'application/json',
        'user-agent': 'runner-warden',
        [SIGNATURE_HEADER]: signBody(secret, body),
        'idempotency-key': event.idempotencyKey,
      };
      let last = '';
      let imposedMs = 0;
      for (let attempt = 1; attempt <= maxAttempts; attempt++) {
        if (attempt > 1) {
          const jitter = backoffDelay(attempt - 2, { baseMs: initialMs, maxMs }, deps.random);
          await deps.clock.sleep(imposedMs + jitter, signal);
        }
        imposedMs = 0;
        try {
          const res = await httpRequest(config.url, {
            method: 'POST',
            headers,
            body,
            ...(ca !== undefined ? { ca } : {}),
            timeoutMs,
            signal,
          });
          if (res.status >= 200 && res.status < 300) {
            return { provider: 'webhook', ok: true, detail: `delivered (HTTP ${res.status}, attempt ${attempt})` };
          }
          last = `HTTP ${res.status}`;
          if (res.status < 500 && !RETRYABLE_4XX.has(res.status)) {
            return fail(`receiver refused the event: ${last} (attempt ${attempt}, not retried)`);
          }
          imposedMs = Math.min(retryAfterMs(res.headers['retry-after']) ?? 0, MAX_RETRY_AFTER_MS);
        } catch (err) {
          if (!(err instanceof HttpNetworkError)) throw err;
          last = describeError(err);
        }
      }
      return fail(`not delivered after ${maxAttempts} attempts; last: ${last}`);
    },
  };
}
