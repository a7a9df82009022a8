/**
 * Validators compiled at build time. In the sources there are none (the schemas are compiled on
 * first use); `npm run build` replaces this module, in the bundle only, with one returning the
 * ajv standalone validators it generated (scripts/build-schemas.ts).
 */
import type { ValidateFunction } from 'ajv';

/** The host config, team policy, policy file and recycle section validators, or undefined outside the bundle. */
export function precompiledValidators():
  | { host: ValidateFunction; policy: ValidateFunction; policyFile: ValidateFunction; recycle: ValidateFunction }
  | undefined {
  return undefined;
}
