/**
 * Task results and exit codes shared by the simulated listener and worker
 * (docs/runner-contract.md §2, `TaskResultUtil.cs`, `Constants.Runner.ReturnCode`).
 */

/** TaskResult names in enum order: Succeeded 0 ... Abandoned 5. */
export const TASK_RESULTS = ['Succeeded', 'SucceededWithIssues', 'Failed', 'Canceled', 'Skipped', 'Abandoned'] as const;

/** A job or step result. */
export type TaskResult = (typeof TASK_RESULTS)[number];

/** The worker's exit code for a result: 100 + the enum value. */
export function resultToExitCode(r: TaskResult): number {
  return 100 + TASK_RESULTS.indexOf(r);
}

/** The result for a worker exit code; any code outside 100..105 is a crash, reported as Failed. */
export function exitCodeToResult(code: number | null): TaskResult {
  if (code === null) return 'Failed';
  return TASK_RESULTS[code - 100] ?? 'Failed';
}

/** Merges a step's result into the job's: the worse one wins (TaskResultUtil.MergeTaskResults). */
export function mergeResults(current: TaskResult, coming: TaskResult): TaskResult {
  if (coming === 'Skipped') return current;
  return TASK_RESULTS.indexOf(coming) > TASK_RESULTS.indexOf(current) ? coming : current;
}

/** Listener return codes (Constants.Runner.ReturnCode). */
export const ReturnCode = {
  Success: 0,
  TerminatedError: 1,
  RetryableError: 2,
  RunnerUpdating: 3,
  RunOnceRunnerUpdating: 4,
  SessionConflict: 5,
  RunnerVersionDeprecated: 7,
} as const;
