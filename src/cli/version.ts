import { readFileSync } from 'node:fs';

/** Set by the bundler (scripts/build.ts): the bundle does not sit where ../../package.json is. */
declare const __RUNNER_WARDEN_VERSION__: string | undefined;

/** The agent's version: fixed at build time in the bundle, else from package.json (read once). */
export const VERSION: string =
  typeof __RUNNER_WARDEN_VERSION__ === 'string'
    ? __RUNNER_WARDEN_VERSION__
    : (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
