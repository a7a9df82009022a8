#!/usr/bin/env node
// Entry point of the installed command. Runs the bundle (dist/runner-warden.mjs, made by
// `npm run build`: what packages and images ship), or the TypeScript sources through tsx in a
// checkout that was not built.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/runner-warden.mjs', import.meta.url);
/** The signature of src/cli/main.ts's `main` (this launcher is not type-checked against the sources). */
/** @typedef {(argv: string[], io: { stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream }, env: NodeJS.ProcessEnv) => Promise<number>} Main */
/** @type {Main} */
let main;
if (existsSync(bundle)) {
  // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- the JSDoc cast types it; the lint tree drops the cast's parentheses and sees import()'s any
  ({ main } = /** @type {{ main: Main }} */ (await import(bundle.href)));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = /** @type {{ main: Main }} */ (await import('../src/cli/main.ts')));
}
const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }, process.env);
// Exit once done: an idle keep-alive socket or timer of a library must not hold a stopped agent.
process.stdout.write('', () => process.exit(code));
