/**
 * Listener sessions of the fake GitHub (src/sim/PROTOCOL.md): opening one (409 while another is
 * live), closing it, and the minimum runner version the service still sends messages to.
 * A session is kept after its runner is gone so that the next poll learns why.
 */
import type { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import type { RunnerRegistry, RunnerState } from './runners.js';
import type { FakeGitHubEvents } from './types.js';

/** A session a listener opened. */
export interface SessionState {
  id: string;
  runnerId: number;
  lastSeen: number;
  pollsInFlight: number;
  closed: boolean;
}

/** The sessions ever opened, by id. */
export class SessionStore {
  private readonly byId = new Map<string, SessionState>();
  /**
   * Listeners older than this are refused messages as deprecated (docs/runner-contract.md §2, exit 7;
   * the service's 30-day update rule). Undefined: every version is served.
   */
  minimumRunnerVersion: string | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly events: EventEmitter<FakeGitHubEvents>,
    private readonly runners: RunnerRegistry,
    private readonly changed: () => void,
  ) {}

  /** Whether `version` is below the minimum the service still serves. */
  isDeprecated(version: string | null): boolean {
    const min = this.minimumRunnerVersion;
    return min !== undefined && version !== null && compareRunnerVersions(version, min) < 0;
  }

  /** Outcome of POST /_broker/sessions: a conflict while the runner's previous session is live. */
  open(r: RunnerState, version: string, os: string): { ok: true; session: SessionState } | { ok: false; conflict: true } {
    if (this.runners.isOnline(r)) return { ok: false, conflict: true };
    if (r.session) r.session.closed = true;
    const s: SessionState = { id: randomUUID(), runnerId: r.id, lastSeen: this.clock.now(), pollsInFlight: 0, closed: false };
    this.byId.set(s.id, s);
    r.session = s;
    r.version = version;
    r.os = os;
    this.events.emit('session-created', { runnerId: r.id, sessionId: s.id, version });
    return { ok: true, session: s };
  }

  /** The session with this id, or undefined. */
  get(id: string): SessionState | undefined {
    return this.byId.get(id);
  }

  /** Closes a session (the listener's DELETE); its runner goes offline. */
  close(s: SessionState): void {
    s.closed = true;
    const r = this.runners.get(s.runnerId);
    if (r && r.session === s) r.session = null;
    this.changed();
  }
}

/** Orders dotted runner versions numerically (2.9.0 < 2.10.0); missing parts count as 0. */
export function compareRunnerVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
