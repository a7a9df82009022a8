/**
 * The fake GitHub's job queue: queued jobs, which runner gets which (the only place that decides
 * it), renewals, completion, the service's own cancellations and the abandonment of a job whose
 * listener stopped renewing its lock.
 */
import type { EventEmitter } from 'node:events';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import type { ControlMessage, RunnerRegistry, RunnerState } from './runners.js';
import { scopeCovers } from './scope.js';
import type { BrokerJob, FakeGitHubEvents, JobRecord, JobSpec } from './types.js';

/** What a poll may deliver. */
export type BrokerMessage = ControlMessage | { type: 'job'; job: BrokerJob };

/** A job as the queue holds it. */
export interface JobState {
  record: JobRecord;
  lost: boolean;
  /** Clock time after which a held job without a renew is abandoned. */
  lockedUntil: number;
}

/** Every job ever queued, oldest first. */
export class JobQueue {
  private readonly byId = new Map<string, JobState>();
  private readonly order: string[] = [];
  private nextRequestId = 1;

  constructor(
    private readonly clock: Clock,
    private readonly events: EventEmitter<FakeGitHubEvents>,
    private readonly runners: RunnerRegistry,
    private readonly changed: () => void,
    /** A delivered job whose lock is not renewed for this long is abandoned. */
    readonly lockMs: number,
  ) {}

  /** Queues a job built from `spec` (defaults filled in, the spec copied); returns its id. */
  enqueue(spec: JobSpec): string {
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
    this.byId.set(id, { record, lost: false, lockedUntil: 0 });
    this.order.push(id);
    this.changed();
    return id;
  }

  /** Snapshots of every job, oldest first. */
  records(): JobRecord[] {
    return this.order.map((id) => snapshot(this.byId.get(id)!.record));
  }

  /** A snapshot of one job, or undefined. */
  record(id: string): JobRecord | undefined {
    const j = this.byId.get(id);
    return j ? snapshot(j.record) : undefined;
  }

  /** The live state of one job (for the broker's renew and complete), or undefined. */
  state(jobId: string): { record: JobRecord; lost: boolean } | undefined {
    return this.byId.get(jobId);
  }

  /**
   * The next message for a runner, consuming it: control messages first, then the oldest queued
   * job it may take (scope covers the repository, its labels include every job label, not busy,
   * and an ephemeral runner only ever gets one job).
   */
  take(r: RunnerState): BrokerMessage | null {
    const ctl = r.messages.shift();
    if (ctl) return ctl;
    if (r.jobId !== null || (r.ephemeral && r.jobsTaken > 0)) return null;
    const have = new Set(r.labels.map((l) => l.name.toLowerCase()));
    for (const id of this.order) {
      const j = this.byId.get(id)!;
      const rec = j.record;
      if (rec.status !== 'queued') continue;
      if (!scopeCovers(r.scope, rec.job.repository)) continue;
      if (!rec.job.labels.every((l) => have.has(l.toLowerCase()))) continue;
      rec.status = 'assigned';
      rec.runnerId = r.id;
      rec.runnerName = r.name;
      rec.assignedAt = this.clock.now();
      j.lockedUntil = rec.assignedAt + this.lockMs;
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
  renew(jobId: string): boolean {
    const j = this.byId.get(jobId);
    if (!j || j.lost || j.record.cancelled || j.record.status === 'completed') return false;
    j.lockedUntil = this.clock.now() + this.lockMs;
    if (j.record.status === 'assigned') {
      j.record.status = 'running';
      j.record.startedAt = this.clock.now();
      this.events.emit('job-started', { jobId, runnerId: j.record.runnerId ?? 0 });
    }
    return true;
  }

  /** The job held by a runner whose registration was removed is lost: its next renew gets 404. */
  lose(jobId: string | null): void {
    const j = jobId === null ? undefined : this.byId.get(jobId);
    if (j && j.record.status !== 'completed') j.lost = true;
  }

  /** Records the runner's result; an ephemeral runner's registration is removed afterwards. */
  complete(jobId: string, result: string, exitCode: number | null): void {
    const j = this.byId.get(jobId);
    if (!j || j.record.status === 'completed') return;
    const rec = j.record;
    rec.status = 'completed';
    rec.result = result;
    rec.exitCode = exitCode;
    rec.completedAt = this.clock.now();
    const r = rec.runnerId === null ? undefined : this.runners.get(rec.runnerId);
    if (r && r.jobId === jobId) r.jobId = null;
    this.events.emit('job-completed', { jobId, runnerId: rec.runnerId ?? 0, result, exitCode });
    // The service removes an ephemeral registration once its one job is done (docs/runner-contract.md §7).
    if (r && r.ephemeral) this.runners.remove(r.id, 'ephemeral');
    this.changed();
  }

  /**
   * Abandons every held job whose lock ran out (its listener died without completing it): the
   * job ends as Abandoned, its runner is free again, and an ephemeral runner is removed, having
   * had its one job. Called before every request and every state read, so the clock decides.
   */
  sweep(): void {
    const now = this.clock.now();
    for (const id of this.order) {
      const j = this.byId.get(id)!;
      const rec = j.record;
      if (rec.status === 'running' && !rec.cancelled && rec.startedAt !== null) {
        // The service's own cancellations: timeout-minutes, or a user's cancel (cancelAfterMs).
        // The runner learns it from its next renew (404) and cancels the job there.
        const ran = now - rec.startedAt;
        if (ran >= rec.job.timeoutMinutes * 60_000) {
          this.cancel(
            id,
            `The job running on runner ${rec.runnerName ?? '?'} has exceeded the maximum execution time of ${rec.job.timeoutMinutes} minutes.`,
          );
        } else if (rec.job.cancelAfterMs !== null && ran >= rec.job.cancelAfterMs) {
          this.cancel(id, 'The run was canceled by @octocat.');
        }
      }
      if ((rec.status !== 'assigned' && rec.status !== 'running') || now <= j.lockedUntil) continue;
      j.lost = true;
      this.complete(id, 'Abandoned', null);
    }
  }

  /** Cancels a job: a queued one ends as Canceled; a running one fails its next renew (404). */
  cancel(jobId: string, reason?: string): void {
    const j = this.byId.get(jobId);
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
}

function snapshot(rec: JobRecord): JobRecord {
  return { ...rec, job: structuredClone(rec.job) };
}
