/**
 * Warm images (policy docker.warm) against the image cache's plain second pull, in one run; every
 * pull by a new job's engine (EngineGuard.prepare), on a 50 MB image (one incompressible layer)
 * whose upstream is paced at 25 MB/s:
 *
 *   first    the first job pulls it through a cold cache (its team learns it: docker.warm.learn)
 *   second   the next job, warm images off: its pull through the now warm cache (the existing figure)
 *   warm-up  the next job, warm images on: from its engine's first answer to the end of the
 *            agent's warm pull (by digest): how soon a job's first pull finds the image there
 *   warmed   that job's own `docker pull` after the warm-up finished (target: first >= 5x warmed)
 *   joined   another such job pulling the moment its engine answers (it joins the warm pull)
 *
 * Rounds alternate nothing (each kind needs the one before it) but each round has a fresh cache
 * and a fresh learnt list. Prints medians and the ratios beside the target.
 *
 *   node --import tsx bench/warm-images.ts [rounds=3]
 *
 * Needs root (it makes a throwaway runner user) and makes /dev/net/tun 0666 while it runs.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { EngineGuard } from '../src/engine/engine-guard.js';
import type { WarmPull } from '../src/engine/warm-images.js';
import { DEFAULT_POLICY, type Policy } from '../src/policy/types.js';
import type { GuardJob } from '../src/lib/job-guard.js';
import { pushImage, startMirror, startUpstream } from './registry-upstream.js';
import { answeringSocket, benchGuardContext, makeEngineLab, median, timedDocker } from './lib/engine-lab.js';

/** A remote registry's bandwidth as seen from a cloud VM pulling from Docker Hub: 25 MB/s (as bench/mirror.ts). */
const UPSTREAM_BYTES_PER_SECOND = 25 * 1024 * 1024;
const IMAGE_BYTES = 50 * 1024 * 1024;
const CGROUP_PARENT = 'rw-bench-warm';
/** A fresh engine answers within seconds, a warm pull of 50 MB within a minute; past that the bench says it failed. */
const WAIT_MS = 120_000;

const out = (s: string): void => console.log(s);
const ms = (n: number): string => `${(n / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 3);
  const lab = await makeEngineLab('warm', 'rww', CGROUP_PARENT);
  const { root, name, uid, gid } = lab;
  let n = 0;
  const ctx = benchGuardContext();
  const upstream = await startUpstream(path.join(root, 'up'), UPSTREAM_BYTES_PER_SECOND);
  const f: Record<'first' | 'second' | 'warmup' | 'warmed' | 'joined' | 'joinedWarmup', number[]> = {
    first: [],
    second: [],
    warmup: [],
    warmed: [],
    joined: [],
    joinedWarmup: [],
  };
  const loads: number[] = [];
  try {
    const dir = path.join(root, 'rootfs');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, 'blob'), randomBytes(IMAGE_BYTES));
    await pushImage(upstream.url, 'library/big', '1', execFileSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: IMAGE_BYTES * 2 }));

    /**
     * A new job's engine (team `bench`, its learnt list in `stateDir`), answering; `fn` gets its
     * socket and the time of its first answer; `warm` turns docker.warm.learn on; released after.
     */
    const withEngine = async <T>(
      mirror: string,
      stateDir: string,
      warm: boolean,
      fn: (socket: string, answeredAt: number, warmed: Promise<WarmPull>) => Promise<T>,
    ): Promise<T> => {
      const jobDir = path.join(root, 'jobs', `job-${++n}`);
      await fsp.mkdir(jobDir, { mode: 0o711 });
      const job: GuardJob = {
        key: `warm-${n}-${name}`,
        dir: jobDir,
        user: { name, uid, gid, home: path.join(root, name) },
        runnerRoot: root,
        stateDir,
      };
      const policy: Policy = structuredClone(DEFAULT_POLICY);
      policy.team = 'bench';
      policy.docker.mode = 'isolated';
      policy.docker.mirror = mirror;
      policy.docker.warm = { images: [], learn: warm, max: 5 };
      let pulled: (p: WarmPull) => void = () => undefined;
      const warmed = new Promise<WarmPull>((r) => (pulled = r));
      const guard = new EngineGuard({ cgroupParent: CGROUP_PARENT, onWarmPull: (p) => pulled(p) });
      const prepared = await guard.prepare(job, policy, ctx);
      const socket = await answeringSocket(prepared.env?.DOCKER_HOST, WAIT_MS);
      const answeredAt = performance.now();
      try {
        return await fn(socket, answeredAt, warmed);
      } finally {
        await guard.release(job, policy, ctx);
        await guard.drain();
      }
    };
    const timed = timedDocker;
    const settled = async (warmed: Promise<WarmPull>): Promise<WarmPull> => {
      const p = await Promise.race([warmed, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no warm pull')), WAIT_MS))]);
      if (!p.ok) throw new Error(`the warm pull failed: ${p.error}`);
      return p;
    };

    for (let round = 0; round < rounds; round++) {
      const mirror = await startMirror(path.join(root, `mirror-${round}`, 'cache'), upstream.url);
      const stateDir = path.join(root, `state-${round}`);
      await fsp.mkdir(stateDir, { mode: 0o700 });
      try {
        // The first job's team learns the image at its end (learn on; nothing learnt yet, so nothing warmed).
        const first = await withEngine(mirror.url, stateDir, true, (s) => timed(s, 'pull', '-q', 'big:1'));
        const second = await withEngine(mirror.url, stateDir, false, (s) => timed(s, 'pull', '-q', 'big:1'));
        const [warmup, warmed] = await withEngine(mirror.url, stateDir, true, async (s, _at, w) => {
          const p = await settled(w);
          return [p.afterAnswerMs, await timed(s, 'pull', '-q', 'big:1')];
        });
        const [joined, joinedWarmup] = await withEngine(mirror.url, stateDir, true, async (s, at, w) => {
          await timed(s, 'pull', '-q', 'big:1');
          const done = performance.now() - at;
          return [done, (await settled(w)).afterAnswerMs];
        });
        f.first.push(first);
        f.second.push(second);
        f.warmup.push(warmup);
        f.warmed.push(warmed);
        f.joined.push(joined);
        f.joinedWarmup.push(joinedWarmup);
        loads.push(os.loadavg()[0] ?? NaN);
        out(
          `round ${round + 1}: first ${ms(first)}, second ${ms(second)}, warm-up ${ms(warmup)} after the answer then the job's pull ${ms(warmed)}, a pull at the answer ${ms(joined)} (its warm-up ${ms(joinedWarmup)})  (load average ${loads.at(-1)?.toFixed(1)})`,
        );
      } finally {
        await mirror.stop();
      }
    }
    const m = Object.fromEntries(Object.entries(f).map(([k, v]) => [k, median(v)])) as Record<keyof typeof f, number>;
    out(
      `\n50 MB image (one incompressible layer), upstream paced at ${UPSTREAM_BYTES_PER_SECOND / 1024 / 1024} MB/s, medians of ${rounds} rounds (load average ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}), each by a new job's engine already answering:`,
    );
    const verdict = (r: number): string => (r >= 5 ? 'met' : 'NOT met');
    out(`  first pull, cold cache:                                   ${ms(m.first)}`);
    out(
      `  second pull, warm cache, no warm images:                  ${ms(m.second)}  first/second = ${(m.first / m.second).toFixed(1)}x (target >= 5x: ${verdict(m.first / m.second)})`,
    );
    out(`  warm images: the warm-up, engine's answer to image there: ${ms(m.warmup)}`);
    out(
      `  warm images: the job's pull once the warm-up is done:     ${ms(m.warmed)}  first/warmed = ${(m.first / m.warmed).toFixed(1)}x (target >= 5x: ${verdict(m.first / m.warmed)})`,
    );
    out(
      `  warm images: a pull issued at the engine's answer:        ${ms(m.joined)}  first/joined = ${(m.first / m.joined).toFixed(1)}x (its warm-up ${ms(m.joinedWarmup)})`,
    );
  } finally {
    await upstream.stop();
    await lab.dispose();
  }
}

await main();
