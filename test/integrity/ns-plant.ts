/**
 * Run inside fresh network, mount and pid namespaces (kernel-surfaces.test.ts starts it with
 * unshare): takes a system baseline of the kernel and network surfaces, plants a netfilter rule, a
 * sysctl change, a route, a root process listening on a port and a bind mount over a system path,
 * and prints the integrity guard's findings as JSON. Everything it planted dies with the namespaces.
 *   node --import tsx ns-plant.ts <stateDir> <scratchDir>
 */
import { execFileSync, spawn } from 'node:child_process';
import { IntegrityGuard } from '../../src/integrity/guard.js';
import { takeSystemBaseline } from '../../src/integrity/system-baseline.js';
import { DEFAULT_POLICY } from '../../src/policy/types.js';
import { createLogger } from '../../src/lib/log.js';

const [stateDir, scratch] = process.argv.slice(2) as [string, string];
const SURFACES = ['mounts', 'netfilter', 'routes', 'sysctl', 'listeners', 'processes'] as const;
const user = { name: 'nobody', uid: 65534 };
const run = (cmd: string, ...args: string[]): void => {
  execFileSync(cmd, args, { stdio: 'pipe' });
};

run('ip', 'link', 'set', 'lo', 'up');
await takeSystemBaseline({ stateDir, surfaces: SURFACES, excluded: [], user, skipPids: [process.pid] });
const policy = structuredClone(DEFAULT_POLICY);
policy.host.integrity.surfaces = [...SURFACES];
const guard = new IntegrityGuard({ stateDir, excluded: [], user, skipPids: [process.pid] });
const ctx = { log: createLogger({ level: 'silent' }), signal: AbortSignal.timeout(60_000) };
const job = { key: 'ns-job', dir: scratch, user: { ...user, gid: 65534, home: '/nonexistent' }, runnerRoot: scratch, stateDir };
await guard.prepare(job, policy, ctx);
const before = (await guard.verify(job, policy, ctx)).map((f) => f.problem);

run('iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '4444', '-j', 'ACCEPT');
run('sysctl', '-qw', 'net.ipv4.ip_forward=1');
run('ip', 'route', 'add', '10.99.0.0/16', 'dev', 'lo');
run('mount', '--bind', scratch, '/usr/local/bin');
const listener = spawn('python3', ['-c', 'import socket,time\ns=socket.socket()\ns.bind(("127.0.0.1",4445))\ns.listen()\nprint("up",flush=True)\ntime.sleep(60)'], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise<void>((res) => listener.stdout.once('data', () => res()));
const after = await guard.verify(job, policy, ctx);
listener.kill('SIGKILL');
run('umount', '/usr/local/bin');
process.stdout.write(`${JSON.stringify({ before, after })}\n`);
