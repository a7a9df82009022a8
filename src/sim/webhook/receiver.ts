/**
 * A loopback webhook receiver as a fleet controller would write it: it recomputes the HMAC-SHA256
 * of the raw body (independently of the agent's code) and compares in constant time, rejects
 * unsigned or mis-signed deliveries with 401, deduplicates by Idempotency-Key (a repeat gets 200
 * and is not recorded twice), and can be told to fail the next deliveries with a 5xx or a 4xx.
 */
import http from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { listenOnLoopback } from '../loopback.js';

/** Every delivery the receiver saw, accepted or not. */
export interface WebhookDelivery {
  idempotencyKey?: string;
  signatureValid: boolean;
  status: number;
  /** Milliseconds since the receiver started (real time; for the bench and for debugging). */
  atMs: number;
}

/** A running receiver. */
export interface WebhookReceiver {
  url: string;
  /** Accepted events, parsed, once per idempotency key. */
  events: unknown[];
  deliveries: WebhookDelivery[];
  /** Answers the next `times` (default 1) validly signed deliveries with `status` (and `retry-after` when given). */
  failNext(status: number, times?: number, retryAfterSeconds?: number): void;
  close(): Promise<void>;
}

/** True when `header` is `sha256=<hex>` of the body under `secret`, compared in constant time. */
export function verifySignature(secret: string, body: Buffer, header: string | undefined): boolean {
  if (header === undefined || !header.startsWith('sha256=')) return false;
  const given = Buffer.from(header.slice('sha256='.length), 'hex');
  const expected = createHmac('sha256', secret).update(body).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Starts the receiver on 127.0.0.1, port 0, accepting POSTs on any path. */
export async function startWebhookReceiver(opts: { secret: string }): Promise<WebhookReceiver> {
  const started = performance.now();
  const events: unknown[] = [];
  const deliveries: WebhookDelivery[] = [];
  const seen = new Set<string>();
  let failStatus = 0;
  let failTimes = 0;
  let failRetryAfter: number | undefined;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const sig = req.headers['x-runner-warden-signature'];
      const key = req.headers['idempotency-key'];
      const idempotencyKey = typeof key === 'string' ? key : undefined;
      const signatureValid = verifySignature(opts.secret, body, typeof sig === 'string' ? sig : undefined);
      const reply = (status: number, out: object, headers: Record<string, string> = {}): void => {
        deliveries.push({ ...(idempotencyKey ? { idempotencyKey } : {}), signatureValid, status, atMs: performance.now() - started });
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(out));
      };
      if (req.method !== 'POST') return reply(405, { error: 'POST only' });
      if (!signatureValid) return reply(401, { error: 'bad signature' });
      if (idempotencyKey === undefined) return reply(400, { error: 'Idempotency-Key required' });
      if (failTimes > 0) {
        failTimes -= 1;
        return reply(
          failStatus,
          { error: 'programmed failure' },
          failRetryAfter !== undefined ? { 'retry-after': String(failRetryAfter) } : {},
        );
      }
      if (seen.has(idempotencyKey)) return reply(200, { duplicate: true });
      let event: unknown;
      try {
        event = JSON.parse(body.toString('utf8'));
      } catch {
        return reply(400, { error: 'body is not JSON' });
      }
      seen.add(idempotencyKey);
      events.push(event);
      reply(202, { accepted: true });
    });
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}/recycle`,
    events,
    deliveries,
    failNext(status, times = 1, retryAfterSeconds) {
      failStatus = status;
      failTimes = times;
      failRetryAfter = retryAfterSeconds;
    },
    close,
  };
}
