/**
 * Builds a running agent from a loaded host config: the slot, the GitHub adapter, the policy store,
 * the cleanup pipeline, the journal, metrics, the health server and the recycler. Used by `run` and
 * by `demo` (which points it at the simulator and the fake API). Each part is built in the file
 * named after it beside this one; this file puts them together.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { systemClock, type Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { HostConfig } from '../policy/types.js';
import { PolicyStore } from '../policy/watch.js';
import type { Slot, CleanupContext } from '../cleanup/types.js';
import { defaultSteps, runCleanup } from '../cleanup/pipeline.js';
import { verify } from '../cleanup/verify.js';
import { prepareJobDirs } from '../cleanup/job-dirs.js';
import { loadInstallManifest, takeInstallManifest } from '../cleanup/install-manifest.js';
import { loadBaseline, takeBaseline } from '../cleanup/baseline.js';
import { Trash } from '../cleanup/trash.js';
import { TempTrash } from '../cleanup/steps/temp-trash.js';
import { takeEngineInventory, waitForEngine } from '../cleanup/engine-inventory.js';
import { scopeUrl } from '../github/scope.js';
import { githubSlots } from '../github/fleet-pacing.js';
import { fleetPlace } from '../lib/fleet-slots.js';
import { TokenRegistrar } from '../runner/token-registration.js';
import type { GitHubPort } from '../github/port.js';
import { Journal } from '../agent/journal.js';
import { Agent, type RecyclePort } from '../agent/agent.js';
import { resolveTimeouts } from '../agent/timeouts.js';
import { ALL_STATES } from '../agent/states.js';
import { hookPaths } from '../runner/hooks.js';
import { AgentMetrics } from '../health/metrics.js';
import { mirrorDebugAddress, registerMirrorMetrics, registerMirrorPruneMetrics } from '../engine/mirror-metrics.js';
import { registerWarmImageMetrics } from '../engine/warm-metrics.js';
import { DEFAULT_MIRROR_STORAGE, gibToBytes } from '../engine/mirror-checks.js';
import { MirrorJanitor } from '../engine/mirror-janitor.js';
import type { HealthServer } from '../health/server.js';
import { watchInterruptions } from '../recycle/interruptions.js';
import { VERSION } from './version.js';
import { buildSlot, statePaths } from './slot.js';
import { createGitHubAdapter, scopeOf } from './github-adapter.js';
import { buildRecycler } from './recycle-provider.js';
import { buildRunnerUpdates } from './runner-updates.js';
import { slotContainers } from './process-containers.js';
import { buildGuards } from './guards.js';
import { hostFigures, startAgentHealth } from './health-wiring.js';
import { QuarantineStore } from '../agent/quarantine-store.js';

export { buildSlot, statePaths } from './slot.js';
export { readAuth, scopeOf } from './github-adapter.js';
export { withDownwardApi } from './recycle-provider.js';
export { slotCgroupParent } from './process-containers.js';

/** Listing a local engine's objects takes milliseconds; a hung daemon must not hold the next listener. */
const ENGINE_INVENTORY_TIMEOUT_MS = 10_000;
/**
 * How long a stop waits for the background deletion of the trash before it aborts it: a small
 * trash is gone by then; a large one (a job's 50,000 files or a deep tree) is root-only, reachable
 * by no job, and deleted at the next start, so a stop or a recycle need not wait minutes for it.
 */
const TRASH_STOP_WAIT_MS = 5_000;

/** Everything a started agent consists of; `run` awaits `agent.run` and then `close`. */
export interface Runtime {
  agent: Agent;
  slot: Slot;
  policies: PolicyStore;
  metrics: AgentMetrics;
  journal: Journal;
  health?: HealthServer;
  /** Background tasks (policy watch, host figures); stopped by close(). */
  close(): Promise<void>;
}

/** What the composition root passes besides the config. */
export interface WireOptions {
  configFile: string;
  env: NodeJS.ProcessEnv;
  log: Logger;
  clock: Clock;
  /** Replaces the Octokit adapter (tests). */
  github?: GitHubPort;
  /** Skip the health server (one-shot commands). */
  noHealth?: boolean;
  /** Replaces the recycler (tests, demo). */
  recycler?: RecyclePort;
  hostname?: string;
  /** PATH for the listener. */
  listenerPath?: string;
  /** Prefix of the file surfaces the integrity check reads (tests and benches: a built root). */
  integrityRoot?: string;
  /** The image cache's store when it is not the packaged one (the demo's supervised mirror). */
  mirrorStorage?: string;
}

/** Wires everything; throws ConfigError / PolicyError / RunnerInstallError for the CLI to map to 78. */
export async function wire(config: HostConfig, o: WireOptions): Promise<Runtime> {
  const log = o.log;
  const clock = o.clock;
  // Debug marks of the start-up's phases (bench/cold-start.ts reads their times).
  log.debug({}, 'wiring');
  const slot = await buildSlot(config, o.configFile);
  const timeouts = resolveTimeouts(config.timeouts);
  // The runner installation and the runner user's home are recorded once, on a fresh host (the
  // image pipeline normally runs `runner-warden baseline`); a restarted agent compares against
  // those records rather than accepting whatever a job may have changed since.
  // Never from a quarantined host: a state dir deleted or changed under a quarantine (the fact's
  // copy in the runner root says so) must not record the installation it judged as the baseline.
  const quarantined = (await new QuarantineStore(config.stateDir, config.runner.root).load()) !== undefined;
  const firstBoot = !quarantined && !existsSync(path.join(config.stateDir, 'state.json'));
  if (!quarantined && !(await loadInstallManifest(slot))) await takeInstallManifest(slot, clock);
  if (firstBoot && !(await loadBaseline(slot))) {
    log.info({ home: slot.user.home }, 'no home baseline: recording the runner home as it is on this first boot');
    await takeBaseline(slot, { clock });
  }
  log.debug({}, 'slot checked');
  const trash = new Trash(slot.trashDir, log);
  // Directories a job left in temp dirs: drained (and recovered at start) with the slot trash.
  const tempTrash = new TempTrash(trash, log, { stateDir: slot.stateDir });
  // Metrics windows and policy debouncing measure real time, whatever clock drives the lifecycle.
  const recycleProviders = config.recycle
    ? [config.recycle, ...(config.recycle.fallback ?? [])].map((r) => r.provider).filter((p) => p !== 'none')
    : [];
  const metrics = new AgentMetrics({ version: VERSION, clock: systemClock, states: ALL_STATES, recycleProviders });
  const policies = new PolicyStore({
    dir: config.policyDir,
    team: config.team,
    log: log.child({ component: 'policy' }),
    clock: systemClock,
    onReload: (r) => metrics.policyReload(r),
  });
  await policies.load();
  // The image cache's hits, misses and bytes on /metrics, read from its debug server at scrape time.
  const mirrorStorage = o.mirrorStorage ?? DEFAULT_MIRROR_STORAGE;
  registerMirrorMetrics(
    metrics.registry,
    () => mirrorDebugAddress(policies.current().docker.mirror),
    () => (policies.current().docker.mirror ? mirrorStorage : undefined),
  );
  // The cache's size cap, kept by pruning its least recently used blobs every minute, off the job's path.
  const mirrorJanitor = new MirrorJanitor(
    () => {
      const d = policies.current().docker;
      // Only this host's own cache (a loopback mirror) is the agent's to prune.
      return mirrorDebugAddress(d.mirror) ? { storage: mirrorStorage, capBytes: gibToBytes(d.mirrorCapGiB) } : undefined;
    },
    log.child({ component: 'image-cache' }),
    systemClock,
  );
  registerMirrorPruneMetrics(metrics.registry, () => mirrorJanitor.totals);
  // The per-job container engine, the sudo grant and the whole-host integrity check.
  const { guards, engineGuard } = await buildGuards({
    slot,
    policy: policies.current(),
    firstBoot,
    log,
    ...(o.integrityRoot ? { integrityRoot: o.integrityRoot } : {}),
    // A job's tree waiting in a temp dir's holding directory was judged by cleanup; its setuid bits are not drift.
    transientExcluded: () => tempTrash.holdingDirs(),
  });
  log.debug({ guards: guards.map((g) => g.name) }, 'guards built');
  // Warm images pulled into job engines before the job asks (policy docker.warm).
  registerWarmImageMetrics(metrics.registry, () => engineGuard.warmTotals);
  // A host that knows its place in the fleet retries GitHub in its own slot (docs/fleet-scale.md).
  const fleet = config.fleet ? fleetPlace(config.fleet, o.hostname ?? os.hostname(), o.configFile) : undefined;
  const fleetSlots = fleet ? githubSlots(fleet) : undefined;
  const adapter = o.github
    ? undefined
    : await createGitHubAdapter(config, {
        env: o.env,
        configFile: o.configFile,
        clock,
        log,
        metrics,
        ...(fleetSlots ? { slots: fleetSlots } : {}),
      });
  const github = o.github ?? (adapter as NonNullable<typeof adapter>).github;
  const registrar =
    config.github.registration === 'token'
      ? new TokenRegistrar({
          github,
          scopeUrl: scopeUrl(config.github.url, scopeOf(config)),
          runnerRoot: slot.runnerRoot,
          user: slot.user,
          ...(config.runner.env ? { extraEnv: config.runner.env } : {}),
          ...(o.listenerPath ? { path: o.listenerPath } : {}),
          clock,
          log: log.child({ component: 'config.sh' }),
        })
      : undefined;
  const journal = new Journal({
    dir: config.stateDir,
    ...(config.journal?.maxFileMiB !== undefined ? { maxBytes: Math.round(config.journal.maxFileMiB * 1024 * 1024) } : {}),
    ...(config.journal?.keep !== undefined ? { keep: config.journal.keep } : {}),
  });
  // The hook report channel is open to the runner user's own group only.
  const hooks = hookPaths(statePaths(config.stateDir).publicDir, slot.user);
  const hostname = o.hostname ?? os.hostname();
  const recycler =
    o.recycler ?? buildRecycler(config, { env: o.env, clock, log, configFile: o.configFile, hostname, ...(fleet ? { fleet } : {}) });
  const runnerUpdates = buildRunnerUpdates(config, slot, { clock, log });

  const protectedPids = new Set<number>([process.pid]);
  const containers = await slotContainers(slot, log);
  const bg = new AbortController();
  // Background deletion of what the workdir step moved to the trash; chained so drains never overlap,
  // and awaited by close() (no floating promise).
  let trashTask: Promise<unknown> = trash
    .drainAtBoot(bg.signal)
    .catch((err: unknown) => log.warn({ err: String(err) }, 'trash left from before could not be deleted'));
  const drainTrash = (): void => {
    trashTask = trashTask
      .then(() => trash.drain(bg.signal))
      .then(
        (r) => {
          if (r.count > 0 || r.remaining > 0) {
            return journal.append({
              type: 'event',
              event: 'trash-drained',
              at: new Date(clock.now()).toISOString(),
              detail: { files: r.count, bytes: r.bytes, durationMs: r.durationMs, remaining: r.remaining },
            });
          }
          return undefined;
        },
        (err: unknown) => log.warn({ err: String(err) }, 'background deletion failed; retried after the next job'),
      );
  };
  const agent: Agent = new Agent({
    slot,
    github,
    policies,
    journal,
    hooks,
    runner: {
      name: config.runner.name,
      labels: config.runner.labels,
      group: config.runner.group,
      maxJobs: config.runner.maxJobs ?? 0,
      // A prefetch registers while the job's runner still occupies the root: JIT only.
      prefetch: config.runner.prefetch && !registrar,
      env: config.runner.env,
      ...(o.listenerPath ? { path: o.listenerPath } : {}),
    },
    team: config.team,
    hostname,
    version: VERSION,
    clock,
    log,
    timeouts,
    ...(recycler ? { recycler } : {}),
    ...(runnerUpdates ? { runnerUpdates } : {}),
    ...(fleetSlots ? { fleetSlots } : {}),
    // Started before each listener, released and verified after it (src/lib/job-guard.ts).
    guards,
    processContainers: containers.port,
    observer: metrics,
    registration: registrar ? { mode: 'token', registrar } : { mode: 'jit' },
    prepareJobDirs: (key) => prepareJobDirs(slot, key),
    preflight: async (policy, signal) => {
      const c = policy.cleanup.containers;
      const problem = c.enabled ? await waitForEngine(c.socket, timeouts.engineWaitMs, clock, signal) : undefined;
      return problem ? [problem] : [];
    },
    engineInventory: (policy) => takeEngineInventory(policy.cleanup.containers.socket, AbortSignal.timeout(ENGINE_INVENTORY_TIMEOUT_MS)),
    cleanup: async ({ policy, jobStartedAt, engineBefore, signal, beforeVerify }) => {
      const ctx: CleanupContext = {
        slot,
        policy: policy.cleanup,
        fullPolicy: policy,
        log: log.child({ component: 'cleanup' }),
        clock,
        signal,
        dryRun: false,
        protectedPids,
        ...(jobStartedAt !== undefined ? { jobStartedAt } : {}),
        ...(engineBefore ? { engineBefore } : {}),
      };
      const report = await runCleanup(
        ctx,
        defaultSteps({ trash, tempTrash }),
        async (c) => {
          await beforeVerify();
          return verify(c);
        },
        {
          freeSpace: async (signal) => {
            await trashTask.catch(() => undefined);
            await trash.drain(signal);
          },
        },
      );
      drainTrash();
      return report;
    },
  });

  const tasks: Promise<unknown>[] = [policies.run(bg.signal), metrics.run(bg.signal), mirrorJanitor.run(bg.signal)];
  if (config.interruptions.imds) {
    tasks.push(
      watchInterruptions({
        endpoint: config.interruptions.imdsUrl,
        intervalMs: config.interruptions.intervalSeconds * 1000,
        clock: systemClock,
        log: log.child({ component: 'interruptions' }),
        signal: bg.signal,
        onNotice: (n) =>
          agent.drain(`${n.kind} notice: ${n.detail}`, {
            recycle: true,
            ...(n.deadlineAt !== undefined ? { deadlineAt: n.deadlineAt } : {}),
          }),
      }),
    );
  }
  log.debug({}, 'agent built');
  const figures = hostFigures({
    slot,
    policies,
    engineGuard,
    metrics,
    log,
    signal: bg.signal,
    // Only this host's own cache (a loopback mirror) is pruned by the agent, so only it has a size and a cap to show.
    mirrorTotals: () => (mirrorDebugAddress(policies.current().docker.mirror) ? mirrorJanitor.totals : undefined),
  });
  tasks.push(figures.run(bg.signal));
  const health = o.noHealth
    ? undefined
    : await startAgentHealth(config, {
        agent,
        metrics,
        figures,
        extraSecrets: () => registrar?.secretValues() ?? [],
        log,
        runnerUid: slot.user.uid,
      });
  return {
    agent,
    slot,
    policies,
    metrics,
    journal,
    ...(health ? { health } : {}),
    async close() {
      const waited = new AbortController();
      await Promise.race([trashTask, clock.sleep(TRASH_STOP_WAIT_MS, waited.signal).catch(() => undefined)]);
      waited.abort();
      // A warm engine no job took (the last job, a drain) must not outlive the agent.
      await engineGuard.drain();
      bg.abort();
      await trashTask;
      await Promise.allSettled(tasks);
      await health?.close();
      adapter?.close();
      await containers.close();
    },
  };
}
