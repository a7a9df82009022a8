/**
 * Run as a child by special-files.test.ts, so that a read that blocks the main thread for good
 * fails the test by its timeout instead of hanging it: takes a system baseline of a host tree,
 * replaces files the check reads whole (the account databases, the machine id, the package
 * database, a sudoers drop-in) with FIFOs nobody writes, as a root job could, and prints both
 * guards' findings as JSON.
 *   node --import tsx fifo-plant.ts <root>
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { SudoGuard } from '../../../src/integrity/sudo-guard.js';
import { createLogger } from '../../../src/lib/log.js';
import { buildHostTree, preparedTreeGuard, TREE_RUNNER } from './host-tree.js';

const [root] = process.argv.slice(2) as [string];
const SURFACES = ['etc', 'accounts', 'package-state'] as const;
const T = path.join(root, 'host');
await mkdir(T);
await buildHostTree(T);
await mkdir(`${T}/etc/sudoers.d`, { recursive: true });
const stateDir = path.join(root, 'state');
const sudo = new SudoGuard({ root: T, user: TREE_RUNNER });
const ctx = { log: createLogger({ level: 'silent' }), signal: AbortSignal.timeout(60_000) };
const { guard, policy: p, job } = await preparedTreeGuard(root, T, stateDir, SURFACES, ctx);
for (const f of ['etc/passwd', 'etc/group', 'etc/machine-id', 'var/lib/dpkg/status', 'etc/sudoers.d/zz']) {
  await rm(path.join(T, f), { force: true });
  execFileSync('mkfifo', [path.join(T, f)]);
}
const lines = [...(await guard.verify(job, p, ctx)), ...(await sudo.verify(job, p, ctx))].map((f) => f.problem);
process.stdout.write(`${JSON.stringify(lines)}\n`);
