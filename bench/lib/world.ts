/**
 * A bench's world: a throwaway runner user, a simulated runner installation, the fake GitHub, a
 * policy directory and a host config, all inside one temporary root that dispose() removes with
 * the user. This file is also the one home of the host such a world stands for (writeHost,
 * removeSlotCgroups, benchPolicy): test/helpers/world.ts builds the tests' world on it, so
 * figures and tests exercise the same host (bench/ never imports the tests' helpers).
 */
import { chmod, mkdir, mkdtemp, readdir, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { startFakeGitHub, type FakeGitHub } from '../../src/sim/github/server.js';
import type { FakeGitHubOptions } from '../../src/sim/github/types.js';
import { installSimulatedRunner } from '../../src/sim/runner/install.js';
import { loadHostConfig } from '../../src/policy/load.js';
import { slotCgroupParent, wire } from '../../src/cli/wire.js';
import { detectCgroupSupport, openProcessContainer } from '../../src/lib/cgroup.js';
import { systemClock } from '../../src/lib/clock.js';
import { silentLogger } from '../../src/lib/log.js';
import { takeBaseline } from '../../src/cleanup/baseline.js';
import type { UserInfo } from '../../src/lib/users.js';
import { createThrowawayUser, removeRoot, type ThrowawayUser } from '../../src/sim/lab.js';

/** Agent timers short enough for a bench (listeners are real processes and run in real time). */
export const BENCH_TIMEOUTS = {
  listenerStopGraceMs: 5_000,
  updateFinishedWaitMs: 10_000,
  registerBackoffBaseMs: 20,
  registerBackoffMaxMs: 200,
  authFailureBackoffMs: 200,
  retryableRestartDelayMs: 20,
  drainGraceMs: 10_000,
  heartbeatMs: 1_000,
};

/** The simulator knobs that shorten its real-time waits (documented in src/sim/runner/listener.ts). */
export const SIM_ENV = {
  RUNNER_SIM_SESSION_CONFLICT_RETRY_SECONDS: '0.2',
  RUNNER_SIM_SESSION_CONFLICT_TOTAL_SECONDS: '0.5',
  RUNNER_SIM_RECONNECT_DELAY_SECONDS: '0.2',
  RUNNER_SIM_JOB_RENEW_INTERVAL_SECONDS: '0.5',
};

/** The bench's throwaway user: the same one the tests and the demo make (src/sim/lab.ts). */
export { createThrowawayUser as createUser, type ThrowawayUser as BenchUser };

/**
 * A world's policy: reuse, every step on, no container engine, temp dirs inside the world (never the real /tmp). The
 * whole-host integrity check is off: it compares the real host, where others' tests add users and
 * mounts (test/e2e/integrity checks it against roots it builds). `over.host` is merged into `host`.
 */
export function benchPolicy(root: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const host = { maxJobs: 50, integrity: { enabled: false }, ...((over.host as Record<string, unknown> | undefined) ?? {}) };
  return {
    version: 1,
    cleanup: {
      processes: { graceSeconds: 1 },
      temp: { paths: sysTempDirs(root) },
      containers: { socket: path.join(root, 'no-docker.sock') },
    },
    // No per-job container engine: a rootless engine around every job costs seconds of CPU and is
    // measured and tested on its own (bench/engine.ts, test/e2e/engine); a world that wants one
    // names the mode in `over`.
    docker: { mode: 'none' },
    ...over,
    host,
  };
}

/** The world's stand-ins for /tmp, /var/tmp and /dev/shm. */
export function sysTempDirs(root: string): string[] {
  return ['tmp', 'var-tmp', 'shm'].map((d) => path.join(root, 'sys', d));
}

/** A host with a simulated runner, a fake GitHub and a config, all inside one root. */
export interface World {
  root: string;
  user: UserInfo;
  fake: FakeGitHub;
  runnerRoot: string;
  stateDir: string;
  configFile: string;
  policyDir: string;
  /** World-writable, outside every policy path: where jobs leave what they found. */
  dropDir: string;
  /** The image step: wires a runtime once, takes the runner user's home baseline, closes it. */
  baseline(): Promise<void>;
  dispose(): Promise<void>;
}

/** Options of createWorld. */
export interface WorldOptions {
  fake?: FakeGitHubOptions;
  policy?: Record<string, unknown>;
  /** Host config fields merged over the defaults. */
  config?: Record<string, unknown>;
  /** runner.* fields merged over the defaults. */
  runner?: Record<string, unknown>;
  /**
   * Put the state directory and the runner installation (its work directory) on one tmpfs of this
   * many bytes, the host's disk in small (unmounted by dispose). They must share a filesystem: the
   * agent moves a job's work directory into the trash in the state directory by a rename.
   */
  hostFsBytes?: number;
}

/** Where writeHost puts the host, and what it puts there. */
export interface HostSpec {
  /** The world's root: sys/ (temp dirs), drop/ and etc/ (policies, token, config) go here. */
  root: string;
  runnerRoot: string;
  stateDir: string;
  user: UserInfo;
  fake: FakeGitHub;
  /** The policy file's content; default benchPolicy(root). */
  policy?: Record<string, unknown>;
  /** runner.* fields merged over the defaults. */
  runner?: Record<string, unknown>;
  /** Host config fields merged over the defaults. */
  config?: Record<string, unknown>;
  timeouts: Record<string, number>;
  /** Runner name template, e.g. 'bench-{seq}'. */
  runnerName: string;
}

/** The files of a written host. */
export interface HostFiles {
  configFile: string;
  policyDir: string;
  dropDir: string;
}

/**
 * Writes a host inside `root`: the simulated runner installation, stand-ins for /tmp, /var/tmp and
 * /dev/shm, a world-writable drop directory, the policy directory, the token and the host config
 * pointing at the fake GitHub.
 */
export async function writeHost(h: HostSpec): Promise<HostFiles> {
  await installSimulatedRunner(h.runnerRoot, { owner: { uid: h.user.uid, gid: h.user.gid } });
  for (const d of sysTempDirs(h.root)) {
    await mkdir(d, { recursive: true });
    await chmod(d, 0o1777);
  }
  const dropDir = path.join(h.root, 'drop');
  await mkdir(dropDir);
  await chmod(dropDir, 0o777);
  await mkdir(h.stateDir, { recursive: true, mode: 0o700 });
  const etc = path.join(h.root, 'etc');
  const policyDir = path.join(etc, 'policies');
  await mkdir(policyDir, { recursive: true, mode: 0o700 });
  await writeFile(path.join(policyDir, 'test.yaml'), stringify(h.policy ?? benchPolicy(h.root)));
  await writeFile(path.join(etc, 'token'), `${h.fake.defaultToken}\n`, { mode: 0o600 });
  const config = {
    github: { url: h.fake.origin, apiUrl: h.fake.url, org: 'octo', token: { file: path.join(etc, 'token') } },
    runner: { root: h.runnerRoot, user: h.user.name, name: h.runnerName, labels: ['self-hosted'], env: SIM_ENV, ...h.runner },
    team: 'test',
    policyDir,
    stateDir: h.stateDir,
    health: { listen: '127.0.0.1:0' },
    recycle: { provider: 'none' },
    timeouts: h.timeouts,
    ...h.config,
  };
  const configFile = path.join(etc, 'config.yaml');
  await writeFile(configFile, stringify(config), { mode: 0o600 });
  return { configFile, policyDir, dropDir };
}

/**
 * Removes the slot's cgroup parent under every cgroup mount, with the containers an agent that was
 * killed left in it (its successor may never have run).
 */
export async function removeSlotCgroups(stateDir: string): Promise<void> {
  const support = await detectCgroupSupport();
  for (const mount of [support.v2, support.v1Freezer]) {
    if (!mount) continue;
    const parent = path.join(mount, slotCgroupParent(stateDir));
    for (const name of await readdir(parent).catch(() => [] as string[])) {
      const child = path.join(parent, name);
      if ((await stat(child).catch(() => undefined))?.isDirectory())
        await openProcessContainer(child)
          .remove()
          .catch(() => {});
    }
    await rmdir(parent).catch(() => {});
  }
}

/** Builds a world: user, runner installation, fake API, policy dir, host config file. Needs root. */
export async function createWorld(o: WorldOptions = {}): Promise<World> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-bench-'));
  await chmod(root, 0o755);
  const owner = await createThrowawayUser(root);
  const user = owner.user;
  // A job lock of 10 s (GitHub's is 10 min; the simulator renews every 0.5 s here): with 3 s, a
  // listener or a test process starved for 3 s at load 20 lost its job to the fake's abandonment
  // and the job ended Canceled in tests about something else. Tests that need a quick
  // abandonment (crash-states) ask for a shorter lock.
  const fake = await startFakeGitHub({ jobLockMs: 10_000, sessionStaleMs: 2_000, ...o.fake });
  const hostFs = path.join(root, 'disk');
  const stateDir = path.join(hostFs, 'state');
  let mounted = false;
  const dispose = async (): Promise<void> => {
    await fake.close().catch(() => {});
    owner.remove();
    if (mounted) execFileSync('umount', ['-l', hostFs], { stdio: 'ignore' });
    await removeRoot(root);
    await removeSlotCgroups(stateDir);
  };
  try {
    await mkdir(hostFs, { mode: 0o755 });
    if (o.hostFsBytes !== undefined) {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${o.hostFsBytes},mode=0755`, 'tmpfs', hostFs]);
      mounted = true;
    }
    const runnerRoot = path.join(hostFs, 'actions-runner');
    const files = await writeHost({
      root,
      runnerRoot,
      stateDir,
      user,
      fake,
      ...(o.policy ? { policy: o.policy } : {}),
      ...(o.runner ? { runner: o.runner } : {}),
      ...(o.config ? { config: o.config } : {}),
      timeouts: BENCH_TIMEOUTS,
      runnerName: 'bench-{seq}',
    });
    return {
      root,
      user,
      fake,
      runnerRoot,
      stateDir,
      ...files,
      async baseline() {
        const rt = await wire(await loadHostConfig(files.configFile, {}), {
          configFile: files.configFile,
          env: {},
          log: silentLogger(),
          clock: systemClock,
          hostname: 'benchhost',
        });
        try {
          await takeBaseline(rt.slot);
        } finally {
          await rt.close();
        }
      },
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/**
 * A recycle replaces the host: the fleet starts a fresh one from the image. Modelled on the same
 * world: no runner-user process, a pristine runner installation, no agent state, `extra` paths
 * (what the bench planted) gone. The journal is kept (it stands for the fleet's collected
 * journals) and so is the home baseline (same image).
 */
export async function replaceHost(w: World, extra: readonly string[] = []): Promise<void> {
  try {
    execFileSync('pkill', ['-KILL', '-U', String(w.user.uid)], { stdio: 'ignore' });
  } catch {
    // pkill exits 1 when nothing matched.
  }
  await rm(w.runnerRoot, { recursive: true, force: true });
  await installSimulatedRunner(w.runnerRoot, { owner: { uid: w.user.uid, gid: w.user.gid } });
  for (const name of ['state.json', 'runner-install.json', 'quarantine.json', 'jobs', 'trash']) {
    await rm(path.join(w.stateDir, name), { recursive: true, force: true });
  }
  for (const p of extra) await rm(p, { recursive: true, force: true });
}
