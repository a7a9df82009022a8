/**
 * Types of the private protocol between the fake GitHub API and the runner simulator
 * (PROTOCOL.md), shared by both sides so they cannot drift apart.
 */

/** A step of a simulated job: a bash script run in GITHUB_WORKSPACE. */
export interface JobStep {
  name: string;
  run: string;
}

/** The Job object the broker hands to a runner (PROTOCOL.md "Job"). */
export interface BrokerJob {
  jobId: string;
  requestId: number;
  planId: string;
  displayName: string;
  repository: string;
  workflow: string;
  runId: string;
  runNumber: string;
  runAttempt: string;
  sha: string;
  ref: string;
  eventName: string;
  actor: string;
  labels: string[];
  steps: JobStep[];
  timeoutMinutes: number;
  cancelAfterMs: number | null;
}
