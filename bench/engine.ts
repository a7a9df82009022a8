/**
 * The per-job container engine's figures, each beside a baseline measured in the same run:
 *
 * 1. start to first API answer of the job's rootless engine (EngineGuard.prepare, then the
 *    first answer on its activated socket), median and p95 (target ≤ 1.5 s), and prepare's own
 *    time (what the listener waits), beside a rootful dockerd with its own data root (the
 *    baseline) and a rootless engine on rootlesskit's host network (no /dev/net/tun, no bridges);
 * 2. teardown of an engine holding 20 containers, 10 volumes, 5 networks: EngineGuard.release
 *    (the ready path, target ≤ 2 s) beside removing the same objects through the Engine API;
 * 3. a 50 MB image pulled through the mirror twice, by two jobs' engines: the second pull beside
 *    the first (target ≥ 5×). The upstream is paced at UPSTREAM_BYTES_PER_SECOND to stand in for
 *    a remote registry (the model is printed with the figure); the raw loopback figure is printed
 *    too, and the second pull's parts (mirror serving, extraction).
 * 4. options: the engine's start with each start-up option measured in the same run, alternating.
 *
 * The ready section (job end → next listener) is in bench/engine-ready.ts.
 *
 *   node --import tsx bench/engine.ts [starts=7] [sections=start,options,ready,teardown,pull] [files in _work=200000] [ready paths=before,cold,warm]
 *
 * Needs root (it makes a throwaway runner user) and makes /dev/net/tun 0666 while it runs.
 */
import { execFileSync, spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { EngineGuard } from '../src/engine/engine-guard.js';
import {
  createEngineDir,
  engineArgs,
  engineLayout,
  startEngine,
  spawnEngine,
  ping,
  type EngineLayout,
} from '../src/engine/rootless-engine.js';
import { RegistryMirror } from '../src/engine/mirror.js';
import { createProcessContainer } from '../src/lib/cgroup.js';
import { signalGroup } from '../src/lib/process.js';
import { createLogger } from '../src/lib/log.js';
import { DEFAULT_POLICY, type Policy } from '../src/policy/types.js';
import type { GuardJob } from '../src/lib/job-guard.js';
import { freePort, pushImage, startUpstream } from './registry-upstream.js';
import { readyFigures } from './engine-ready.js';
import { docker, makeEngineLab } from './lib/engine-lab.js';

/** A remote registry's bandwidth as seen from a cloud VM pulling from Docker Hub: 25 MB/s. */
const UPSTREAM_BYTES_PER_SECOND = 25 * 1024 * 1024;
const IMAGE_BYTES = 50 * 1024 * 1024;
const CGROUP_PARENT = 'rw-bench-engine';

const out = (s: string): void => console.log(s);
const ms = (n: number): string => `${(n / 1000).toFixed(2)} s`;
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

async function main(): Promise<void> {
  const starts = Number(process.argv[2] ?? 7);
  const sections = new Set((process.argv[3] ?? 'start,options,ready,teardown,pull').split(','));
  const lab = await makeEngineLab('engine', 'rwb', CGROUP_PARENT);
  const { root, name, uid, gid } = lab;
  let n = 0;
  const newJob = async (): Promise<GuardJob> => {
    const dir = path.join(root, 'jobs', `job-${++n}`);
    await fsp.mkdir(dir, { mode: 0o711 });
    return { key: `bench-${n}-${name}`, dir, user: { name, uid, gid, home: path.join(root, name) }, runnerRoot: root, stateDir: root };
  };
  // Warnings (a warm engine that did not start, say) go to stderr: a figure without them would hide why.
  const ctx = {
    log: createLogger({ level: 'warn', destination: { write: (l: string) => void process.stderr.write(l) } }),
    // A fresh ten minutes for each call: one signal for the whole run aborted the ready section's later rounds.
    get signal(): AbortSignal {
      return AbortSignal.timeout(600_000);
    },
  };
  const guard = new EngineGuard({ cgroupParent: CGROUP_PARENT });
  const policy: Policy = structuredClone(DEFAULT_POLICY);
  policy.docker.mode = 'isolated';
  try {
    if (sections.has('start')) await startFigures();
    if (sections.has('options')) await optionFigures();
    if (sections.has('ready')) await readyFigures({ root, name, uid, gid, policy, ctx, starts, cgroupParent: CGROUP_PARENT });
    if (sections.has('teardown')) await teardownFigures();
    if (sections.has('pull')) await pullFigures();
  } finally {
    await cleanup();
  }

  /** 1. start to first answer */
  async function startFigures(): Promise<void> {
    const rootless: number[] = [];
    const prepares: number[] = [];
    const hostNet: number[] = [];
    const rootful: number[] = [];
    for (let i = 0; i < starts; i++) {
      const job = await newJob();
      let startMs = NaN;
      const g = new EngineGuard({ cgroupParent: CGROUP_PARENT, onStarted: (m) => (startMs = m) });
      const t = performance.now();
      await g.prepare(job, policy, ctx);
      prepares.push(performance.now() - t);
      if (!(await ping(engineLayout(job.dir).socket, 60_000))) throw new Error('the engine did not answer');
      while (Number.isNaN(startMs)) await new Promise((r) => setTimeout(r, 5));
      rootless.push(startMs);
      await g.release(job, policy, ctx);
      await g.drain();
      hostNet.push(await rootlessHostNet(await newJob()));
      rootful.push(await rootfulStart(path.join(root, `rootful-${i}`)));
    }
    out(`engine start to first API answer (n=${starts}):`);
    out(`  rootless, slirp4netns (the guard):  median ${ms(pct(rootless, 50))}, p95 ${ms(pct(rootless, 95))}  (target <= 1.50 s)`);
    out(
      `  of which prepare (what the listener waits; the socket queues calls): median ${ms(pct(prepares, 50))}, p95 ${ms(pct(prepares, 95))}`,
    );
    out(`  rootless, rootlesskit --net=host:   median ${ms(pct(hostNet, 50))}, p95 ${ms(pct(hostNet, 95))}  (no tun, no bridge networks)`);
    out(
      `  baseline rootful dockerd:           median ${ms(pct(rootful, 50))}, p95 ${ms(pct(rootful, 95))}  (rootless/rootful = ${(pct(rootless, 50) / pct(rootful, 50)).toFixed(2)}x)`,
    );
  }

  /**
   * 4. where the start goes and what each option buys: the engine as the guard starts it ("now"),
   * the arguments before this tuning ("before": rootlesskit's getsubids runs, dockerd's own
   * netfilter set-up) and single changes, alternating in one run; then one start's phases from
   * its log (spawn → rootlesskit's child → dockerd → containerd → first answer).
   */
  async function optionFigures(): Promise<void> {
    const child = (a: string): boolean => a.startsWith('rm -f /run/docker');
    const variants: Record<string, (a: string[], layout: EngineLayout) => string[]> = {
      now: (a) => a,
      before: (a) =>
        a
          .filter((x) => x !== '--subid-source=static' && x !== '--iptables=false' && x !== '--ip6tables=false')
          .map((x) => (child(x) ? x.replace(/iptables [^;]*; /, '') : x)),
      'before + static subids': (a) =>
        a
          .filter((x) => x !== '--iptables=false' && x !== '--ip6tables=false')
          .map((x) => (child(x) ? x.replace(/iptables [^;]*; /, '') : x)),
      'now + overlay2': (a) => a.map((x) => (x === '--storage-driver=vfs' ? '--storage-driver=overlay2' : x)),
      'now + containerd beside': (_a, layout) => engineArgs({ layout, hostLoopback: false, containerd: 'beside' }),
      'now + log-level warn': (a) => [...a, '--log-level=warn'],
      'now, slirp4netns unsandboxed': (a) =>
        a.filter((x) => !x.startsWith('--slirp4netns-sandbox') && !x.startsWith('--slirp4netns-seccomp')),
    };
    const times: Record<string, number[]> = {};
    for (let i = 0; i < starts; i++) {
      for (const [label, f] of Object.entries(variants)) (times[label] ??= []).push((await rawStart(f)).ms);
    }
    out(`engine start by option, alternating (n=${starts} each):`);
    for (const [label, xs] of Object.entries(times)) {
      out(
        `  ${label.padEnd(24)} median ${ms(pct(xs, 50))}, p95 ${ms(pct(xs, 95))}  (${(pct(xs, 50) / pct(times.now ?? [], 50)).toFixed(2)}x now)`,
      );
    }
    const marked = await rawStart((a) => a.map((x) => (child(x) ? `echo "CHILD $(date +%s%N)"; ${x}` : x)));
    const at = (re: RegExp): string => {
      const line = marked.log.split('\n').find((l) => re.test(l));
      const m = line && (/^CHILD (\d+)/.exec(line) ?? /time="([^"]+)"/.exec(line));
      if (!m) return '?';
      const when = m[1]?.match(/^\d+$/) ? Number(m[1]) / 1e6 : Date.parse(m[1] as string);
      return `${(when - marked.t0).toFixed(0)} ms`;
    };
    out(`one start's phases (ms after spawn; first answer at ${marked.ms} ms):`);
    out(`  rootlesskit's child runs (user+mount+net+pid namespaces, slirp4netns, /etc and /run copied up): ${at(/^CHILD /)}`);
    out(`  dockerd logs "Starting up": ${at(/Starting up/)}; containerd booted: ${at(/containerd successfully booted/)}`);
    out(
      `  "Loading containers: start": ${at(/Loading containers: start/)}; "Daemon has completed initialization": ${at(/completed initialization/)}`,
    );
  }

  /** A rootless engine started by hand with `transform`ed arguments: time to first answer, its log. */
  async function rawStart(transform: (args: string[], layout: EngineLayout) => string[]): Promise<{ ms: number; t0: number; log: string }> {
    const job = await newJob();
    const layout = engineLayout(job.dir);
    await createEngineDir(layout, job.user);
    const { child, spawnedAt: t0 } = await spawnEngine({
      layout,
      user: job.user,
      rootlesskit: '/usr/bin/rootlesskit',
      args: transform(engineArgs({ layout, hostLoopback: false }), layout),
      path: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    });
    // spawnEngine unrefs the child (the agent never waits for it); the bench does.
    child.ref();
    const exited = new Promise((r) => child.once('exit', r));
    // The activated socket queues the ping until the engine serves it (or closes when it dies).
    if (!(await ping(layout.socket, 60_000))) throw new Error(`engine did not start: ${await fsp.readFile(layout.log, 'utf8')}`);
    const elapsed = Date.now() - t0;
    if (child.pid) signalGroup(child.pid, 'SIGKILL');
    await exited;
    try {
      execFileSync('pkill', ['-KILL', '-U', String(uid)]);
    } catch {
      // nothing left
    }
    return { ms: elapsed, t0, log: await fsp.readFile(layout.log, 'utf8') };
  }

  /** 2. teardown with 20 containers, 10 volumes, 5 networks */
  async function teardownFigures(): Promise<void> {
    const busybox = await busyboxTar(root);
    const fill = async (socket: string): Promise<void> => {
      await docker(socket, 'import', '-c', 'CMD ["/bin/sh"]', busybox, 'bench/busybox:1');
      for (let i = 0; i < 5; i++) await docker(socket, 'network', 'create', `net${i}`);
      for (let i = 0; i < 10; i++) await docker(socket, 'volume', 'create', `vol${i}`);
      for (let i = 0; i < 20; i++)
        await docker(
          socket,
          'run',
          '-d',
          '--restart',
          'always',
          '--network',
          `net${i % 5}`,
          '-v',
          `vol${i % 10}:/data`,
          'bench/busybox:1',
          'sleep',
          '3600',
        );
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
    out(
      `  EngineGuard.release (ready path): ${ms(releaseMs)} (${released.outcome}, verify: ${findings.length} findings)  (target <= 2.00 s)`,
    );
    out(`  background deletion of its data root: ${ms(deleteMs)}, off the ready path`);
    out(`  baseline: removing the same objects through the engine's API: ${ms(apiMs)} (= ${(apiMs / releaseMs).toFixed(1)}x release)`);
  }

  /**
   * 3. a 50 MB image, first and second pull through the mirror, each by a new job's engine. What
   * bounds the ratio is shown beside it: the mirror serving the layer to the host (no engine), and
   * the second engine's extraction alone (`docker load` of the same image, no network).
   */
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
      const { layer } = await pushImage(upstream.url, 'library/big', '1', await bigRootfs(root));
      const pulls: number[] = [];
      let extractMs = NaN;
      const mirrored: Policy = structuredClone(policy);
      mirrored.docker.mirror = mirror.url;
      for (let i = 0; i < 2; i++) {
        const j = await newJob();
        const prepared = await guard.prepare(j, mirrored, ctx);
        const socket = (prepared.env?.DOCKER_HOST ?? '').replace(/^unix:\/\//, '');
        t = performance.now();
        await docker(socket, 'pull', '-q', 'big:1');
        pulls.push(performance.now() - t);
        if (i === 1) {
          const saved = path.join(root, `big-${pace ?? 'unpaced'}.tar`);
          await docker(socket, 'save', '-o', saved, 'big:1');
          await docker(socket, 'rmi', 'big:1');
          t = performance.now();
          await docker(socket, 'load', '-q', '-i', saved);
          extractMs = performance.now() - t;
        }
        await guard.release(j, mirrored, ctx);
      }
      t = performance.now();
      const blob = await fetch(`${mirror.url}/v2/library/big/blobs/${layer}`);
      const served = (await blob.arrayBuffer()).byteLength;
      const serveMs = performance.now() - t;
      await guard.drain();
      await mirror.stop();
      await upstream.stop();
      const [first = NaN, second = NaN] = pulls;
      const label = pace
        ? `model: the upstream serves blob bodies at ${pace / 1024 / 1024} MB/s (a cloud VM pulling from Docker Hub; no added latency), everything else on loopback`
        : 'raw: upstream on loopback, unpaced';
      out(`50 MB image through the mirror (${label}):`);
      out(`  first pull ${ms(first)}, second pull ${ms(second)} = ${(first / second).toFixed(1)}x${pace ? '  (target >= 5x)' : ''}`);
      out(
        `  beside the second pull: the same image loaded from a file into the same engine (extraction, no network) ${ms(extractMs)}; the mirror serving the ${(served / 1024 / 1024).toFixed(0)} MB layer to the host, no engine ${ms(serveMs)}`,
      );
    }
  }

  async function cleanup(): Promise<void> {
    await guard.drain();
    await lab.dispose();
  }

  /** A rootless engine on rootlesskit's host network: start time, then stopped. */
  async function rootlessHostNet(job: GuardJob): Promise<number> {
    const layout = engineLayout(job.dir);
    await createEngineDir(layout, job.user);
    const container = await createProcessContainer(`hostnet-${job.key}`, { parent: CGROUP_PARENT });
    const started = await startEngine(
      {
        layout,
        user: job.user,
        rootlesskit: '/usr/bin/rootlesskit',
        path: '/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        hostLoopback: true,
        net: 'host',
        container,
        signal: ctx.signal,
      },
      async () => undefined,
    );
    const startMs = await started.ready;
    signalGroup(started.pid, 'SIGKILL');
    await container.remove();
    return startMs;
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
    [
      `--data-root=${dir}/data`,
      `--exec-root=${dir}/exec`,
      `--host=unix://${socket}`,
      `--pidfile=${dir}/pid`,
      '--storage-driver=vfs',
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      '--ip-forward=false',
      '--ip-masq=false',
      `--config-file=${dir}/daemon.json`,
    ],
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
