import { readFileSync } from 'node:fs';

/** The agent's version, from package.json (read once, at first use of this module). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
