#!/usr/bin/env node
// Entry point of the installed command: runs the TypeScript sources through tsx's loader, so a
// checkout needs no build step (the agent is a long-running daemon; the load cost is paid once).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }, process.env);
// Exit once done: an idle keep-alive socket or timer of a library must not hold a stopped agent.
process.stdout.write('', () => process.exit(code));
