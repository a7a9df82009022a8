/**
 * The image cache's pull figure and its floor, each by a new job's engine (EngineGuard.prepare,
 * then its first answer awaited before the clock starts, so no engine start is in a pull):
 *
 *   first    pull of a 50 MB image through a cold mirror whose upstream is paced at 25 MB/s
 *   second   the same pull by the next job, through the now warm mirror (target: first ≥ 5× second)
 *   floor    the same pull straight from a local registry holding the image (the mirror setting
 *            pointed at the registry itself: no mirror, no pacing, no front) — the least a pull
 *            costs a fresh engine on this host
 *   load     `docker load` of the same image from a file (no registry, no network): the engine's
 *            own writing and unpacking
 *   serve    the warm mirror sending the layer to the host (no engine)
 *   tiny     the floor for a 1 KB image: what a pull costs a fresh engine whatever the size
 *   tiny2    then another 1 KB image in that same engine: a pull once the engine has pulled once
 *
 * Rounds alternate the kinds so that a machine whose load drifts moves all of them alike; each
 * round uses a fresh mirror store. Prints medians, the ratio against the target, and the best
 * ratio a perfect mirror could give with this engine (first / floor).
 *
 * `drivers`: the engine's storage driver, vfs against overlay2, alternating which goes first
 * round by round; for each, a fresh mirror, then by new engines of that driver: the first pull
 * (cold mirror), the second pull (warm mirror), and two `docker run --rm` of the pulled image
 * (50 MB layer plus busybox: container create, start, exit and removal).
 *
 *   node --import tsx bench/mirror.ts [rounds=3] [drivers]
 *
 * Needs root (it makes a throwaway runner user) and makes /dev/net/tun 0666 while it runs.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { EngineGuard } from '../src/engine/engine-guard.js';
import type { StorageDriver } from '../src/engine/rootless-engine.js';
import type { RegistryMirror } from '../src/engine/mirror.js';
import { DEFAULT_POLICY, type Policy } from '../src/policy/types.js';
import type { GuardJob } from '../src/lib/job-guard.js';
import { pushImage, startMirror, startUpstream } from './registry-upstream.js';
import { answeringSocket, benchGuardContext, docker, makeEngineLab, median, timedDocker } from './lib/engine-lab.js';

/** A remote registry's bandwidth as seen from a cloud VM pulling from Docker Hub: 25 MB/s. */
const UPSTREAM_BYTES_PER_SECOND = 25 * 1024 * 1024;
const IMAGE_BYTES = 50 * 1024 * 1024;
const CGROUP_PARENT = 'rw-bench-mirror';
/** A fresh engine answers within seconds; a minute means it failed, and the bench says so. */
const ENGINE_ANSWER_TIMEOUT_MS = 60_000;

const execFileP = promisify(execFile);
const out = (s: string): void => console.log(s);
const ms = (n: number): string => `${(n / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 3);
  const lab = await makeEngineLab('mirror', 'rwm', CGROUP_PARENT);
  const { root, name, uid, gid } = lab;
  let n = 0;
  const ctx = benchGuardContext();
  const guard = new EngineGuard({ cgroupParent: CGROUP_PARENT });
  const guards: Record<StorageDriver, EngineGuard> = {
    vfs: new EngineGuard({ cgroupParent: CGROUP_PARENT, storageDriver: 'vfs' }),
    overlay2: new EngineGuard({ cgroupParent: CGROUP_PARENT, storageDriver: 'overlay2' }),
  };
  const base: Policy = structuredClone(DEFAULT_POLICY);
  base.docker.mode = 'isolated';
  const upstream = await startUpstream(path.join(root, 'up'), UPSTREAM_BYTES_PER_SECOND);
  const figures: Record<'first' | 'second' | 'floor' | 'load' | 'serve' | 'tiny' | 'tiny2', number[]> = {
    first: [],
    second: [],
    floor: [],
    load: [],
    serve: [],
    tiny: [],
    tiny2: [],
  };
  try {
    const { layer } = await pushImage(upstream.url, 'library/big', '1', await bigRootfs(root));
    await pushImage(upstream.url, 'library/tiny', '1', await bigRootfs(root, 1024));
    await pushImage(upstream.url, 'library/tiny', '2', await bigRootfs(root, 1025));
    const saved = path.join(root, 'big.tar');

    /** A new job's engine pointed at `mirror`, answering; `fn` runs against its socket; released after. */
    const withEngine = async <T>(mirror: string, fn: (socket: string) => Promise<T>, g = guard): Promise<T> => {
      const dir = path.join(root, 'jobs', `job-${++n}`);
      await fsp.mkdir(dir, { mode: 0o711 });
      const job: GuardJob = {
        key: `mirror-${n}-${name}`,
        dir,
        user: { name, uid, gid, home: path.join(root, name) },
        runnerRoot: root,
        stateDir: root,
      };
      const policy = structuredClone(base);
      policy.docker.mirror = mirror;
      const prepared = await g.prepare(job, policy, ctx);
      const socket = await answeringSocket(prepared.env?.DOCKER_HOST, ENGINE_ANSWER_TIMEOUT_MS);
      try {
        return await fn(socket);
      } finally {
        await g.release(job, policy, ctx);
      }
    };
    const timed = timedDocker;

    const newMirror = (dir: string): Promise<RegistryMirror> => startMirror(path.join(root, dir, 'cache'), upstream.url);
    if (process.argv[3] === 'drivers') {
      // Straight to the registry: the front's idle keep-alive can close while the rootfs is made.
      await pushImage(upstream.registryUrl, 'library/run', '1', await bigRootfs(root, IMAGE_BYTES, true));
      await driverFigures(rounds, newMirror, (d, mirror, fn) => withEngine(mirror, fn, guards[d]), timed);
      return;
    }
    for (let round = 0; round < rounds; round++) {
      const mirror = await newMirror(`mirror-${round}`);
      try {
        const first = await withEngine(mirror.url, (s) => timed(s, 'pull', '-q', 'big:1'));
        const second = await withEngine(mirror.url, async (s) => {
          const t = await timed(s, 'pull', '-q', 'big:1');
          if (round === 0) await docker(s, 'save', '-o', saved, 'big:1');
          return t;
        });
        const floor = await withEngine(upstream.registryUrl, (s) => timed(s, 'pull', '-q', 'big:1'));
        const load = await withEngine(mirror.url, (s) => timed(s, 'load', '-q', '-i', saved));
        // curl, not fetch: Node's fetch buffering 50 MB took 1-2 s here, curl 0.2 s.
        const t = performance.now();
        const { stdout: served } = await execFileP('curl', [
          '-sf',
          '-o',
          '/dev/null',
          '-w',
          '%{size_download}',
          `${mirror.url}/v2/library/big/blobs/${layer}`,
        ]);
        const serve = performance.now() - t;
        if (Number(served) < IMAGE_BYTES) throw new Error(`the mirror served ${served} bytes of the layer`);
        const [tiny, tiny2] = await withEngine(upstream.registryUrl, async (s) => [
          await timed(s, 'pull', '-q', 'tiny:1'),
          await timed(s, 'pull', '-q', 'tiny:2'),
        ]);
        figures.first.push(first);
        figures.second.push(second);
        figures.floor.push(floor);
        figures.load.push(load);
        figures.serve.push(serve);
        figures.tiny.push(tiny);
        figures.tiny2.push(tiny2);
        out(
          `round ${round + 1}: first ${ms(first)}, second ${ms(second)}, floor ${ms(floor)}, load ${ms(load)}, serve ${ms(serve)}, tiny floor ${ms(tiny)}, then another ${ms(tiny2)}  (load average ${os.loadavg()[0]?.toFixed(1)})`,
        );
        await guard.drain();
      } finally {
        await mirror.stop();
      }
    }
    const [first, second, floor, load, serve, tiny, tiny2] = (['first', 'second', 'floor', 'load', 'serve', 'tiny', 'tiny2'] as const).map(
      (k) => median(figures[k]),
    ) as [number, number, number, number, number, number, number];
    out(`\n50 MB image (one incompressible layer), medians of ${rounds} rounds, each pull by a new job's engine already answering:`);
    out(`  first pull through a cold mirror (upstream paced at ${UPSTREAM_BYTES_PER_SECOND / 1024 / 1024} MB/s): ${ms(first)}`);
    out(
      `  second pull through the warm mirror:                            ${ms(second)}  = ${(first / second).toFixed(1)}x  (target >= 5x)`,
    );
    out(
      `  floor: the same pull from a local registry, no mirror:          ${ms(floor)}  (second / floor = ${(second / floor).toFixed(2)})`,
    );
    out(`  best ratio any cache could give this engine (first / floor):   ${(first / floor).toFixed(1)}x`);
    out(`  the engine loading the same image from a file (no network):    ${ms(load)}`);
    out(`  the warm mirror sending the layer to the host (no engine):      ${ms(serve)}`);
    out(`  floor for a 1 KB image (what a pull costs whatever its size):   ${ms(tiny)}`);
    out(`  then another 1 KB image in the same engine (its second pull):   ${ms(tiny2)}`);
  } finally {
    await guard.drain();
    for (const g of Object.values(guards)) await g.drain();
    await upstream.stop();
    await lab.dispose();
  }
}

/**
 * vfs against overlay2, n rounds, the order alternating: each driver gets a fresh mirror, then
 * new engines of its own for the first pull, the second pull and two runs of the image.
 */
async function driverFigures(
  rounds: number,
  newMirror: (dir: string) => Promise<RegistryMirror>,
  withEngine: <T>(d: StorageDriver, mirror: string, fn: (socket: string) => Promise<T>) => Promise<T>,
  timed: (socket: string, ...args: string[]) => Promise<number>,
): Promise<void> {
  const drivers: StorageDriver[] = ['vfs', 'overlay2'];
  const kinds = ['first', 'second', 'run1', 'run2'] as const;
  const f = Object.fromEntries(drivers.map((d) => [d, Object.fromEntries(kinds.map((k) => [k, [] as number[]]))])) as Record<
    StorageDriver,
    Record<(typeof kinds)[number], number[]>
  >;
  const loads: number[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const d of round % 2 === 0 ? drivers : [...drivers].reverse()) {
      const mirror = await newMirror(`drivers-${round}-${d}`);
      try {
        const first = await withEngine(d, mirror.url, (s) => timed(s, 'pull', '-q', 'run:1'));
        const [second, run1, run2] = await withEngine(d, mirror.url, async (s) => {
          // The figure is the driver's only if the engine runs it (dockerd does not fall back by itself).
          const used = await docker(s, 'info', '-f', '{{.Driver}}');
          if (used !== d) throw new Error(`the engine runs ${used}, not ${d}`);
          return [
            await timed(s, 'pull', '-q', 'run:1'),
            await timed(s, 'run', '--rm', '--network=none', 'run:1', '/bin/busybox', 'true'),
            await timed(s, 'run', '--rm', '--network=none', 'run:1', '/bin/busybox', 'true'),
          ];
        });
        const x = f[d];
        x.first.push(first);
        x.second.push(second);
        x.run1.push(run1);
        x.run2.push(run2);
        loads.push(os.loadavg()[0] ?? NaN);
        out(
          `round ${round + 1} ${d.padEnd(8)}: first ${ms(first)}, second ${ms(second)} (${(first / second).toFixed(1)}x), run ${ms(run1)}, run again ${ms(run2)}  (load average ${loads.at(-1)?.toFixed(1)})`,
        );
      } finally {
        await mirror.stop();
      }
    }
  }
  out(
    `\nstorage driver, 50 MB image + busybox, medians of ${rounds} rounds (load average ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}):`,
  );
  for (const d of drivers) {
    const m = Object.fromEntries(kinds.map((k) => [k, median(f[d][k])])) as Record<(typeof kinds)[number], number>;
    out(
      `  ${d.padEnd(8)} first ${ms(m.first)}, second ${ms(m.second)} (first/second ${(m.first / m.second).toFixed(1)}x), run ${ms(m.run1)}, run again ${ms(m.run2)}`,
    );
  }
  const r = (k: (typeof kinds)[number]): string => (median(f.vfs[k]) / median(f.overlay2[k])).toFixed(2);
  out(`  vfs / overlay2: first ${r('first')}x, second ${r('second')}x, run ${r('run1')}x, run again ${r('run2')}x`);
}

async function bigRootfs(root: string, bytes = IMAGE_BYTES, runnable = false): Promise<Buffer> {
  const dir = path.join(root, `rootfs-${bytes}${runnable ? '-run' : ''}`);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'blob'), randomBytes(bytes));
  if (runnable) {
    // busybox-static: a container of the image can run (`/bin/busybox true`).
    await fsp.mkdir(path.join(dir, 'bin'));
    await fsp.copyFile('/bin/busybox', path.join(dir, 'bin', 'busybox'));
  }
  return execFileSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: IMAGE_BYTES * 2 });
}

await main();
