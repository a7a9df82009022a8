/**
 * The GitHubPort: only the calls the agent makes (docs/decisions.md, "Narrow ports over SDKs"). The @octokit/core adapter is
 * in octokit.ts; tests run it against the fake API in src/sim/github.
 */

/** A runner as the REST API returns it (docs/runner-contract.md §10). */
export interface RunnerInfo {
  id: number;
  name: string;
  os: string;
  status: 'online' | 'offline';
  busy: boolean;
  labels: { id?: number; name: string; type?: 'read-only' | 'custom' }[];
  runner_group_id?: number;
  ephemeral?: boolean;
}

/** What generate-jitconfig returns. `encodedJitConfig` is a secret: never log it. */
export interface JitRegistration {
  runner: RunnerInfo;
  encodedJitConfig: string;
}

/** A registration or remove token (valid 1 h). A secret. */
export interface RunnerToken {
  token: string;
  expiresAt: string;
}

/** Result of deleting a runner registration. */
export type DeleteOutcome = 'deleted' | 'not-found' | 'busy';

export interface GitHubPort {
  /** POST .../actions/runners/generate-jitconfig for the configured scope. */
  generateJitConfig(req: { name: string; labels: string[]; runnerGroupId: number; workFolder: string }): Promise<JitRegistration>;
  /** Resolves a runner group name to its id (org/enterprise); repos use the default group 1. */
  resolveRunnerGroup(name: string | null): Promise<number>;
  /** DELETE .../actions/runners/{id}: 204 → deleted, 404 → not-found, 422 → busy. */
  deleteRunner(id: number): Promise<DeleteOutcome>;
  /** GET .../actions/runners?name=... */
  findRunnersByName(name: string): Promise<RunnerInfo[]>;
  /** POST .../actions/runners/registration-token (token mode). */
  createRegistrationToken(): Promise<RunnerToken>;
  /** POST .../actions/runners/remove-token (token mode). */
  createRemoveToken(): Promise<RunnerToken>;
}
