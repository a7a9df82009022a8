/**
 * The per-job container engine's figures, each beside a baseline measured in the same run:
 *
 * 1. start to first API answer of the job's rootless engine (EngineGuard.prepare), median and
 *    p95 (target ≤ 1.5 s), beside a rootful dockerd with its own data root (the baseline) and a
 *    rootless engine on rootlesskit's host network (no /dev/net/tun, no bridges);
 * 2. teardown of an engine holding 20 containers, 10 volumes, 5 networks: EngineGuard.release
 *    (the ready path, target ≤ 2 s) beside removing the same objects through the Engine API;
 * 3. a 50 MB image pulled through the mirror twice, by two jobs' engines: the second pull beside
 *    the first (target ≥ 5×). The upstream is paced at UPSTREAM_BYTES_PER_SECOND to stand in for
 *    a remote registry; the unpaced figure is printed too.
 *
 *   node --import tsx bench/engine.ts [starts=7] [sections=start,teardown,pull]
 *
 * Needs root (it makes a throwaway runner user) and makes /dev/net/tun 0666 while it runs.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { EngineGuard } from '../src/engine/engine-guard.js';
import { createEngineDir, engineLayout, startEngine, ping } from '../src/engine/rootless-engine.js';
import { RegistryMirror } from '../src/engine/mirror.js';
import { createProcessContainer } from '../src/lib/cgroup.js';
import { signalGroup } from '../src/lib/process.js';
import { silentLogger } from '../src/lib/log.js';
import { DEFAULT_POLICY, type Policy } from '../src/policy/types.js';
import type { GuardJob } from '../src/lib/job-guard.js';
import { freePort, pushImage, startUpstream } from './registry-upstream.js';

/** A remote registry's bandwidth as seen from a cloud VM pulling from Docker Hub: 25 MB/s. */
const UPSTREAM_BYTES_PER_SECOND = 25 * 1024 * 1024;
const IMAGE_BYTES = 50 * 1024 * 1024;
const CGROUP_PARENT = 'rw-bench-engine';

const execFileP = promisify(execFile);
const out = (s: string): void => console.log(s);
const ms = (n: number): string => `${(n / 1000).toFixed(2)} s`;
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

/** The docker CLI against one engine; asynchronous, so the in-process paced upstream keeps serving. */
async function docker(socket: string, ...args: string[]): Promise<string> {
  const { stdout } = await execFileP('docker', args, { env: { PATH: process.env.PATH, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: '/nonexistent' }, encoding: 'utf8', maxBuffer: 1 << 26 });
  return stdout.trim();
}

async function main(): Promise<void> {
  const starts = Number(process.argv[2] ?? 7);
  const sections = new Set((process.argv[3] ?? 'start,teardown,pull').split(','));
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'rw-bench-engine-'));
  await fsp.chmod(root, 0o755);
  const name = `rwb${randomBytes(3).toString('hex')}`;
  execFileSync('useradd', ['-m', '-d', path.join(root, name), '-s', '/bin/sh', name]);
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }));
  const tunMode = (await fsp.stat('/dev/net/tun')).mode & 0o777;
  await fsp.chmod('/dev/net/tun', 0o666);
  await fsp.mkdir(path.join(root, 'jobs'), { mode: 0o711 });
  let n = 0;
  const newJob = async (): Promise<GuardJob> => {
    const dir = path.join(root, 'jobs', `job-${++n}`);
    await fsp.mkdir(dir, { mode: 0o711 });
    return { key: `bench-${n}`, dir, user: { name, uid, gid, home: path.join(root, name) }, runnerRoot: root, stateDir: root };
  };
  const ctx = { log: silentLogger(), signal: AbortSignal.timeout(600_000) };
  const guard = new EngineGuard({ cgroupParent: CGROUP_PARENT });
  const policy: Policy = structuredClone(DEFAULT_POLICY);
  policy.docker.mode = 'isolated';
  try {
    if (sections.has('start')) await startFigures();
    if (sections.has('teardown')) await teardownFigures();
    if (sections.has('pull')) await pullFigures();
  } finally {
    await cleanup();
  }

  /** 1. start to first answer */
  async function startFigures(): Promise<void> {
    const rootless: number[] = [];
    const hostNet: number[] = [];
    const rootful: number[] = [];
    for (let i = 0; i < starts; i++) {
      const job = await newJob();
      let startMs = NaN;
      const g = new EngineGuard({ cgroupParent: CGROUP_PARENT, onStarted: (m) => (startMs = m) });
      await g.prepare(job, policy, ctx);
      rootless.push(startMs);
      await g.release(job, policy, ctx);
      await g.drain();
      hostNet.push(await rootlessHostNet(await newJob()));
      rootful.push(await rootfulStart(path.join(root, `rootful-${i}`)));
    }
    out(`engine start to first API answer (n=${starts}):`);
    out(`  rootless, slirp4netns (the guard):  median ${ms(pct(rootless, 50))}, p95 ${ms(pct(rootless, 95))}  (target <= 1.50 s)`);
    out(`  rootless, rootlesskit --net=host:   median ${ms(pct(hostNet, 50))}, p95 ${ms(pct(hostNet, 95))}  (no tun, no bridge networks)`);
    out(`  baseline rootful dockerd:           median ${ms(pct(rootful, 50))}, p95 ${ms(pct(rootful, 95))}  (rootless/rootful = ${(pct(rootless, 50) / pct(rootful, 50)).toFixed(2)}x)`);

  }

  /** 2. teardown with 20 containers, 10 volumes, 5 networks */
  async function teardownFigures(): Promise<void> {
    const busybox = await busyboxTar(root);
    const fill = async (socket: string): Promise<void> => {
      await docker(socket, 'import', '-c', 'CMD ["/bin/sh"]', busybox, 'bench/busybox:1');
      for (let i = 0; i < 5; i++) await docker(socket, 'network', 'create', `net${i}`);
      for (let i = 0; i < 10; i++) await docker(socket, 'volume', 'create', `vol${i}`);
      for (let i = 0; i < 20; i++) await docker(socket, 'run', '-d', '--restart', 'always', '--network', `net${i % 5}`, '-v', `vol${i % 10}:/data`, 'bench/busybox:1', 'sleep', '3600');
    };
    const apiJob = await newJob();
    await guard.prepare(apiJob, policy, ctx);
    const apiSocket = engineLayout(apiJob.dir).socket;
    await fill(apiSocket);
    let t = performance.now();
    const ids = (await docker(apiSocket, 'ps', '-aq')).split('\n').filter(Boolean);
    await docker(apiSocket, 'rm', '-f', '-v', ...ids);
    await docker(apiSocket, 'volume', 'rm', ...(await docker(apiSocket, 'volume', 'ls', '-q')).split('\n').filter(Boolean));
    await docker(apiSocket, 'network', 'prune', '-f');
    const apiMs = performance.now() - t;
    await guard.release(apiJob, policy, ctx);
    const job = await newJob();
    await guard.prepare(job, policy, ctx);
    await fill(engineLayout(job.dir).socket);
    t = performance.now();
    const released = await guard.release(job, policy, ctx);
    const releaseMs = performance.now() - t;
    t = performance.now();
    await guard.drain();
    const deleteMs = performance.now() - t;
    const findings = await guard.verify(job, policy, ctx);
    out('engine teardown, 20 containers / 10 volumes / 5 networks:');
    out(`  EngineGuard.release (ready path): ${ms(releaseMs)} (${released.outcome}, verify: ${findings.length} findings)  (target <= 2.00 s)`);
    out(`  background deletion of its data root: ${ms(deleteMs)}, off the ready path`);
    out(`  baseline: removing the same objects through the engine's API: ${ms(apiMs)} (= ${(apiMs / releaseMs).toFixed(1)}x release)`);

  }

  /** 3. a 50 MB image, first and second pull through the mirror */
  async function pullFigures(): Promise<void> {
    let t = 0;
    for (const pace of [UPSTREAM_BYTES_PER_SECOND, undefined]) {
      const upstream = await startUpstream(path.join(root, `up-${pace ?? 'unpaced'}`), pace);
      const mirror = new RegistryMirror({
        listen: `127.0.0.1:${await freePort()}`,
        debugListen: `127.0.0.1:${await freePort()}`,
        storage: path.join(root, `mirror-${pace ?? 'unpaced'}`, 'cache'),
        upstream: upstream.url,
        capBytes: 10 << 30,
      });
      await mirror.start();
      await pushImage(upstream.url, 'library/big', '1', await bigRootfs(root));
      const pulls: number[] = [];
      const mirrored: Policy = structuredClone(policy);
      mirrored.docker.mirror = mirror.url;
      for (let i = 0; i < 2; i++) {
        const j = await newJob();
        await guard.prepare(j, mirrored, ctx);
        t = performance.now();
        await docker(engineLayout(j.dir).socket, 'pull', '-q', 'big:1');
        pulls.push(performance.now() - t);
        await guard.release(j, mirrored, ctx);
      }
      await guard.drain();
      await mirror.stop();
      await upstream.stop();
      const [first = NaN, second = NaN] = pulls;
      const label = pace ? `upstream paced at ${pace / 1024 / 1024} MB/s` : 'upstream on loopback, unpaced';
      out(`50 MB image through the mirror (${label}): first ${ms(first)}, second ${ms(second)} = ${(first / second).toFixed(1)}x${pace ? '  (target >= 5x)' : ''}`);
    }
  }

  async function cleanup(): Promise<void> {
    await guard.drain();
    await fsp.chmod('/dev/net/tun', tunMode);
    try {
      execFileSync('pkill', ['-KILL', '-U', String(uid)]);
    } catch {
      // nothing left
    }
    execFileSync('userdel', ['-f', name]);
    await fsp.rm(root, { recursive: true, force: true });
    for (const ctrl of await fsp.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
      await fsp.rmdir(path.join('/sys/fs/cgroup', ctrl, CGROUP_PARENT)).catch(() => undefined);
    }
  }

  /** A rootless engine on rootlesskit's host network: start time, then stopped. */
  async function rootlessHostNet(job: GuardJob): Promise<number> {
    const layout = engineLayout(job.dir);
    await createEngineDir(layout, job.user);
    const container = await createProcessContainer(`hostnet-${job.key}`, { parent: CGROUP_PARENT });
    const started = await startEngine(
      { layout, user: job.user, rootlesskit: '/usr/bin/rootlesskit', path: '/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', hostLoopback: true, net: 'host', container, signal: ctx.signal },
      async () => undefined,
    );
    signalGroup(started.pid, 'SIGKILL');
    await container.remove();
    return started.startMs;
  }
}

/** A rootful dockerd with its own roots and no host network changes: start to first answer. */
async function rootfulStart(dir: string): Promise<number> {
  await fsp.mkdir(dir, { recursive: true });
  const socket = path.join(dir, 'docker.sock');
  await fsp.writeFile(path.join(dir, 'daemon.json'), '{}\n');
  const t = performance.now();
  const child = spawn(
    'dockerd',
    [`--data-root=${dir}/data`, `--exec-root=${dir}/exec`, `--host=unix://${socket}`, `--pidfile=${dir}/pid`, '--storage-driver=vfs', '--iptables=false', '--ip6tables=false', '--bridge=none', '--ip-forward=false', '--ip-masq=false', `--config-file=${dir}/daemon.json`],
    { detached: true, stdio: 'ignore' },
  );
  const exited = new Promise((r) => child.once('exit', r));
  while (!(await ping(socket))) await new Promise((r) => setTimeout(r, 25));
  const elapsed = performance.now() - t;
  if (child.pid) signalGroup(child.pid, 'SIGTERM');
  await exited;
  return elapsed;
}

/** busybox-static as a root filesystem tar. */
async function busyboxTar(root: string): Promise<string> {
  const rootfs = path.join(root, 'busybox-rootfs');
  await fsp.mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await fsp.copyFile('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  for (const app of ['sh', 'sleep']) await fsp.symlink('busybox', path.join(rootfs, 'bin', app)).catch(() => undefined);
  const tar = path.join(root, 'busybox.tar');
  execFileSync('tar', ['-C', rootfs, '-cf', tar, '.']);
  return tar;
}

/** A root filesystem tar holding IMAGE_BYTES of incompressible data. */
async function bigRootfs(root: string): Promise<Buffer> {
  const dir = path.join(root, 'big-rootfs');
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'blob'), randomBytes(IMAGE_BYTES));
  return execFileSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: IMAGE_BYTES * 2 });
}

await main();
