/**
 * systemd's notification protocol (sd_notify(3)) for `Type=notify` with `WatchdogSec=`: READY=1
 * once the agent serves, WATCHDOG=1 while its loop is alive, STOPPING=1 when it stops.
 *
 * Node has no unix datagram sockets, so each message is sent by the `systemd-notify` command
 * (systemd's own, always present where systemd is); the unit therefore sets NotifyAccess=all.
 * systemd must read a message while its sender is alive to tell which unit sent it; systemd-notify
 * (systemd 246 and later) follows each message with BARRIER=1 and waits until systemd has
 * processed it, so messages are not lost to that race. Belt and braces: once ready, every watchdog
 * ping repeats READY=1 (systemd ignores a repeat), and pings come at a third of the watchdog
 * interval, so one lost ping never trips it. Cost: one short-lived process per ping (a few
 * milliseconds of CPU), every 20 s with the unit's WatchdogSec=60s; measured by
 * bench/cold-start.ts. The npm packages that speak sd_notify natively are native addons (a
 * compiler at install, one more binary per Node ABI), which a package installed offline avoids.
 */
import { execFile } from 'node:child_process';
import type { Clock } from './clock.js';
import type { Logger } from './log.js';

/** systemd-notify talks to one local socket; if it has not returned by then something is badly wrong. */
const SEND_TIMEOUT_MS = 5_000;
/** How often readiness is probed until it holds: start-up is the figure cold start is judged by. */
const READY_POLL_MS = 50;

/** What the composition root passes (it alone reads the environment). */
export interface SystemdNotifyOptions {
  /** NOTIFY_SOCKET; undefined when not started by systemd with Type=notify: nothing is sent. */
  socket: string | undefined;
  /** WATCHDOG_USEC when WATCHDOG_PID is this process (or unset); undefined: no watchdog. */
  watchdogUsec: number | undefined;
  /** True once the agent serves (its health endpoint answers). */
  ready: () => Promise<boolean>;
  /** True while the agent's loop is alive; the watchdog is fed only then. */
  alive: () => boolean;
  clock: Clock;
  log: Logger;
  /** The sending command; default `systemd-notify` on PATH. */
  command?: string;
  /** Environment of the command (PATH); NOTIFY_SOCKET is added. */
  env?: Record<string, string | undefined>;
}

/** The notifier started by `startSystemdNotify`; `stop` sends STOPPING=1 and ends the loop. */
export interface SystemdNotifier {
  /** Resolves once READY=1 was sent (or immediately when not under systemd). */
  readonly readySent: Promise<void>;
  /** Messages sent so far (tests, status). */
  readonly sent: number;
  stop(): Promise<void>;
}

/** Parses WATCHDOG_USEC / WATCHDOG_PID as sd_watchdog_enabled(3) does; undefined when not for us. */
export function watchdogUsecFor(usec: string | undefined, pid: string | undefined, ownPid: number): number | undefined {
  if (!usec || !/^[0-9]+$/.test(usec)) return undefined;
  if (pid !== undefined && pid !== '' && Number(pid) !== ownPid) return undefined;
  const n = Number(usec);
  return n > 0 ? n : undefined;
}

/** Starts readiness and watchdog notifications; a no-op notifier when `socket` is undefined. */
export function startSystemdNotify(opts: SystemdNotifyOptions): SystemdNotifier {
  const stop = new AbortController();
  let sent = 0;
  const send = (vars: string[]): Promise<boolean> =>
    new Promise((resolve) => {
      execFile(
        opts.command ?? 'systemd-notify',
        vars,
        { env: { ...opts.env, NOTIFY_SOCKET: opts.socket }, timeout: SEND_TIMEOUT_MS },
        (err, _stdout, stderr) => {
          if (err) {
            opts.log.warn({ vars, err: err.message, stderr: String(stderr).trim() }, 'systemd-notify failed');
            resolve(false);
            return;
          }
          sent++;
          resolve(true);
        },
      );
    });
  if (!opts.socket) {
    return {
      readySent: Promise.resolve(),
      get sent() {
        return 0;
      },
      stop: async () => {},
    };
  }
  let isReady = false;
  const readySent = (async () => {
    while (!stop.signal.aborted) {
      if (await opts.ready().catch(() => false)) {
        await send(['READY=1', 'STATUS=serving']);
        isReady = true;
        return;
      }
      await opts.clock.sleep(READY_POLL_MS, stop.signal).catch(() => {});
    }
  })();
  const watchdog = (async () => {
    const usec = opts.watchdogUsec;
    if (usec === undefined) return;
    const everyMs = Math.max(1, Math.floor(usec / 1000 / 3));
    while (!stop.signal.aborted) {
      // A wedged loop is not fed: systemd then kills the agent and Restart=on-failure starts a
      // fresh one, which recovers from its state file.
      if (opts.alive()) await send(isReady ? ['WATCHDOG=1', 'READY=1'] : ['WATCHDOG=1']);
      else opts.log.error({}, 'agent loop not alive: the systemd watchdog is not fed');
      await opts.clock.sleep(everyMs, stop.signal).catch(() => {});
    }
  })();
  return {
    readySent,
    get sent() {
      return sent;
    },
    async stop() {
      stop.abort();
      await Promise.all([readySent, watchdog]);
      await send(['STOPPING=1']);
    },
  };
}
