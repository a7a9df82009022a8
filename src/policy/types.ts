/**
 * The team policy and host config types. They are DERIVED from the JSON Schemas in
 * src/policy/schema/ (src/policy/gen-types.ts writes types.generated.ts; a test fails when it is
 * stale), so the shapes are never written twice. Edit the schemas, then run
 * `node --import tsx scripts/gen-policy.ts`.
 */
import type { HostConfig } from './types.generated.js';

export type { AdminCommand, CleanupPolicy, HostConfig, Policy, RecycleConfig } from './types.generated.js';
export { DEFAULT_POLICY } from './types.generated.js';

/** How the agent authenticates to GitHub: the one credential the host config names. */
export type GitHubCredentials =
  { kind: 'token'; token: NonNullable<HostConfig['github']['token']> } | ({ kind: 'app' } & NonNullable<HostConfig['github']['app']>);
