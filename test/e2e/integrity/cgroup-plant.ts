/**
 * Run inside fresh pid and mount namespaces (process-hiding.test.ts starts it with unshare): takes
 * a baseline of the process surface, then plays a root job that leaves a daemon and moves it into
 * a cgroup it made and named like a unit whose processes are never drift (cron.service), and prints
 * the guard's findings as JSON. The cgroup is removed before it exits, also on failure.
 *   node --import tsx cgroup-plant.ts <stateDir> <scratchDir> <cgroup2 mount point>
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { IntegrityGuard } from '../../../src/integrity/guard.js';
import { takeSystemBaseline } from '../../../src/integrity/system-baseline.js';
import { DEFAULT_POLICY } from '../../../src/policy/types.js';
import { createLogger } from '../../../src/lib/log.js';

const [stateDir, scratch, cgroupRoot] = process.argv.slice(2) as [string, string, string];
const SURFACES = ['processes'] as const;
const user = { name: 'nobody', uid: 65534 };
const run = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: 'pipe' });

await takeSystemBaseline({ stateDir, surfaces: SURFACES, excluded: [scratch], user, skipPids: [process.pid] });
const policy = structuredClone(DEFAULT_POLICY);
policy.host.integrity.surfaces = [...SURFACES];
const guard = new IntegrityGuard({ stateDir, excluded: [scratch], user, skipPids: [process.pid], netfilter: false });
const ctx = { log: createLogger({ level: 'silent' }), signal: AbortSignal.timeout(60_000) };
const job = { key: 'cg-job', dir: scratch, user: { ...user, gid: 65534, home: '/nonexistent' }, runnerRoot: scratch, stateDir };
const fake = path.join(cgroupRoot, `rw-integrity-${process.pid}`);
const unit = path.join(fake, 'cron.service');
const out: Record<string, string[]> = {};
try {
  await guard.prepare(job, policy, ctx);
  // Left running by the job (orphaned to the namespace's init), then moved into the fake unit.
  run('sh', '-c', 'tail -f /dev/null >/dev/null 2>&1 &');
  const pid = run('pgrep', '-f', '^tail -f /dev/null$').trim();
  mkdirSync(unit, { recursive: true });
  writeFileSync(path.join(unit, 'cgroup.procs'), pid);
  out.cgroup = [run('cat', `/proc/${pid}/cgroup`)];
  out.after = (await guard.verify(job, policy, ctx)).map((f) => f.problem);
} finally {
  execFileSync('pkill', ['-KILL', '-f', '^tail -f /dev/null$'], { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(unit);
      rmdirSync(fake);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
process.stdout.write(`${JSON.stringify(out)}\n`);
