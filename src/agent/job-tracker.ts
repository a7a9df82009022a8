/**
 * What one listener's console and the job hooks say about its job. Only the listener starts a job:
 * its console's "Running job" (or "completed with result") line. A hook report is written by a
 * script in the job's own session, so anything the job runs (or another local user, should the drop
 * channel leak) can forge one: it only adds metadata to a job the listener confirmed, and never
 * turns an idle agent into a busy one.
 */
import type { Clock } from '../lib/clock.js';
import type { HookEvent } from '../runner/hooks.js';
import type { ConsoleEvent } from '../runner/console.js';

/** A job the listener confirmed. */
export interface TrackedJob {
  startedAt: number;
  name?: string;
  result?: string;
  vars: Record<string, string>;
  /** What confirmed it: always the listener's console; `hook` kept for records read back. */
  source: 'hook' | 'console';
  completedSeen: boolean;
  notes?: string[];
}

/**
 * Hook reports used per listener: a job's two hooks write one each; a few more allow a retried
 * hook. Anything beyond is a flood and is counted, not kept.
 */
export const MAX_HOOK_REPORTS = 8;

/** Variables kept from hook reports (the reader already bounds names and value lengths). */
const MAX_HOOK_VARS = 32;

/** Notes kept per job (the journal record carries them). */
const MAX_NOTES = 16;

/** Collects what one listener's console and hooks say about its job. */
export class JobTracker {
  job?: TrackedJob;
  runnerGone = false;
  idleTimedOut = false;
  versionDeprecated?: string;
  /** Hook reports beyond MAX_HOOK_REPORTS, ignored. */
  ignoredReports = 0;
  /** A hook said a job started; kept to note a claim the listener never confirmed. */
  hookClaimedStart = false;
  /** The listener started update.sh (it outlives the listener, whatever the exit code). */
  updateScript = false;
  /** A job-completed hook reported (it never runs after a runner shutdown). */
  hookCompleted = false;
  /** The agent stopped the listener while its job ran (drain grace over, job time limit). */
  stoppedBusy = false;
  readonly started: Promise<void>;
  private resolveStarted!: () => void;
  private reports = 0;
  private hookVars: Record<string, string> = {};

  constructor(private readonly clock: Clock) {
    this.started = new Promise((r) => (this.resolveStarted = r));
  }

  console(e: ConsoleEvent): void {
    if (e.kind === 'job-started') this.begin().name = e.jobName;
    else if (e.kind === 'job-completed') {
      const j = this.begin();
      j.name ??= e.jobName;
      j.result = e.result;
      j.completedSeen = true;
    } else if (e.kind === 'runner-gone') this.runnerGone = true;
    else if (e.kind === 'update-script') this.updateScript = true;
    else if (e.kind === 'version-deprecated') this.versionDeprecated = e.version;
  }

  /** Metadata from a hook report; merged into the job once (or if) the listener confirms one. */
  hook(e: HookEvent): void {
    if (this.reports >= MAX_HOOK_REPORTS) {
      this.ignoredReports += 1;
      return;
    }
    this.reports += 1;
    if (e.event === 'started') this.hookClaimedStart = true;
    if (e.event === 'completed') this.hookCompleted = true;
    for (const [k, v] of Object.entries(e.vars)) {
      if (k in this.hookVars || Object.keys(this.hookVars).length < MAX_HOOK_VARS) this.hookVars[k] = v;
    }
    if (this.job) this.job.vars = { ...this.hookVars };
  }

  /** The hook metadata gathered so far (for a note when no job was confirmed). */
  get reportedVars(): Readonly<Record<string, string>> {
    return this.hookVars;
  }

  note(text: string): void {
    if (this.job && (this.job.notes ??= []).length < MAX_NOTES) this.job.notes.push(text);
  }

  private begin(): TrackedJob {
    if (!this.job) {
      this.job = { startedAt: this.clock.now(), vars: { ...this.hookVars }, source: 'console', completedSeen: false };
      this.resolveStarted();
    }
    return this.job;
  }
}
