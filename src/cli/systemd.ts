/**
 * What `run` does for systemd: tells whether stdout is the journal (log lines then carry their
 * priority), and starts the readiness/watchdog notifier (src/lib/sd-notify.ts) from the
 * environment systemd gives a Type=notify service.
 */
import { fstatSync } from 'node:fs';
import http from 'node:http';
import { systemClock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { startSystemdNotify, watchdogUsecFor, type SystemdNotifier } from '../lib/sd-notify.js';

/** One probe of the health endpoint; it answers locally in milliseconds. */
const HEALTH_PROBE_TIMEOUT_MS = 1_000;

/** True when JOURNAL_STREAM ("device:inode") names what fd 1 is (systemd.exec(5)). */
export function stdoutIsJournal(env: NodeJS.ProcessEnv): boolean {
  const m = /^([0-9]+):([0-9]+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fstatSync(1, { bigint: true });
    return st.dev === BigInt(m[1] as string) && st.ino === BigInt(m[2] as string);
  } catch {
    return false;
  }
}

/** The URL a local probe reaches the health server at (a wildcard listen address means loopback). */
export function localHealthUrl(address: { host: string; port: number }): string {
  const host = address.host === '0.0.0.0' || address.host === '' ? '127.0.0.1' : address.host === '::' ? '::1' : address.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}/healthz`;
}

/** What the notifier reads of the running agent. */
export interface NotifyTarget {
  health?: { address: { host: string; port: number } };
  agent: { snapshot(): { loopAlive: boolean } };
}

/**
 * Starts notifying systemd: READY=1 once /healthz answers (any status: a quarantined host is up
 * and must stay up so that its health check can see it), WATCHDOG=1 while the loop is alive.
 */
export function notifySystemd(target: NotifyTarget, env: NodeJS.ProcessEnv, log: Logger): SystemdNotifier {
  const url = target.health ? localHealthUrl(target.health.address) : undefined;
  return startSystemdNotify({
    socket: env.NOTIFY_SOCKET,
    watchdogUsec: watchdogUsecFor(env.WATCHDOG_USEC, env.WATCHDOG_PID, process.pid),
    ready: async () => {
      if (url) await probe(url);
      return true;
    },
    alive: () => target.agent.snapshot().loopAlive,
    clock: systemClock,
    log,
    env: { PATH: env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
}

/**
 * One GET of the health endpoint, any status. node:http rather than fetch: the global fetch loads
 * Node's own HTTP client (undici, its parser compiled from WebAssembly), megabytes that an agent
 * keeps for its life for one local probe.
 */
function probe(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: HEALTH_PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${HEALTH_PROBE_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  });
}
