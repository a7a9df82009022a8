/**
 * The team policy and host config types. They are DERIVED from the JSON Schemas in
 * src/policy/schema/ (src/policy/gen-types.ts writes types.generated.ts; a test fails when it is
 * stale), so the shapes are never written twice. Edit the schemas, then run
 * `node --import tsx scripts/gen-policy.ts`.
 */

export type { AdminCommand, CleanupPolicy, HostConfig, Policy, RecycleConfig } from './types.generated.js';
export { DEFAULT_POLICY } from './types.generated.js';
