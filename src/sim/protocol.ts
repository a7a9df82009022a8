/**
 * Types of the private protocol between the fake GitHub API and the runner simulator
 * (PROTOCOL.md), shared by both sides so they cannot drift apart.
 */

/**
 * A step of a simulated job: a bash script run in GITHUB_WORKSPACE (inside the job container when
 * the job has one and container hooks are set), or, when `uses` is `docker://<image>`, a container
 * action run through the container hooks (`run` is then ignored).
 */
export interface JobStep {
  name: string;
  run: string;
  /** Only `docker://<image>` is simulated. */
  uses?: string;
  /** The docker action's `with:` inputs `entrypoint` and `args` (args split at spaces, as the runner does). */
  with?: { entrypoint?: string; args?: string };
  /** The step's `env:`. */
  env?: Record<string, string>;
}

/** A job container (`container:`) or a service container (`services.<name>:`), as the workflow declares it. */
export interface JobContainer {
  image: string;
  env?: Record<string, string>;
  /** `options:`, handed to the hooks as `createOptions`. */
  options?: string;
  /** `ports:` (`"8080:80"`, `"5432"`). */
  ports?: string[];
  /** `volumes:` (`source:target[:ro]`). */
  volumes?: string[];
  credentials?: { username: string; password: string };
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
  /** `container:`; absent for a job that runs on the host. */
  container?: JobContainer;
  /** `services:`, keyed by the service's name (its network alias), in declaration order. */
  services?: Record<string, JobContainer>;
}
