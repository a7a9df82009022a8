/**
 * What the fake GitHub remembers: runner registrations, groups, sessions, the job queue and the
 * short-lived tokens it issued. HTTP lives in rest.ts and broker.ts; this file is the model they
 * share, and the only place that decides which job goes to which runner.
 */
import { EventEmitter } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { scopeCovers, scopeKey, type Scope } from './scope.js';
import type {
  BrokerJob,
  DeleteReason,
  FakeGitHubEvents,
  FakeRunnerGroup,
  JobRecord,
  JobSpec,
  RestLabel,
  RestRunner,
} from './types.js';

/** Registration, remove and installation tokens last one hour (docs/runner-contract.md §10). */
export const TOKEN_TTL_MS = 60 * 60 * 1000;

/** Label names the service marks read-only because the runner applies them itself. */
const READ_ONLY_LABELS = new Set(['self-hosted', 'linux', 'windows', 'macos', 'x64', 'x86', 'arm', 'arm64']);

/** A message waiting for a runner besides jobs (PROTOCOL.md plus the Additions' crash). */
export type ControlMessage = { type: 'update'; version: string } | { type: 'crash' };

/** What a poll may deliver. */
export type BrokerMessage = ControlMessage | { type: 'job'; job: BrokerJob };

/** A session a listener opened. Kept after the runner is gone so its next poll learns why. */
export interface SessionState {
  id: string;
  runnerId: number;
  lastSeen: number;
  pollsInFlight: number;
  closed: boolean;
}

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
  /** A phantom session from openConflictingSession(): the next create gets 409 and consumes it. */
  conflictNext: boolean;
  jobId: string | null;
  jobsTaken: number;
  messages: ControlMessage[];
}

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

interface JobState {
  record: JobRecord;
  lost: boolean;
  /** Clock time after which a held job without a renew is abandoned. */
  lockedUntil: number;
}

/** Random token text with a GitHub-like prefix; length is not part of any contract. */
export function mintToken(prefix: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = randomBytes(36);
  let out = prefix;
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

/** The model. One instance per fake server. */
export class FakeState {
  readonly events = new EventEmitter<FakeGitHubEvents>();
  readonly groups: FakeRunnerGroup[];
  private readonly runnersById = new Map<number, RunnerState>();
  private readonly byClientId = new Map<string, RunnerState>();
  private readonly sessions = new Map<string, SessionState>();
  private readonly jobsById = new Map<string, JobState>();
  private readonly jobOrder: string[] = [];
  private readonly tokens = new Map<string, IssuedToken>();
  private readonly labelIds = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  /**
   * Listeners older than this are refused messages as deprecated (docs/runner-contract.md §2, exit 7;
   * the service's 30-day update rule). Undefined: every version is served.
   */
  minimumRunnerVersion: string | undefined;
  private nextRunnerId = 1;
  private nextLabelId = 1;
  private nextRequestId = 1;

  constructor(
    readonly clock: Clock,
    groups: FakeRunnerGroup[],
    readonly sessionStaleMs: number,
    readonly jobLockMs: number,
  ) {
    this.groups = groups.map((g) => ({ ...g }));
  }

  // ---- change notification (long polls wait on it) ----

  /** Registers a callback for the next change; returns a function that unregisters it. */
  onChange(fn: () => void): () => void {
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }

  /** Wakes every waiting poll so it re-checks its runner's mailbox. */
  changed(): void {
    const fns = [...this.waiters];
    this.waiters.clear();
    for (const fn of fns) fn();
  }

  // ---- labels ----

  /** A label object; ids are stable per name, like the service's. */
  label(name: string, type?: RestLabel['type']): RestLabel {
    const key = name.toLowerCase();
    let id = this.labelIds.get(key);
    if (id === undefined) {
      id = this.nextLabelId++;
      this.labelIds.set(key, id);
    }
    return { id, name, type: type ?? (READ_ONLY_LABELS.has(key) ? 'read-only' : 'custom') };
  }

  /** Builds a label list without duplicates (case-insensitive). */
  labelList(names: string[]): RestLabel[] {
    const out: RestLabel[] = [];
    for (const n of names) if (!out.some((l) => l.name.toLowerCase() === n.toLowerCase())) out.push(this.label(n));
    return out;
  }

  // ---- runners ----

  group(id: number): FakeRunnerGroup | undefined {
    return this.groups.find((g) => g.id === id);
  }

  groupByName(name: string): FakeRunnerGroup | undefined {
    return this.groups.find((g) => g.name.toLowerCase() === name.toLowerCase());
  }

  defaultGroup(): FakeRunnerGroup {
    const g = this.groups.find((x) => x.default) ?? this.groups[0];
    if (!g) throw new Error('the fake needs at least one runner group');
    return g;
  }

  createRunner(input: {
    scope: Scope;
    name: string;
    groupId: number;
    labels: string[];
    ephemeral: boolean;
    disableUpdate: boolean;
    workFolder: string;
    via: 'jit' | 'registration';
  }): RunnerState {
    const r: RunnerState = {
      id: this.nextRunnerId++,
      name: input.name,
      scope: input.scope,
      groupId: input.groupId,
      labels: this.labelList(input.labels),
      ephemeral: input.ephemeral,
      disableUpdate: input.disableUpdate,
      workFolder: input.workFolder,
      // The service reports "unknown" until the runner has connected once (OpenAPI example).
      os: 'unknown',
      version: null,
      clientId: randomUUID(),
      session: null,
      conflictNext: false,
      jobId: null,
      jobsTaken: 0,
      messages: [],
    };
    this.runnersById.set(r.id, r);
    this.byClientId.set(r.clientId, r);
    this.events.emit('runner-created', { runnerId: r.id, name: r.name, via: input.via });
    return r;
  }

  runner(id: number): RunnerState | undefined {
    return this.runnersById.get(id);
  }

  runnerByClientId(clientId: string | undefined): RunnerState | undefined {
    return clientId === undefined ? undefined : this.byClientId.get(clientId);
  }

  /** Runners of one scope in id order. */
  runnersIn(scope: Scope): RunnerState[] {
    const key = scopeKey(scope);
    return [...this.runnersById.values()].filter((r) => scopeKey(r.scope) === key);
  }

  allRunners(): RunnerState[] {
    return [...this.runnersById.values()];
  }

  findByName(scope: Scope, name: string): RunnerState | undefined {
    return this.runnersIn(scope).find((r) => r.name.toLowerCase() === name.toLowerCase());
  }

  /** Online while a live session is open (contract: status follows the listener's session). */
  isOnline(r: RunnerState): boolean {
    return r.session !== null && this.sessionLive(r.session);
  }

  /** A session counts while a poll is in flight, a job is held, or it was seen recently. */
  sessionLive(s: SessionState): boolean {
    if (s.closed) return false;
    const r = this.runnersById.get(s.runnerId);
    if (s.pollsInFlight > 0 || (r !== undefined && r.jobId !== null)) return true;
    return this.clock.now() - s.lastSeen <= this.sessionStaleMs;
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
  deleteRunner(id: number, reason: DeleteReason): boolean {
    const r = this.runnersById.get(id);
    if (!r) return false;
    this.runnersById.delete(id);
    this.byClientId.delete(r.clientId);
    if (r.jobId !== null) {
      const j = this.jobsById.get(r.jobId);
      if (j && j.record.status !== 'completed') j.lost = true;
    }
    this.events.emit('runner-deleted', { runnerId: r.id, name: r.name, reason });
    this.changed();
    return true;
  }

  // ---- sessions ----

  /** Whether `version` is below the minimum the service still serves. */
  isDeprecated(version: string | null): boolean {
    const min = this.minimumRunnerVersion;
    return min !== undefined && version !== null && compareRunnerVersions(version, min) < 0;
  }

  /** Outcome of POST /_broker/sessions, decided here so the broker stays thin. */
  openSession(
    r: RunnerState,
    version: string,
    os: string,
  ): { ok: true; session: SessionState } | { ok: false; conflict: true } {
    if (r.conflictNext) {
      r.conflictNext = false;
      return { ok: false, conflict: true };
    }
    if (r.session && this.sessionLive(r.session)) return { ok: false, conflict: true };
    if (r.session) r.session.closed = true;
    const s: SessionState = {
      id: randomUUID(),
      runnerId: r.id,
      lastSeen: this.clock.now(),
      pollsInFlight: 0,
      closed: false,
    };
    this.sessions.set(s.id, s);
    r.session = s;
    r.version = version;
    r.os = os;
    this.events.emit('session-created', { runnerId: r.id, sessionId: s.id, version });
    return { ok: true, session: s };
  }

  session(id: string): SessionState | undefined {
    return this.sessions.get(id);
  }

  closeSession(s: SessionState): void {
    s.closed = true;
    const r = this.runnersById.get(s.runnerId);
    if (r && r.session === s) r.session = null;
    this.changed();
  }

  // ---- messages and jobs ----

  pushMessage(runnerId: number, msg: ControlMessage): void {
    const r = this.mustRunner(runnerId);
    r.messages.push(msg);
    this.changed();
  }

  setConflictNext(runnerId: number): void {
    this.mustRunner(runnerId).conflictNext = true;
  }

  enqueueJob(spec: JobSpec): string {
    if (!spec.repository || !Array.isArray(spec.steps)) throw new TypeError('a job needs a repository and steps');
    const id = randomUUID();
    const requestId = this.nextRequestId++;
    const job: BrokerJob = {
      jobId: id,
      requestId,
      planId: randomUUID(),
      displayName: spec.displayName ?? spec.job ?? 'build',
      repository: spec.repository,
      workflow: spec.workflow ?? 'CI',
      runId: String(spec.runId ?? 1000 + requestId),
      runNumber: String(spec.runNumber ?? requestId),
      runAttempt: String(spec.runAttempt ?? 1),
      sha: spec.sha ?? randomBytes(20).toString('hex'),
      ref: spec.ref ?? 'refs/heads/main',
      eventName: spec.eventName ?? 'push',
      actor: spec.actor ?? 'octocat',
      labels: spec.labels ?? ['self-hosted'],
      // Everything the runner needs of a step and of the job's containers, copied so a test that
      // reuses its spec object cannot change a queued job.
      steps: spec.steps.map((s) => ({
        name: s.name,
        run: s.run,
        ...(s.uses !== undefined ? { uses: s.uses } : {}),
        ...(s.with !== undefined ? { with: { ...s.with } } : {}),
        ...(s.env !== undefined ? { env: { ...s.env } } : {}),
      })),
      timeoutMinutes: spec.timeoutMinutes ?? 360,
      cancelAfterMs: spec.cancelAfterMs ?? null,
      ...(spec.container !== undefined ? { container: structuredClone(spec.container) } : {}),
      ...(spec.services !== undefined ? { services: structuredClone(spec.services) } : {}),
    };
    const record: JobRecord = {
      id,
      job,
      status: 'queued',
      result: null,
      exitCode: null,
      runnerId: null,
      runnerName: null,
      cancelled: false,
      queuedAt: this.clock.now(),
      assignedAt: null,
      startedAt: null,
      completedAt: null,
    };
    this.jobsById.set(id, { record, lost: false, lockedUntil: 0 });
    this.jobOrder.push(id);
    this.changed();
    return id;
  }

  jobRecords(): JobRecord[] {
    return this.jobOrder.map((id) => snapshot(this.jobsById.get(id)!.record));
  }

  jobRecord(id: string): JobRecord | undefined {
    const j = this.jobsById.get(id);
    return j ? snapshot(j.record) : undefined;
  }

  /**
   * The next message for a runner, consuming it: control messages first, then the oldest queued
   * job it may take (scope covers the repository, its labels include every job label, not busy,
   * and an ephemeral runner only ever gets one job).
   */
  takeMessage(r: RunnerState): BrokerMessage | null {
    const ctl = r.messages.shift();
    if (ctl) return ctl;
    if (r.jobId !== null || (r.ephemeral && r.jobsTaken > 0)) return null;
    const have = new Set(r.labels.map((l) => l.name.toLowerCase()));
    for (const id of this.jobOrder) {
      const j = this.jobsById.get(id)!;
      const rec = j.record;
      if (rec.status !== 'queued') continue;
      if (!scopeCovers(r.scope, rec.job.repository)) continue;
      if (!rec.job.labels.every((l) => have.has(l.toLowerCase()))) continue;
      rec.status = 'assigned';
      rec.runnerId = r.id;
      rec.runnerName = r.name;
      rec.assignedAt = this.clock.now();
      j.lockedUntil = rec.assignedAt + this.jobLockMs;
      r.jobId = id;
      r.jobsTaken++;
      this.events.emit('job-assigned', {
        jobId: id,
        runnerId: r.id,
        runnerName: r.name,
        displayName: rec.job.displayName,
        repository: rec.job.repository,
      });
      return { type: 'job', job: structuredClone(rec.job) };
    }
    return null;
  }

  /** Renew: false when the job was cancelled or lost (the broker answers 404). */
  renewJob(jobId: string): boolean {
    const j = this.jobsById.get(jobId);
    if (!j || j.lost || j.record.cancelled || j.record.status === 'completed') return false;
    j.lockedUntil = this.clock.now() + this.jobLockMs;
    if (j.record.status === 'assigned') {
      j.record.status = 'running';
      j.record.startedAt = this.clock.now();
      this.events.emit('job-started', { jobId, runnerId: j.record.runnerId ?? 0 });
    }
    return true;
  }

  jobState(jobId: string): { record: JobRecord; lost: boolean } | undefined {
    return this.jobsById.get(jobId);
  }

  /** Records the runner's result; an ephemeral runner's registration is removed afterwards. */
  completeJob(jobId: string, result: string, exitCode: number | null): void {
    const j = this.jobsById.get(jobId);
    if (!j || j.record.status === 'completed') return;
    const rec = j.record;
    rec.status = 'completed';
    rec.result = result;
    rec.exitCode = exitCode;
    rec.completedAt = this.clock.now();
    const r = rec.runnerId === null ? undefined : this.runnersById.get(rec.runnerId);
    if (r && r.jobId === jobId) r.jobId = null;
    this.events.emit('job-completed', { jobId, runnerId: rec.runnerId ?? 0, result, exitCode });
    // The service removes an ephemeral registration once its one job is done (docs/runner-contract.md §7).
    if (r && r.ephemeral) this.deleteRunner(r.id, 'ephemeral');
    this.changed();
  }

  /**
   * Abandons every held job whose lock ran out (its listener died without completing it): the
   * job ends as Abandoned, its runner is free again, and an ephemeral runner is removed, having
   * had its one job. Called before every request and every state read, so the clock decides.
   */
  sweep(): void {
    const now = this.clock.now();
    for (const id of this.jobOrder) {
      const j = this.jobsById.get(id)!;
      const rec = j.record;
      if (rec.status === 'running' && !rec.cancelled && rec.startedAt !== null) {
        // The service's own cancellations: timeout-minutes, or a user's cancel (cancelAfterMs).
        // The runner learns it from its next renew (404) and cancels the job there.
        const ran = now - rec.startedAt;
        if (ran >= rec.job.timeoutMinutes * 60_000) {
          this.cancelJob(id, `The job running on runner ${rec.runnerName ?? '?'} has exceeded the maximum execution time of ${rec.job.timeoutMinutes} minutes.`);
        } else if (rec.job.cancelAfterMs !== null && ran >= rec.job.cancelAfterMs) {
          this.cancelJob(id, 'The run was canceled by @octocat.');
        }
      }
      if ((rec.status !== 'assigned' && rec.status !== 'running') || now <= j.lockedUntil) continue;
      j.lost = true;
      this.completeJob(id, 'Abandoned', null);
    }
  }

  /** Cancels a job: a queued one ends as Canceled; a running one fails its next renew (404). */
  cancelJob(jobId: string, reason?: string): void {
    const j = this.jobsById.get(jobId);
    if (!j) throw new Error(`no job ${jobId}`);
    const rec = j.record;
    if (rec.status === 'completed') return;
    rec.cancelled = true;
    if (reason !== undefined) rec.cancelReason = reason;
    if (rec.status === 'queued') {
      rec.status = 'completed';
      rec.result = 'Canceled';
      rec.completedAt = this.clock.now();
      this.events.emit('job-completed', { jobId, runnerId: 0, result: 'Canceled', exitCode: null });
    }
    this.changed();
  }

  // ---- issued tokens ----

  issueToken(t: Omit<IssuedToken, 'token' | 'expiresAt'>, prefix: string): IssuedToken {
    const issued: IssuedToken = { ...t, token: mintToken(prefix), expiresAt: this.clock.now() + TOKEN_TTL_MS };
    this.tokens.set(issued.token, issued);
    return issued;
  }

  /** A live issued token of one of `kinds`, or undefined (unknown or expired). */
  issued(token: string, kinds: IssuedToken['kind'][]): IssuedToken | undefined {
    const t = this.tokens.get(token);
    if (!t || !kinds.includes(t.kind)) return undefined;
    if (this.clock.now() >= t.expiresAt) return undefined;
    return t;
  }

  private mustRunner(id: number): RunnerState {
    const r = this.runnersById.get(id);
    if (!r) throw new Error(`no runner ${id}`);
    return r;
  }
}

function snapshot(rec: JobRecord): JobRecord {
  return { ...rec, job: structuredClone(rec.job) };
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
