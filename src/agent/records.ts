import type { CleanupReport } from '../cleanup/types.js';
import type { ListenerExit } from '../runner/listener.js';
import type { JobMeta, JobRecord, NewJournalRecord } from './journal.js';

/** What the agent needs of the journal. */
export interface JournalPort {
  append(record: NewJournalRecord): Promise<unknown>;
  /** The last `n` job records (for recovery's duplicate checks: by key, by registration); optional for simple journals. */
  readLastJobs?(n: number): Promise<{ records: { key?: string; runnerId?: number }[] }>;
}

/** Inputs of a job record before the decision is known. */
export interface JobRecordInput {
  runnerName: string | undefined;
  runnerId: number | undefined;
  vars: Record<string, string>;
  jobName?: string | undefined;
  startedAt: number;
  endedAt: number;
  exit: ListenerExit | undefined;
  result: string;
  source: JobRecord['source'];
  cleanup: CleanupReport | undefined;
  notes?: string[] | undefined;
  key?: string | undefined;
}

/** The report stored when cleanup never finished: it proves nothing, so it says dirty. */
export function incompleteCleanup(): CleanupReport {
  return {
    steps: [],
    verify: { clean: false, durationMs: 0, problems: ['cleanup did not complete'] },
    clean: false,
    readyMs: 0,
  };
}

/** Job metadata from the hook's GITHUB_* variables. */
export function jobMetaFromVars(vars: Record<string, string>): JobMeta {
  const pick = (k: string): string | undefined => vars[k];
  const meta: JobMeta = {};
  const set = (key: keyof JobMeta, v: string | undefined): void => {
    if (v !== undefined && v !== '') meta[key] = v;
  };
  set('repository', pick('GITHUB_REPOSITORY'));
  set('workflow', pick('GITHUB_WORKFLOW'));
  set('job', pick('GITHUB_JOB'));
  set('runId', pick('GITHUB_RUN_ID'));
  set('runNumber', pick('GITHUB_RUN_NUMBER'));
  set('sha', pick('GITHUB_SHA'));
  set('ref', pick('GITHUB_REF'));
  set('eventName', pick('GITHUB_EVENT_NAME'));
  set('actor', pick('GITHUB_ACTOR'));
  return meta;
}

/** A job record without the decision fields (the caller adds them). */
export function buildJobRecord(i: JobRecordInput): Omit<Extract<NewJournalRecord, { type: 'job' }>, 'decision' | 'decisionReason'> {
  const job = jobMetaFromVars(i.vars);
  if (i.jobName && !job.job) job.job = i.jobName;
  const cleanup = i.cleanup ?? incompleteCleanup();
  return {
    type: 'job',
    runnerName: i.runnerName ?? 'unknown',
    ...(i.runnerId !== undefined ? { runnerId: i.runnerId } : {}),
    job,
    startedAt: new Date(i.startedAt).toISOString(),
    endedAt: new Date(i.endedAt).toISOString(),
    listenerExitCode: i.exit?.code ?? null,
    listenerSignal: i.exit?.signal ?? null,
    result: i.result,
    source: i.source,
    cleanup,
    timeToReadyMs: cleanup.readyMs,
    ...(i.notes && i.notes.length > 0 ? { notes: i.notes } : {}),
    ...(i.key ? { key: i.key } : {}),
  };
}
