/**
 * One gate per host in front of every GitHub call. A rate-limit answer (primary or secondary) or
 * a `retry-after` is about the caller, not the one request that got it: GitHub counts a host's
 * further requests while limited against it (and may block an integration that keeps going), so
 * every call of the host waits until the gate opens, not just the call that was refused.
 */
import type { Clock } from '../lib/clock.js';

/** The shared pause of one host's GitHub calls. */
export class HostGate {
  private until = 0;
  /** Pauses closed so far (for tests and the fleet figures). */
  pauses = 0;

  constructor(private readonly clock: Clock) {}

  /** Keeps every call waiting until `untilMs` (epoch ms); a later pause extends, an earlier one is ignored. */
  pause(untilMs: number): void {
    if (untilMs > this.until) {
      this.until = untilMs;
      this.pauses++;
    }
  }

  /** Epoch ms until which calls wait (0 or past: open). */
  get pausedUntil(): number {
    return this.until;
  }

  /** Resolves once the gate is open (at once when it is); rejects when `signal` aborts first. */
  async wait(signal?: AbortSignal): Promise<void> {
    for (let left = this.until - this.clock.now(); left > 0; left = this.until - this.clock.now()) {
      await this.clock.sleep(left, signal);
    }
  }
}
