/**
 * Run inside fresh network, mount and pid namespaces (kernel-surfaces.test.ts starts it with
 * unshare): takes a system baseline of the kernel and network surfaces, plants a netfilter rule, a
 * sysctl change, a route, a root process listening on a port, a bind mount over a system path, a
 * second instance of a daemon the image runs and a process hidden by a bind mount over its /proc entry,
 * and prints the integrity guard's findings as JSON. Before planting, it acts as the agent does
 * (a health listener, a child process, a mount in the runner root): none of that may be drift. Everything it planted dies with the namespaces.
 *   node --import tsx ns-plant.ts <stateDir> <scratchDir>
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
// Started by kernel-surfaces.test.ts under `sh` as the pid namespace's init, so that orphans go to
// it and not to this process (which plays the agent).
import { once } from 'node:events';
import net from 'node:net';
import { IntegrityGuard } from '../../../src/integrity/guard.js';
import { takeSystemBaseline } from '../../../src/integrity/system-baseline.js';
import { DEFAULT_POLICY } from '../../../src/policy/types.js';
import { createLogger } from '../../../src/lib/log.js';

const [stateDir, scratch] = process.argv.slice(2) as [string, string];
const SURFACES = ['mounts', 'netfilter', 'routes', 'sysctl', 'listeners', 'processes'] as const;
const user = { name: 'nobody', uid: 65534 };
const run = (cmd: string, ...args: string[]): void => {
  execFileSync(cmd, args, { stdio: 'pipe' });
};

run('ip', 'link', 'set', 'lo', 'up');
// A root daemon of the image, there at baseline, orphaned to the namespace's init like a service.
const imageDaemonAt = Date.now();
run('sh', '-c', 'sleep 600 >/dev/null 2>&1 &');
// A daemon of the image that forks a worker of its own executable on demand (udevd does on a
// device event): the worker is the daemon's, not the job's.
run(
  'sh',
  '-c',
  `bash -c 'while :; do [ -e ${scratch}.fork ] && { rm ${scratch}.fork; bash -c "sleep 600; :" & }; sleep 0.1; done' >/dev/null 2>&1 &`,
);
await takeSystemBaseline({ stateDir, surfaces: SURFACES, excluded: [scratch], user, skipPids: [process.pid] });
const policy = structuredClone(DEFAULT_POLICY);
policy.host.integrity.surfaces = [...SURFACES];
const guard = new IntegrityGuard({ stateDir, excluded: [scratch], user, skipPids: [process.pid] });
const ctx = { log: createLogger({ level: 'silent' }), signal: AbortSignal.timeout(60_000) };
const job = { key: 'ns-job', dir: scratch, user: { ...user, gid: 65534, home: '/nonexistent' }, runnerRoot: scratch, stateDir };
// The image's daemon started well before the job (the check allows the boot clock's 2 s of slack).
await new Promise((r) => setTimeout(r, Math.max(0, imageDaemonAt + 2_500 - Date.now())));
await guard.prepare(job, policy, ctx);
// The agent's own doings after the baseline are no drift: its health listener, a child it runs,
// a mount inside the runner root (cleanup's).
const health = net.createServer().listen(9469, '127.0.0.1');
await once(health, 'listening');
const ownChild = spawn('sleep', ['60'], { stdio: 'ignore' });
run('mount', '-t', 'tmpfs', 'jobtmp', scratch);
const before = (await guard.verify(job, policy, ctx)).map((f) => f.problem);
run('umount', scratch);
// The job proper starts now (a verification ends what a prepare began, as after every job).
await guard.prepare(job, policy, ctx);

run('iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '4444', '-j', 'ACCEPT');
run('sysctl', '-qw', 'net.ipv4.ip_forward=1');
run('ip', 'route', 'add', '10.99.0.0/16', 'dev', 'lo');
run('mount', '--bind', scratch, '/usr/local/bin');
// A bind mount over one system binary, an overlay over /etc (the job's upper layer rewrites any
// file of it), and a network namespace kept alive by its bind mount under /run/netns (`ip netns
// add`: the directory and the name are made in the host's /run, removed below).
run('mount', '--bind', '/bin/true', '/usr/bin/tac');
run('mkdir', `${scratch}.upper`, `${scratch}.work`);
run('mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=/etc,upperdir=${scratch}.upper,workdir=${scratch}.work`, '/etc');
// Hiding a daemon: one named like a kernel thread (its comm and argv), one in a pid namespace of
// its own (a copy of sleep, so that its key is its own).
run('sh', '-c', `perl -e '$0 = "[kworker/0:1]"; sleep 600' >/dev/null 2>&1 &`);
run('cp', '/bin/sleep', `${scratch}-nsd`);
run('sh', '-c', `unshare --pid --fork ${scratch}-nsd 600 >/dev/null 2>&1 &`);
const hadNetns = existsSync('/run/netns');
run('ip', 'netns', 'add', 'rw-integrity-plant');
// A root daemon left by the job: started in the background and orphaned (re-parented to the
// namespace's init, as a job's leftovers are to the host's), so it is not one of the agent's own.
run(
  'sh',
  '-c',
  'python3 -c "import socket,time\ns=socket.socket()\ns.bind((\'127.0.0.1\',4445))\ns.listen()\ntime.sleep(60)" >/dev/null 2>&1 &',
);
run('touch', `${scratch}.fork`);
for (let i = 0; i < 50 && existsSync(`${scratch}.fork`); i++) await new Promise((r) => setTimeout(r, 100));
// Another instance of the image daemon's executable (the same process key), and a third one hidden
// by a bind mount over its /proc directory: the first is named by pid, the second by its mount.
run('sh', '-c', 'sleep 601 >/dev/null 2>&1 &');
run('sh', '-c', 'sleep 602 >/dev/null 2>&1 &');
// And one whose status file is a FIFO nobody writes (a bind mount over it): reading it must not
// block the check.
run('sh', '-c', 'sleep 603 >/dev/null 2>&1 &');
// A process whose real uid is the job's and whose effective uid is root (what a setuid-root
// daemon the job started looks like): root's, not cleanup's.
run('sh', '-c', 'setpriv --ruid 65534 --euid 0 tail -f /dev/null >/dev/null 2>&1 &');
const hidden = execFileSync('pgrep', ['-f', '^sleep 602$'], { encoding: 'utf8' }).trim();
run('mount', '--bind', scratch, `/proc/${hidden}`);
const stalled = execFileSync('pgrep', ['-f', '^sleep 603$'], { encoding: 'utf8' }).trim();
run('mkfifo', `${scratch}.fifo`);
run('mount', '--bind', `${scratch}.fifo`, `/proc/${stalled}/status`);
for (let i = 0; i < 100; i++) {
  const up = await new Promise<boolean>((res) => {
    const c = net.connect(4445, '127.0.0.1', () => {
      c.destroy();
      res(true);
    });
    c.on('error', () => res(false));
  });
  if (up) break;
  await new Promise((r) => setTimeout(r, 100));
}
const after = await guard.verify(job, policy, ctx);
run('ip', 'netns', 'del', 'rw-integrity-plant');
if (!hadNetns) run('sh', '-c', 'umount /run/netns 2>/dev/null; rmdir /run/netns 2>/dev/null; true');
run('umount', '/etc');
run('rm', '-rf', `${scratch}.upper`, `${scratch}.work`);
run('umount', '/usr/bin/tac');
// First: pkill and pgrep read every process's status, and would block on the FIFO as the check must not.
run('umount', `/proc/${stalled}/status`);
run('rm', `${scratch}.fifo`);
run('pkill', '-KILL', '-f', 'socket.socket');
ownChild.kill('SIGKILL');
health.close();
run('umount', '/usr/local/bin');
run('umount', `/proc/${hidden}`);
run('pkill', '-KILL', '-f', '^sleep 60[0123]$');
// The rest dies with the namespace.
run('pkill', '-KILL', '-f', 'while :[;] do');
run('pkill', '-KILL', '-f', '^tail -f /dev/null$');
run('pkill', '-KILL', '-f', 'kworker/0:1');
run('sh', '-c', `pkill -KILL -f -- '-ns[d] 600'; true`);
process.stdout.write(`${JSON.stringify({ before, after })}\n`);
