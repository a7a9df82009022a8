#!/usr/bin/env node
// Entry point of the installed command. Runs the compiled agent from dist/ (`npm run build`, what
// the install script and images do: plain JavaScript, about 40 MiB less resident memory), or the
// TypeScript sources through tsx in a checkout that was not built.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
let main;
if (existsSync(compiled)) {
  ({ main } = await import(compiled.href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }, process.env);
// Exit once done: an idle keep-alive socket or timer of a library must not hold a stopped agent.
process.stdout.write('', () => process.exit(code));
