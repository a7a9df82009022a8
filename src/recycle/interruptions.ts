/**
 * Watches EC2's instance metadata (IMDSv2) for the two notices that mean "this host is going away":
 * a spot interruption (`spot/instance-action`, about two minutes ahead) and an Auto Scaling
 * lifecycle transition (`autoscaling/target-lifecycle-state` other than InService). Either starts a
 * drain with recycling: an idle runner is deregistered at once, a busy one gets until the deadline
 * minus a margin, so no job is lost to the interruption. Optional: off unless the host config
 * enables it, since it is the only polling the agent does.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { describeError } from '../lib/errors.js';
import { httpRequest } from './http.js';

/** AWS recommends checking for spot interruption notices every 5 seconds. */
export const DEFAULT_INTERRUPTION_POLL_MS = 5_000;
/** One IMDS answer may take this long; the service is link-local and answers in milliseconds. */
export const IMDS_TIMEOUT_MS = 2_000;
/** IMDSv2 session tokens are asked for six hours and renewed before that. */
const TOKEN_TTL_SECONDS = 21_600;

/** A notice that the host is going away. */
export interface InterruptionNotice {
  kind: 'spot' | 'lifecycle';
  /** What the metadata said (action or lifecycle state). */
  detail: string;
  /** Epoch ms by which the host is gone, when known (spot notices carry it). */
  deadlineAt?: number;
}

/** Options of watchInterruptions. */
export interface InterruptionWatchOptions {
  /** IMDS base URL; default http://169.254.169.254 (tests point it at the fake). */
  endpoint?: string;
  intervalMs?: number;
  clock: Clock;
  log: Logger;
  signal: AbortSignal;
  onNotice: (n: InterruptionNotice) => void;
}

/** Reads one metadata path with a token; undefined on 404 (no notice). */
async function readMeta(base: string, token: string, p: string, signal: AbortSignal): Promise<string | undefined> {
  const res = await httpRequest(`${base}/latest/meta-data/${p}`, {
    method: 'GET',
    headers: { 'x-aws-ec2-metadata-token': token },
    timeoutMs: IMDS_TIMEOUT_MS,
    signal,
  });
  if (res.status === 404) return undefined;
  if (res.status === 401) throw new TokenExpired();
  if (res.status !== 200) throw new Error(`IMDS ${p}: HTTP ${res.status}`);
  return res.body.trim();
}

class TokenExpired extends Error {}

/** Checks once; returns a notice or undefined. Exported for tests. */
export async function checkInterruption(
  base: string,
  token: string,
  now: number,
  signal: AbortSignal,
): Promise<InterruptionNotice | undefined> {
  const spot = await readMeta(base, token, 'spot/instance-action', signal);
  if (spot) {
    let action = 'terminate';
    let deadlineAt: number | undefined;
    try {
      const j = JSON.parse(spot) as { action?: string; time?: string };
      action = j.action ?? action;
      const t = j.time ? Date.parse(j.time) : NaN;
      if (Number.isFinite(t)) deadlineAt = t;
    } catch {
      // An unparsable notice is still a notice.
    }
    return { kind: 'spot', detail: action, deadlineAt: deadlineAt ?? now + 120_000 };
  }
  const lifecycle = await readMeta(base, token, 'autoscaling/target-lifecycle-state', signal);
  if (lifecycle && lifecycle !== 'InService') return { kind: 'lifecycle', detail: lifecycle };
  return undefined;
}

/** Polls until `signal` aborts; calls onNotice once (the first notice) and keeps quiet after. */
export async function watchInterruptions(o: InterruptionWatchOptions): Promise<void> {
  const base = (o.endpoint ?? 'http://169.254.169.254').replace(/\/+$/, '');
  const interval = o.intervalMs ?? DEFAULT_INTERRUPTION_POLL_MS;
  let token: string | undefined;
  let tokenAt = 0;
  let failures = 0;
  while (!o.signal.aborted) {
    try {
      if (!token || o.clock.now() - tokenAt > (TOKEN_TTL_SECONDS - 60) * 1000) {
        const res = await httpRequest(`${base}/latest/api/token`, {
          method: 'PUT',
          headers: { 'x-aws-ec2-metadata-token-ttl-seconds': String(TOKEN_TTL_SECONDS) },
          timeoutMs: IMDS_TIMEOUT_MS,
          signal: o.signal,
        });
        if (res.status !== 200) throw new Error(`IMDS token: HTTP ${res.status}`);
        token = res.body.trim();
        tokenAt = o.clock.now();
      }
      const notice = await checkInterruption(base, token, o.clock.now(), o.signal);
      failures = 0;
      if (notice) {
        o.log.warn({ kind: notice.kind, detail: notice.detail, deadlineAt: notice.deadlineAt }, 'host interruption notice');
        o.onNotice(notice);
        return;
      }
    } catch (err) {
      if (o.signal.aborted) return;
      if (err instanceof TokenExpired) token = undefined;
      failures += 1;
      // Said once, then every 60 failures: an instance without IMDS must not flood the log.
      if (failures === 1 || failures % 60 === 0) o.log.warn({ err: describeError(err), failures }, 'cannot read instance metadata');
    }
    try {
      await o.clock.sleep(interval, o.signal);
    } catch {
      return;
    }
  }
}
