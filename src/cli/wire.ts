/**
 * Builds a running agent from a loaded host config: the slot, the GitHub adapter, the policy store,
 * the cleanup pipeline, the journal, metrics, the health server and the recycler. Used by `run` and
 * by `demo` (which points it at the simulator and the fake API).
 */
import { chmod, mkdir, readdir, readFile, rmdir, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { systemClock, type Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { ConfigError } from '../lib/errors.js';
import { lookupUser } from '../lib/users.js';
import { createProcessContainer, detectCgroupSupport, openProcessContainer, DEFAULT_CGROUP_PARENT } from '../lib/cgroup.js';
import { createHash } from 'node:crypto';
import type { HostConfig } from '../policy/types.js';
import { PolicyStore } from '../policy/watch.js';
import type { Slot, CleanupContext } from '../cleanup/types.js';
import { defaultSteps, runCleanup } from '../cleanup/pipeline.js';
import { verify } from '../cleanup/verify.js';
import { prepareJobDirs } from '../cleanup/job-dirs.js';
import { loadInstallManifest, takeInstallManifest } from '../cleanup/install-manifest.js';
import { loadBaseline, takeBaseline } from '../cleanup/baseline.js';
import { Trash } from '../cleanup/trash.js';
import { probeEngine, takeEngineInventory, waitForEngine } from '../cleanup/engine-inventory.js';

/** Listing a local engine's objects takes milliseconds; a hung daemon must not hold the next listener. */
const ENGINE_INVENTORY_TIMEOUT_MS = 10_000;
import { createOctokitPort, type GitHubAuth } from '../github/octokit.js';
import { scopeUrl, type RunnerScope } from '../github/scope.js';
import { createCaFetch, readCaBundle } from '../github/tls.js';
import { TokenRegistrar } from '../runner/token-registration.js';
import { recoverRunnerUpdate, updateRunner } from '../runner/update.js';
import type { GitHubPort } from '../github/port.js';
import { Journal } from '../agent/journal.js';
import { Agent, type RecyclerPort } from '../agent/agent.js';
import type { RunnerUpdatesPort } from '../agent/deps.js';
import { resolveTimeouts } from '../agent/timeouts.js';
import { ALL_STATES } from '../agent/states.js';
import { hookPaths } from '../runner/hooks.js';
import { checkRunnerInstallation } from '../runner/installation.js';
import { AgentMetrics } from '../health/metrics.js';
import { startHealthServer, type HealthServer } from '../health/server.js';
import { HostFiguresSampler, systemSources, type HostSample } from '../health/host-figures.js';
import { createRecycler } from '../recycle/chain.js';
import { watchInterruptions } from '../recycle/interruptions.js';
import { VERSION } from './version.js';
import { EngineGuard } from '../engine/engine-guard.js';
import { modeStatus } from '../engine/mode.js';
import { createHostGuards } from '../integrity/host-guards.js';

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
  recycler?: RecyclerPort;
  hostname?: string;
  /** PATH for the listener. */
  listenerPath?: string;
}

/** The state directory's layout. */
export function statePaths(stateDir: string): {
  publicDir: string;
  jobRoot: string;
  trashDir: string;
} {
  return {
    publicDir: path.join(stateDir, 'public'),
    jobRoot: path.join(stateDir, 'jobs'),
    trashDir: path.join(stateDir, 'trash'),
  };
}

/** Builds the slot from the config; the state dir is made root-owned 0711 (traversable, not listable). */
export async function buildSlot(config: HostConfig, configFile: string): Promise<Slot> {
  const user = await lookupUser(config.runner.user);
  if (!user) {
    throw new ConfigError(`runner.user "${config.runner.user}" does not exist`, configFile, [
      `${configFile}: runner.user: expected an existing local user, got "${config.runner.user}"`,
    ]);
  }
  await checkRunnerInstallation(config.runner.root);
  await mkdir(config.stateDir, { recursive: true, mode: 0o711 });
  await chmod(config.stateDir, 0o711);
  const p = statePaths(config.stateDir);
  const jobRoot = config.runner.jobRoot ?? p.jobRoot;
  await mkdir(jobRoot, { recursive: true, mode: 0o711 });
  await chmod(jobRoot, 0o711);
  return {
    index: 0,
    runnerRoot: config.runner.root,
    workDir: path.join(config.runner.root, '_work'),
    user: { name: user.name, uid: user.uid, gid: user.gid, home: user.home },
    stateDir: config.stateDir,
    trashDir: config.runner.trashDir ?? p.trashDir,
    jobRoot,
  };
}

/** The scope of the config (exactly one of org, repo, enterprise; the schema enforces it). */
export function scopeOf(config: HostConfig): RunnerScope {
  if (config.github.repo) {
    const [owner = '', repo = ''] = config.github.repo.split('/');
    return { kind: 'repo', owner, repo };
  }
  if (config.github.enterprise) return { kind: 'enterprise', enterprise: config.github.enterprise };
  return { kind: 'org', org: config.github.org ?? '' };
}

/** Reads the agent's credentials from the file or variable the config names. */
export async function readAuth(config: HostConfig, env: NodeJS.ProcessEnv, configFile: string): Promise<GitHubAuth> {
  const g = config.github;
  if (g.app) {
    const privateKey = await readSecretFile(g.app.privateKeyFile, configFile, 'github.app.privateKeyFile');
    return { kind: 'app', appId: g.app.appId, installationId: g.app.installationId, privateKey };
  }
  if (g.token?.file) {
    const token = (await readSecretFile(g.token.file, configFile, 'github.token.file')).trim();
    return { kind: 'token', token };
  }
  if (g.token?.env) {
    const token = env[g.token.env];
    if (!token) {
      throw new ConfigError(`github.token.env names ${g.token.env}, which is not set`, configFile, [
        `${configFile}: github.token.env: expected the name of a set environment variable, got "${g.token.env}" (unset)`,
      ]);
    }
    return { kind: 'token', token: token.trim() };
  }
  throw new ConfigError('no GitHub credentials', configFile, [`${configFile}: github: expected token or app`]);
}

async function readSecretFile(file: string, configFile: string, field: string): Promise<string> {
  try {
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0) {
      throw new ConfigError(`${field} ${file} is readable by others`, configFile, [
        `${configFile}: ${field}: expected a file only root can read (chmod 600), got mode ${(st.mode & 0o777).toString(8)}`,
      ]);
    }
    return await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${field} ${file} cannot be read`, configFile, [
      `${configFile}: ${field}: expected a readable file, got "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
}

/** Wires everything; throws ConfigError / PolicyError / RunnerInstallError for the CLI to map to 78. */
export async function wire(config: HostConfig, o: WireOptions): Promise<Runtime> {
  const log = o.log;
  const clock = o.clock;
  const slot = await buildSlot(config, o.configFile);
  const timeouts = resolveTimeouts(config.timeouts);
  // The runner installation and the runner user's home are recorded once, on a fresh host (the
  // image pipeline normally runs `runner-warden baseline`); a restarted agent compares against
  // those records rather than accepting whatever a job may have changed since.
  const firstBoot = !existsSync(path.join(config.stateDir, 'state.json'));
  if (!(await loadInstallManifest(slot))) await takeInstallManifest(slot, clock);
  if (firstBoot && !(await loadBaseline(slot))) {
    log.info({ home: slot.user.home }, 'no home baseline: recording the runner home as it is on this first boot');
    await takeBaseline(slot, { clock });
  }
  const trash = new Trash(slot.trashDir, log);
  // Metrics windows and policy debouncing measure real time, whatever clock drives the lifecycle.
  const recycleProviders = config.recycle
    ? [config.recycle, ...(config.recycle.fallback ?? [])].map((r) => r.provider).filter((p) => p !== 'none')
    : [];
  const metrics = new AgentMetrics({ version: VERSION, clock: systemClock, states: ALL_STATES, recycleProviders });
  const policies = new PolicyStore({ dir: config.policyDir, team: config.team, log: log.child({ component: 'policy' }), clock: systemClock, onReload: (r) => metrics.policyReload(r) });
  await policies.load();
  // The sudo grant and the whole-host integrity check (src/integrity); a first boot records the
  // system baseline as it records the home baseline.
  const hostGuards = await createHostGuards({ slot, policy: policies.current(), firstBoot, agentPid: process.pid, log: log.child({ component: 'integrity' }) });
  // GHES behind a private CA: the API calls trust github.caFile besides the system roots.
  const caFetch = config.github.caFile && !o.github ? createCaFetch(await readCaBundle(config.github.caFile, o.configFile)) : undefined;
  const github =
    o.github ??
    createOctokitPort({
      apiUrl: config.github.apiUrl,
      ...(caFetch ? { fetch: caFetch.fetch } : {}),
      scope: scopeOf(config),
      auth: await readAuth(config, o.env, o.configFile),
      clock,
      log: log.child({ component: 'github' }),
      onRequest: (r) => {
        metrics.githubRequest(r.endpoint, r.status);
        if (r.rateLimitRemaining !== undefined) metrics.rateLimitRemaining(r.rateLimitRemaining);
      },
    });
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

  let recycler: RecyclerPort | undefined = o.recycler;
  if (!recycler && config.recycle && config.recycle.provider !== 'none') {
    const chain = createRecycler(withDownwardApi(config.recycle, o.env), { clock, log, configFile: o.configFile });
    recycler = {
      provider: chain.providers.join('>'),
      async recycle(event, signal) {
        const out = await chain.recycle(
          {
            ...event,
            host: hostname,
            at: new Date(clock.now()).toISOString(),
            idempotencyKey: `${hostname}-${event.jobsServed}-${event.reason.split(':')[0] ?? 'recycle'}`,
          },
          signal,
        );
        return { ok: out.ok, provider: out.provider, detail: out.detail, ...(out.exitCode !== undefined ? { exitCode: out.exitCode } : {}) };
      },
    };
  }

  // In-place runner updates (host config runner.updates, docs/fleet-scale.md).
  const updates = config.runner.updates;
  const updateLog = log.child({ component: 'runner-update' });
  const runnerUpdates: RunnerUpdatesPort | undefined = updates
    ? {
        recover: async () => {
          await recoverRunnerUpdate(slot.runnerRoot, updateLog);
        },
        update: () =>
          updateRunner({
            root: slot.runnerRoot,
            source: updates.source,
            apiUrl: config.github.apiUrl,
            platform: updates.platform,
            clock,
            log: updateLog,
            retakeManifest: () => takeInstallManifest(slot, clock),
          }),
        checkEveryMs: updates.checkEveryMinutes * 60_000,
      }
    : undefined;

  const protectedPids = new Set<number>([process.pid]);
  const instance = randomBytes(3).toString('hex');
  // One cgroup parent per slot (named after its state dir): containers left by a crashed agent of
  // this slot are removed at boot, and never another slot's (or another test's).
  const cgroupParent = slotCgroupParent(config.stateDir);
  // The per-job container engine (policy docker.mode); also asked for the mode /status shows.
  const engineGuard = new EngineGuard({ runnerUser: slot.user, cgroupParent, stateDir: slot.stateDir });
  const cgroupSupport = await detectCgroupSupport();
  await removeStaleContainers(cgroupSupport, cgroupParent, log);
  const bg = new AbortController();
  // Background deletion of what the workdir step moved to the trash; chained so drains never overlap,
  // and awaited by close() (no floating promise).
  let trashTask: Promise<unknown> = trash.drainAtBoot().catch((err: unknown) => log.warn({ err: String(err) }, 'trash left from before could not be deleted'));
  const drainTrash = (): void => {
    trashTask = trashTask
      .then(() => trash.drain(bg.signal))
      .then(
        (r) => {
          if (r.count > 0 || r.remaining > 0) {
            return journal.append({ type: 'event', event: 'trash-drained', at: new Date(clock.now()).toISOString(), detail: { files: r.count, bytes: r.bytes, durationMs: r.durationMs, remaining: r.remaining } });
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
    // The per-job container engine (policy docker.mode): started before each listener, stopped after.
    guards: [engineGuard, ...hostGuards],
    processContainers: {
      create: async (name) => {
        // Unique per agent instance: two agents (or two tests) must never share a cgroup.
        const c = await createProcessContainer(`${name.replace(/[^A-Za-z0-9._-]/g, '_')}-${instance}`, {
          parent: cgroupParent,
          support: cgroupSupport,
        });
        slot.cgroup = c.path;
        return {
          add: (pid: number) => c.add(pid),
          ...(c.path ? { path: c.path } : {}),
          remove: async () => {
            await c.remove();
            if (slot.cgroup === c.path) delete slot.cgroup;
          },
        };
      },
    },
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
      const report = await runCleanup(ctx, defaultSteps({ trash }), async (c) => {
        await beforeVerify();
        return verify(c);
      });
      drainTrash();
      return report;
    },
  });

  const tasks: Promise<unknown>[] = [policies.run(bg.signal), metrics.run(bg.signal)];
  if (config.interruptions.imds) {
    tasks.push(
      watchInterruptions({
        endpoint: config.interruptions.imdsUrl,
        intervalMs: config.interruptions.intervalSeconds * 1000,
        clock: systemClock,
        log: log.child({ component: 'interruptions' }),
        signal: bg.signal,
        onNotice: (n) =>
          agent.drain(`${n.kind} notice: ${n.detail}`, { recycle: true, ...(n.deadlineAt !== undefined ? { deadlineAt: n.deadlineAt } : {}) }),
      }),
    );
  }
  let hostSample: HostSample | undefined;
  const sampler = new HostFiguresSampler({
    workDir: slot.workDir,
    log: log.child({ component: 'host-figures' }),
    sources: {
      ...systemSources,
      // The engine the current policy cleans: a dockerd that died between jobs shows here (and in
      // the ContainerEngineDown alert) rather than only as failed container jobs.
      containerEngine: async () => {
        const c = policies.current().cleanup.containers;
        return c.enabled ? probeEngine(c.socket, bg.signal) : undefined;
      },
      // Whether jobs can act as root through the engine (docker.mode host), for /status, `status` and the metric.
      dockerMode: async () => modeStatus(await engineGuard.mode(policies.current())),
    },
    onSample: (s) => {
      hostSample = s;
      metrics.hostFigures(s);
    },
  });
  tasks.push(sampler.run(bg.signal));
  let health: HealthServer | undefined;
  if (!o.noHealth) {
    health = await startHealthServer({
      listen: config.health.listen,
      ...(config.health.tokenFile ? { tokenFile: config.health.tokenFile } : {}),
      snapshot: () => ({ ...agent.snapshot(), ...(hostSample ? { host: hostSample } : {}) }),
      metrics,
      secrets: () => [...agent.secretValues(), ...(registrar?.secretValues() ?? [])],
      onDrain: () => agent.drain('drain requested (POST /drain)', { recycle: true }),
      log: log.child({ component: 'health' }),
    });
  }
  return {
    agent,
    slot,
    policies,
    metrics,
    journal,
    ...(health ? { health } : {}),
    async close() {
      await trashTask;
      bg.abort();
      await Promise.allSettled(tasks);
      await health?.close();
      caFetch?.close();
      // The slot's (empty) cgroup parent: each job's container was removed after its cleanup.
      for (const mount of [cgroupSupport.v2, cgroupSupport.v1Freezer]) {
        if (mount) await rmdir(path.join(mount, cgroupParent)).catch(() => {});
      }
    },
  };
}

/** The cgroup parent (relative to each hierarchy's mount point) of the slot whose state is in `stateDir`. */
export function slotCgroupParent(stateDir: string): string {
  return `${DEFAULT_CGROUP_PARENT}/slot-${createHash('sha256').update(path.resolve(stateDir)).digest('hex').slice(0, 12)}`;
}

/** Kills and removes the process containers a previous agent of this slot left (after a crash). */
async function removeStaleContainers(
  support: Awaited<ReturnType<typeof detectCgroupSupport>>,
  parent: string,
  log: Logger,
): Promise<void> {
  for (const mount of [support.v2, support.v1Freezer]) {
    if (!mount) continue;
    const dir = path.join(mount, parent);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const child = path.join(dir, name);
      if (!(await stat(child).catch(() => undefined))?.isDirectory()) continue;
      await openProcessContainer(child)
        .remove()
        .then(() => log.info({ cgroup: child }, 'removed a process container left by a previous agent'))
        .catch((err: unknown) => log.warn({ cgroup: child, err: String(err) }, 'could not remove a stale process container'));
    }
  }
}

/**
 * Fills the kubernetes provider's pod and API address from the environment the pod spec gives it
 * (downward API POD_NAME / POD_NAMESPACE, and the KUBERNETES_SERVICE_* every pod has), unless the
 * config names them. Other providers pass through unchanged.
 */
export function withDownwardApi(recycle: HostConfig['recycle'], env: NodeJS.ProcessEnv): HostConfig['recycle'] {
  const fill = (c: Record<string, unknown>): Record<string, unknown> =>
    c.provider !== 'kubernetes'
      ? c
      : {
          ...c,
          ...(c.podName === undefined && env.POD_NAME ? { podName: env.POD_NAME } : {}),
          ...(c.namespace === undefined && env.POD_NAMESPACE ? { namespace: env.POD_NAMESPACE } : {}),
          ...(c.serviceHost === undefined && c.apiUrl === undefined && env.KUBERNETES_SERVICE_HOST ? { serviceHost: env.KUBERNETES_SERVICE_HOST } : {}),
          ...(c.servicePort === undefined && env.KUBERNETES_SERVICE_PORT ? { servicePort: Number(env.KUBERNETES_SERVICE_PORT) } : {}),
        };
  const r = recycle as Record<string, unknown> & { fallback?: Record<string, unknown>[] };
  return { ...fill(r), ...(r.fallback ? { fallback: r.fallback.map(fill) } : {}) } as HostConfig['recycle'];
}
