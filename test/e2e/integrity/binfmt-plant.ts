/**
 * Run inside a private mount namespace (binfmt.test.ts starts it with unshare): mounts binfmt_misc
 * where systemd does, takes a system baseline of the mounts and sysctl surfaces, then plays a root
 * job: registers two binfmt_misc handlers (one with the F flag, which keeps the interpreter open)
 * and checks; then hides them under a tmpfs stacked on /proc/sys/fs/binfmt_misc and checks again.
 * Prints the findings of each check as JSON. The handlers match a magic no real file starts with,
 * and are removed before it exits (also on failure); the mounts die with the namespace.
 *   node --import tsx binfmt-plant.ts <stateDir> <scratchDir>
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { IntegrityGuard } from '../../../src/integrity/guard.js';
import { takeSystemBaseline } from '../../../src/integrity/system-baseline.js';
import { DEFAULT_POLICY } from '../../../src/policy/types.js';
import { createLogger } from '../../../src/lib/log.js';

const [stateDir, scratch] = process.argv.slice(2) as [string, string];
const SURFACES = ['mounts', 'sysctl'] as const;
const BM = '/proc/sys/fs/binfmt_misc';
/** Handlers whose magic no real file starts with: harmless while they exist. */
const HANDLERS = { rwprobe: ':rwprobe:M::RWPROBE9::/bin/true:', rwprobeF: ':rwprobeF:M::RWPROBF9::/bin/true:F' };
const user = { name: 'nobody', uid: 65534 };
const run = (cmd: string, ...args: string[]): void => {
  execFileSync(cmd, args, { stdio: 'pipe' });
};
const mounted = (): string[] =>
  execFileSync('findmnt', ['-rn', '-o', 'FSTYPE', BM], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);

await takeSystemBaseline({ stateDir, surfaces: SURFACES, excluded: [scratch], user, skipPids: [process.pid] });
const policy = structuredClone(DEFAULT_POLICY);
policy.host.integrity.surfaces = [...SURFACES];
const guard = new IntegrityGuard({ stateDir, excluded: [scratch], user, skipPids: [process.pid], netfilter: false });
const ctx = { log: createLogger({ level: 'silent' }), signal: AbortSignal.timeout(60_000) };
const job = { key: 'binfmt-job', dir: scratch, user: { ...user, gid: 65534, home: '/nonexistent' }, runnerRoot: scratch, stateDir };
const out: Record<string, string[]> = {};
try {
  // What systemd does on a host (its automount, on first access): the host's own, no drift.
  run('mount', '-t', 'binfmt_misc', 'binfmt_misc', BM);
  await guard.prepare(job, policy, ctx);
  out.before = (await guard.verify(job, policy, ctx)).map((f) => f.problem);
  await guard.prepare(job, policy, ctx);
  for (const line of Object.values(HANDLERS)) writeFileSync(`${BM}/register`, line);
  out.registered = (await guard.verify(job, policy, ctx)).map((f) => f.problem);
  // The same handlers, hidden from a reader of /proc/sys/fs/binfmt_misc by a tmpfs on top.
  await guard.prepare(job, policy, ctx);
  run('mount', '-t', 'tmpfs', 'none', BM);
  out.hidden = (await guard.verify(job, policy, ctx)).map((f) => f.problem);
} finally {
  while (mounted().length > 1) run('umount', BM);
  if (mounted()[0] !== 'binfmt_misc') run('mount', '-t', 'binfmt_misc', 'binfmt_misc', BM);
  for (const name of Object.keys(HANDLERS)) if (existsSync(`${BM}/${name}`)) writeFileSync(`${BM}/${name}`, '-1');
  out.left = Object.keys(HANDLERS).filter((n) => existsSync(`${BM}/${n}`));
  run('umount', BM);
}
process.stdout.write(`${JSON.stringify(out)}\n`);
