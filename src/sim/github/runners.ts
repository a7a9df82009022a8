/**
 * Runner registrations of the fake GitHub: who is registered in which scope, the REST view of
 * each, whether it is online (its listener's session), and its mailbox of control messages.
 * Removing a registration is decided here; what that does to its job is the job queue's business
 * (the `onRemoved` hook).
 */
import type { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import type { LabelRegistry } from './labels.js';
import { scopeKey, type Scope } from './scope.js';
import type { SessionState } from './sessions.js';
import type { DeleteReason, FakeGitHubEvents, RestLabel, RestRunner } from './types.js';

/** A message waiting for a runner besides jobs (PROTOCOL.md plus the Additions' crash). */
export type ControlMessage = { type: 'update'; version: string } | { type: 'crash' };

/** One runner registration. */
export interface RunnerState {
  id: number;
  name: string;
  scope: Scope;
  groupId: number;
  labels: RestLabel[];
  ephemeral: boolean;
  disableUpdate: boolean;
  workFolder: string;
  os: string;
  version: string | null;
  clientId: string;
  session: SessionState | null;
  jobId: string | null;
  jobsTaken: number;
  messages: ControlMessage[];
}

/** What createRunner needs; the rest of a registration starts empty. */
export interface NewRunner {
  scope: Scope;
  name: string;
  groupId: number;
  labels: string[];
  ephemeral: boolean;
  disableUpdate: boolean;
  workFolder: string;
  via: 'jit' | 'registration';
}

/** What the registry needs from the rest of the model. */
export interface RunnerRegistryDeps {
  clock: Clock;
  events: EventEmitter<FakeGitHubEvents>;
  labels: LabelRegistry;
  /** How long an open session with no poll in flight still counts as online. */
  sessionStaleMs: number;
  /** Wakes the waiting polls. */
  changed: () => void;
  /** Called after a registration is removed (its held job is then lost). */
  onRemoved: (r: RunnerState) => void;
}

/** The registrations, by id and by the client id their credentials carry. */
export class RunnerRegistry {
  private readonly byId = new Map<number, RunnerState>();
  private readonly byClient = new Map<string, RunnerState>();
  private nextId = 1;

  constructor(private readonly d: RunnerRegistryDeps) {}

  /** Registers a runner; it is offline until its listener opens a session. */
  create(input: NewRunner): RunnerState {
    const r: RunnerState = {
      id: this.nextId++,
      name: input.name,
      scope: input.scope,
      groupId: input.groupId,
      labels: this.d.labels.list(input.labels),
      ephemeral: input.ephemeral,
      disableUpdate: input.disableUpdate,
      workFolder: input.workFolder,
      // The service reports "unknown" until the runner has connected once (OpenAPI example).
      os: 'unknown',
      version: null,
      clientId: randomUUID(),
      session: null,
      jobId: null,
      jobsTaken: 0,
      messages: [],
    };
    this.byId.set(r.id, r);
    this.byClient.set(r.clientId, r);
    this.d.events.emit('runner-created', { runnerId: r.id, name: r.name, via: input.via });
    return r;
  }

  /** The registration with this id, or undefined. */
  get(id: number): RunnerState | undefined {
    return this.byId.get(id);
  }

  /** The registration whose credentials carry this client id, or undefined. */
  byClientId(clientId: string | undefined): RunnerState | undefined {
    return clientId === undefined ? undefined : this.byClient.get(clientId);
  }

  /** Runners of one scope in id order. */
  inScope(scope: Scope): RunnerState[] {
    const key = scopeKey(scope);
    return this.all().filter((r) => scopeKey(r.scope) === key);
  }

  /** Every registration in id order. */
  all(): RunnerState[] {
    return [...this.byId.values()];
  }

  /** The runner of this name in this scope (case-insensitive), or undefined. */
  findByName(scope: Scope, name: string): RunnerState | undefined {
    return this.inScope(scope).find((r) => r.name.toLowerCase() === name.toLowerCase());
  }

  /**
   * Online while a live session is open (contract: status follows the listener's session). A
   * session counts while a poll is in flight, a job is held, or it was seen recently.
   */
  isOnline(r: RunnerState): boolean {
    const s = r.session;
    if (s === null || s.closed) return false;
    if (s.pollsInFlight > 0 || r.jobId !== null) return true;
    return this.d.clock.now() - s.lastSeen <= this.d.sessionStaleMs;
  }

  /** The REST view of a runner. */
  rest(r: RunnerState): RestRunner {
    return {
      id: r.id,
      name: r.name,
      os: r.os,
      status: this.isOnline(r) ? 'online' : 'offline',
      busy: r.jobId !== null,
      labels: r.labels.map((l) => ({ ...l })),
      runner_group_id: r.groupId,
      ephemeral: r.ephemeral,
      version: r.version,
    };
  }

  /** Removes a registration: its session dies, its credentials stop working, its job is lost. */
  remove(id: number, reason: DeleteReason): boolean {
    const r = this.byId.get(id);
    if (!r) return false;
    this.byId.delete(id);
    this.byClient.delete(r.clientId);
    this.d.onRemoved(r);
    this.d.events.emit('runner-deleted', { runnerId: r.id, name: r.name, reason });
    this.d.changed();
    return true;
  }

  /** Queues a control message for the runner's next poll; throws for an unknown runner. */
  pushMessage(runnerId: number, msg: ControlMessage): void {
    const r = this.byId.get(runnerId);
    if (!r) throw new Error(`no runner ${runnerId}`);
    r.messages.push(msg);
    this.d.changed();
  }
}
