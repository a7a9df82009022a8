/**
 * The per-job engine against a hostile job: one real rootless dockerd per job, started by the
 * guard as the lab's runner user. Every escape a job tries through the engine is refused or lands
 * inside the engine's own namespaces, and checks from outside find the host unchanged; a second
 * job's engine sees nothing of the first; release leaves nothing for verify to find.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { engineLayout } from '../../../src/engine/rootless-engine.js';
import { dockerCli, dockerPolicy, dockerTry, guardCtx, importBusybox, makeJob, openTun } from './fixture.js';

let lab: Lab;
let restoreTun: () => Promise<void>;
let guard: EngineGuard;
const policy = dockerPolicy({ mode: 'isolated' });

/** Host places a job reaching root would write; each is fingerprinted before and after. */
const HOST_PLACES = ['/etc/cron.d', '/usr/local/bin', '/root/.ssh', '/etc/sudoers.d', '/etc/ld.so.preload'];

/** Mode, owner and content hash of each place (names one level deep for directories). */
async function fingerprint(places: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of places) {
    const h = createHash('sha256');
    const st = await fsp.lstat(p).catch(() => undefined);
    h.update(st ? `${st.mode}:${st.uid}:${st.isDirectory() ? '' : st.size}` : 'absent');
    // The agent's own per-job sudo grants come and go with other suites running on this machine.
    const others = (e: string): boolean => p === '/etc/sudoers.d' && e.startsWith('runner-warden-job-');
    if (st?.isDirectory()) for (const e of (await fsp.readdir(p)).sort()) if (!others(e)) h.update(`  ${e}\n`);
    if (st?.isFile()) h.update(await fsp.readFile(p));
    out[p] = h.digest('hex');
  }
  return out;
}

before(async () => {
  lab = await createLab('rw-engine-');
  restoreTun = await openTun();
  guard = new EngineGuard({ cgroupParent: 'rw-test-engine', runnerUser: lab.user, jobRoot: path.join(lab.root, 'jobs'), prewarm: true });
});

after(async () => {
  await guard.drain();
  await restoreTun();
  await lab.dispose();
  for (const ctrl of await fsp.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    await fsp.rmdir(path.join('/sys/fs/cgroup', ctrl, 'rw-test-engine')).catch(() => undefined);
  }
});

test('a hostile job gets its escapes refused or contained by its own engine, and the host is unchanged', async () => {
  // The agent's own config and token, and a canary tree, as root-only files in the lab.
  const agentDir = path.join(lab.root, 'etc-runner-warden');
  await fsp.mkdir(path.join(agentDir, 'canary'), { recursive: true, mode: 0o700 });
  await fsp.writeFile(path.join(agentDir, 'token'), 'ghp_agent_token\n', { mode: 0o600 });
  await fsp.writeFile(path.join(agentDir, 'config.yaml'), 'runner: {}\n', { mode: 0o600 });
  await fsp.writeFile(path.join(agentDir, 'canary', 'a'), 'a\n', { mode: 0o644 });
  await fsp.chmod(agentDir, 0o755);
  const places = [
    ...HOST_PLACES,
    agentDir,
    path.join(agentDir, 'canary'),
    path.join(agentDir, 'token'),
    path.join(agentDir, 'config.yaml'),
  ];
  const hostBefore = await fingerprint(places);

  const job = await makeJob(lab);
  const prepared = await guard.prepare(job, policy, guardCtx());
  const socket = engineLayout(job.dir).socket;
  assert.equal(prepared.env?.DOCKER_HOST, `unix://${socket}`);
  const st = await fsp.stat(socket);
  assert.equal(st.uid, lab.user.uid, 'the engine socket belongs to the runner user: the engine runs without root');
  const docker = dockerCli(lab, socket);
  await importBusybox(docker, lab.root, 'job/busybox:1');
  const runIn = (...args: string[]): Promise<{ ok: boolean; out: string }> => dockerTry(docker, 'run', '--rm', ...args);

  // -v /:/host: writes to the host's system places fail or land in the engine's private copy.
  const writes = await runIn(
    '-v',
    '/:/host',
    'job/busybox:1',
    'sh',
    '-c',
    `for p in /host/etc/cron.d/evil /host/usr/local/bin/evil /host/root/.ssh/authorized_keys ${path.join('/host', agentDir, 'token')} ${path.join('/host', agentDir, 'canary', 'a')}; do ` +
      `mkdir -p "$(dirname $p)" 2>/dev/null; echo pwned > "$p" 2>/dev/null && echo "wrote $p"; done; cat /host${path.join(agentDir, 'token')} 2>&1 | head -c 40; true`,
  );
  assert.ok(writes.ok, writes.out);
  assert.doesNotMatch(writes.out, /ghp_agent_token/, 'the agent token must not be readable through the engine');
  // --privileged: root inside the engine's user namespace only; the host's block devices stay closed.
  const priv = await runIn(
    '--privileged',
    '-v',
    '/:/host',
    'job/busybox:1',
    'sh',
    '-c',
    'echo x > /host/usr/local/bin/evil2 && echo wrote; mount -t proc proc /host/proc 2>&1; true',
  );
  assert.doesNotMatch(priv.out, /^wrote$/m, `privileged container wrote into /usr/local/bin: ${priv.out}`);
  // --pid=host: the engine's pid namespace, where neither this test nor the agent exists.
  const pids = await runIn('--pid=host', 'job/busybox:1', 'sh', '-c', 'ls /proc | grep -E "^[0-9]+$" | tr "\\n" " "');
  assert.ok(pids.ok, pids.out);
  assert.ok(!pids.out.split(' ').includes(String(process.pid)), `--pid=host showed the host's processes: ${pids.out}`);
  // --network=host: the engine's network namespace (slirp's tap), not the host's interfaces.
  const hostIfaces = (await fsp.readdir('/sys/class/net')).filter((i) => i !== 'lo');
  const net = await runIn('--network=host', 'job/busybox:1', 'cat', '/proc/net/dev');
  assert.ok(net.ok, net.out);
  for (const i of hostIfaces) assert.doesNotMatch(net.out, new RegExp(`^\\s*${i}:`, 'm'), `--network=host reached host interface ${i}`);
  // --userns=host: uid 0 there is the runner user here; root-owned files stay closed.
  const userns = await runIn(
    '--userns=host',
    '-v',
    `${agentDir}:/agent`,
    'job/busybox:1',
    'sh',
    '-c',
    'cat /agent/token 2>&1; echo x > /agent/canary/a 2>&1; true',
  );
  assert.doesNotMatch(userns.out, /ghp_agent_token/, `--userns=host read the agent token: ${userns.out}`);
  // --cap-add SYS_ADMIN: a mount inside stays inside.
  await runIn(
    '--cap-add',
    'SYS_ADMIN',
    '-v',
    '/etc:/hostetc',
    'job/busybox:1',
    'sh',
    '-c',
    'mount -t tmpfs none /hostetc 2>&1; touch /hostetc/evil 2>&1; true',
  );
  // --device: the node may appear, but the runner user cannot open the host's memory or disks.
  const dev = await runIn('--device', '/dev/mem', 'job/busybox:1', 'sh', '-c', 'head -c 16 /dev/mem >/dev/null && echo read-mem; true');
  assert.doesNotMatch(dev.out, /read-mem/, '--device /dev/mem was readable');
  // A bind of a root engine's socket: the root-only socket cannot be connected through the engine.
  const rootSock = path.join(lab.root, 'root-engine.sock');
  const net2 = await import('node:net');
  let connections = 0;
  const server = net2.createServer((c) => {
    connections++;
    c.destroy();
  });
  await new Promise<void>((r) => server.listen(rootSock, r));
  await fsp.chmod(rootSock, 0o660);
  try {
    const sock = await runIn('-v', `${rootSock}:/docker.sock`, 'job/busybox:1', 'sh', '-c', 'echo GET | nc local:/docker.sock 2>&1; true');
    assert.equal(connections, 0, `the container reached the root engine socket: ${sock.out}`);
  } finally {
    server.close();
  }

  const released = await guard.release(job, policy, guardCtx());
  assert.equal(released.outcome, 'ok', released.reason);
  assert.deepEqual(await guard.verify(job, policy, guardCtx()), [], 'verify finds nothing of the engine after release');
  assert.deepEqual(await fingerprint(places), hostBefore, 'a host place changed, seen from outside');
  for (const p of ['/etc/cron.d/evil', '/usr/local/bin/evil', '/usr/local/bin/evil2', '/etc/evil']) {
    assert.equal(
      await fsp.lstat(p).then(
        () => true,
        () => false,
      ),
      false,
      `${p} exists on the host`,
    );
  }
});

test("job B's engine sees nothing job A left: no trusted-name retag, containers, volumes or networks", async () => {
  const jobA = await makeJob(lab, 'job-a');
  await guard.prepare(jobA, policy, guardCtx());
  const a = dockerCli(lab, engineLayout(jobA.dir).socket);
  await importBusybox(a, lab.root, 'node:20');
  // A poisons the trusted name: a build FROM it, with a marker, tagged as the trusted name.
  const ctxDir = path.join(lab.root, 'poison-ctx');
  await fsp.mkdir(ctxDir, { recursive: true });
  await fsp.writeFile(path.join(ctxDir, 'Dockerfile'), 'FROM node:20\nLABEL poisoned=yes\n');
  await a('build', '-q', '-t', 'node:20', ctxDir);
  await a('volume', 'create', 'a-vol');
  await a('network', 'create', 'a-net');
  await a('run', '-d', '--restart', 'always', '--name', 'a-persist', '--network', 'a-net', '-v', 'a-vol:/data', 'node:20', 'sleep', '3600');
  assert.equal(await a('inspect', '-f', '{{.Config.Labels.poisoned}}', 'node:20'), 'yes');
  const releasedA = await guard.release(jobA, policy, guardCtx());
  assert.equal(releasedA.outcome, 'ok', releasedA.reason);
  // As the agent does: B's engine starts when A's host verification begins, and that
  // verification does not take the starting engine for something A left.
  guard.prewarm(policy, guardCtx());
  assert.deepEqual(await guard.verify(jobA, policy, guardCtx()), []);

  const jobB = await makeJob(lab, 'job-b');
  const preparedB = await guard.prepare(jobB, policy, guardCtx());
  assert.match(preparedB.notes?.join() ?? '', /started during the previous verification/, 'B did not get the warm engine');
  const socketB = (preparedB.env?.DOCKER_HOST ?? '').replace(/^unix:\/\//, '');
  assert.match(socketB, /\/jobs\/\.engine-warm-[0-9a-f]+\/engine\/docker\.sock$/);
  assert.equal((await fsp.stat(socketB)).uid, lab.user.uid, 'the warm engine runs as the runner user');
  const b = dockerCli(lab, socketB);
  assert.equal(await b('ps', '-aq'), '', 'B sees A containers');
  assert.equal(await b('volume', 'ls', '-q'), '', 'B sees A volumes');
  assert.deepEqual((await b('network', 'ls', '--format', '{{.Name}}')).split('\n').sort(), ['bridge', 'host', 'none'], 'B sees A networks');
  assert.equal(await b('images', '-q'), '', 'B sees A images (the poisoned node:20)');
  const releasedB = await guard.release(jobB, policy, guardCtx());
  assert.equal(releasedB.outcome, 'ok');
  assert.deepEqual(await guard.verify(jobB, policy, guardCtx()), []);
  assert.equal(
    await fsp.stat(socketB).then(
      () => true,
      () => false,
    ),
    false,
    "B's warm engine socket outlived release",
  );
});

test('a warm engine started for another mirror is not taken: it is stopped and the job gets a cold start', async () => {
  guard.prewarm(policy, guardCtx());
  const job = await makeJob(lab, 'job-c');
  const other = dockerPolicy({ mode: 'isolated', mirror: 'http://127.0.0.1:9' });
  const prepared = await guard.prepare(job, other, guardCtx());
  assert.match(prepared.notes?.join() ?? '', /rootless engine spawned in \d+ ms/, 'the job took an engine started for another mirror');
  assert.equal(prepared.env?.DOCKER_HOST, `unix://${engineLayout(job.dir).socket}`);
  assert.equal((await guard.release(job, other, guardCtx())).outcome, 'ok');
  await guard.drain();
  // SIGKILLed processes may linger a moment until reaped (zombies can do nothing): wait for the rest.
  const alive = (): string => {
    try {
      const ps = execFileSync('ps', ['-o', 'pid=,stat=,comm=', '-u', String(lab.user.uid)], { encoding: 'utf8' });
      return ps
        .split('\n')
        .filter((l) => l.trim() && !/^\s*\d+\s+Z/.test(l))
        .join('\n');
    } catch {
      return ''; // ps exits 1 when the user runs nothing
    }
  };
  let left = alive();
  for (let i = 0; i < 50 && left !== ''; i++) {
    await new Promise((r) => setTimeout(r, 200));
    left = alive();
  }
  assert.equal(left, '', `processes of the runner user outlived the stopped warm engine: ${left}`);
  const warmDirs = (await fsp.readdir(path.join(lab.root, 'jobs'))).filter((n) => n.startsWith('.engine-warm-'));
  for (const d of warmDirs)
    assert.equal(
      await fsp.stat(path.join(lab.root, 'jobs', d, 'engine')).then(
        () => true,
        () => false,
      ),
      false,
      `warm engine directory ${d} left`,
    );
});
