/**
 * The per-job container engine as a JobGuard:
 *
 * ```
 *  isolated  prepare: check the host (engine installed, subids, /dev/net/tun, no reach to a root
 *                     engine) → snapshot host network → start rootless dockerd in its own cgroup
 *                     → DOCKER_HOST for the listener
 *            release: kill its pid namespace, cgroup and subordinate-id processes → move its
 *                     directory aside and delete it in the background
 *            verify:  nothing of it left (processes, cgroup, socket, directory, mounts, network)
 *            prewarm: (option prewarm) the next job's engine starts while this host is verified
 *                     (warm-engine.ts); prepare takes it when started for the same user and mirror
 *            warm:    (policy docker.warm) once the engine answers, the team's images are pulled
 *                     into it in the background; release learns what it holds (warm-images.ts)
 *            prepare never waits for the engine's first answer: its socket (made by the agent,
 *            socket-activated) queues calls until dockerd serves; an engine that never answers
 *            is a verify finding
 *  host      prepare: a warning (jobs can act as root through the host's engine)
 *  none      prepare: refuse while the runner user could reach a root engine
 * ```
 * A host that cannot give the policy's mode is unfit (quarantined), never downgraded.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import {
  GuardUnfitError,
  type GuardContext,
  type GuardFinding,
  type GuardJob,
  type GuardPrepared,
  type GuardReleased,
  type JobGuard,
} from '../lib/job-guard.js';
import { detectCgroupSupport, DEFAULT_CGROUP_PARENT, type CgroupSupport } from '../lib/cgroup.js';
import { pidAlive } from '../lib/process.js';
import { writeFileAtomic } from '../lib/fs.js';
import { describeError } from '../lib/errors.js';
import type { Policy } from '../policy/types.js';
import {
  containerJobsRefused,
  DEFAULT_ENGINE_HOST_PATHS,
  findBinary,
  isolatedHostProblems,
  rootEngineReach,
  type EngineHostPaths,
  type RunnerUser,
} from './host-checks.js';
import { DEFAULT_HOST_NET_SOURCES, netAdded, snapshotHostNet, type HostNet, type HostNetSources } from './host-net.js';
import { resolveDockerMode, type DockerMode } from './mode.js';
import { engineLayout, EngineStartError, socketPathProblem, type EngineLayout } from './rootless-engine.js';
import { launchEngine, type Launched, type LaunchOptions } from './launch.js';
import { WarmEngine } from './warm-engine.js';
import { killEngine, mountsUnder, moveAsideAndDelete, subidProcesses, type EngineRecord } from './teardown.js';
import { cgroupName, recordedLayout, unfitIf, warmKey, warmLayoutSample } from './engine-guard-helpers.js';
import { WarmImages, warmPlan, type WarmPull, type WarmTotals } from './warm-images.js';
import { learnWarmImages } from './warm-learn.js';
import { mirrorForEngine } from './mirror-address.js';
import { DEFAULT_MIRROR_STORAGE, gibToBytes, mirrorProblems } from './mirror-checks.js';
import { startApiProxy, type ApiProxy } from './api-proxy.js';
import { releaseHostImages, takeImageBaseline, verifyHostImages } from './image-baseline.js';

/** Options of the guard; every default is the production one. */
export interface EngineGuardOptions {
  paths?: EngineHostPaths;
  net?: HostNetSources;
  /** Cgroup parent of the engines (default runner-warden, beside the listener's). */
  cgroupParent?: string;
  cgroupSupport?: CgroupSupport;
  /** The container hooks entry script; when set the listener gets ACTIONS_RUNNER_CONTAINER_HOOKS. */
  containerHooks?: string;
  /** PATH of the engine (default: the binDirs). */
  enginePath?: string;
  /** Called with each engine's start time (the metric's observation). */
  onStarted?: (ms: number) => void;
  /** The slot's runner user, checked at preflight (verify without a job). */
  runnerUser?: RunnerUser;
  /** The agent's state directory: host mode keeps its image baseline there (root-only). */
  stateDir?: string;
  /** The image cache's storage directory, checked for room at preflight (default the packaged one). */
  mirrorStorage?: string;
  /** The runner installation (its `.env` may configure container hooks). */
  runnerRoot?: string;
  /** The per-job directories' root (where a warm engine waits); default: the parent of the last job's directory. */
  jobRoot?: string;
  /**
   * Start the next job's engine at verification (prewarm); default false. With the socket
   * activated the listener never waits for an engine, and on a host with few cores a warm
   * engine's start competes with the verification it overlaps (docs/docker.md's figures).
   */
  prewarm?: boolean;
  /** dockerd's storage driver for every engine (default vfs). */
  storageDriver?: LaunchOptions['storageDriver'];
  /** Called with each finished warm pull (policy docker.warm; the bench's figure). */
  onWarmPull?: (p: WarmPull) => void;
}

/**
 * How old the last verify's host network snapshot may be to serve as the next cold engine's
 * baseline: the decision and a registration take seconds; past two minutes (the host idled or
 * was drained) a fresh one is taken, so a change the host made meanwhile is not blamed on a job.
 */
const NET_BASELINE_REUSE_MS = 120_000;

/** Host mode: the policy proxy's socket in the job's directory. */
const PROXY_SOCKET = 'engine-proxy.sock';

/** The file (root-owned, world-readable) that tells the container hooks what a job may ask. */
export const ALLOW_FILE = 'docker-allow.json';

/** The per-job container engine. */
export class EngineGuard implements JobGuard<Policy> {
  readonly name = 'engine';
  private readonly paths: EngineHostPaths;
  private readonly net: HostNetSources;
  private readonly deletions = new Set<Promise<void>>();
  /** Host mode: the running proxy of each job, by job key. */
  private readonly proxies = new Map<string, ApiProxy>();
  private support: CgroupSupport | undefined;
  private readonly warm = new WarmEngine((p) => this.track(p));
  /** Warm images (policy docker.warm) pulled into each engine once it answers, by engine socket. */
  private readonly warmImages = new WarmImages((p) => this.opts.onWarmPull?.(p));
  /** Learnt from the first job when no jobRoot option was given. */
  private jobRoot: string | undefined;
  /** Each prepared job's engine start until its verify, by job key. */
  private readonly starts = new Map<string, EngineStart>();
  /**
   * What release found in each job's record, until that job's verify: the cleanup pipeline
   * moves the job's directory (and the record in it) into the trash between the two.
   */
  private readonly released = new Map<string, { layout: EngineLayout; rec: EngineRecord }>();
  /** The host's network as the last verify saw it with no engine running, and when. */
  private lastNet: { at: number; net: HostNet } | undefined;

  constructor(private readonly opts: EngineGuardOptions = {}) {
    this.paths = opts.paths ?? DEFAULT_ENGINE_HOST_PATHS;
    this.net = opts.net ?? DEFAULT_HOST_NET_SOURCES;
    this.support = opts.cgroupSupport;
  }

  /** Warm pulls done and failed, entries refused (for /metrics). */
  get warmTotals(): WarmTotals {
    return this.warmImages.totals;
  }

  /** The mode this host gives `policy` for the slot's runner user (for /status, `status`, the metric label). */
  async mode(policy: Policy, user: RunnerUser | undefined = this.opts.runnerUser): Promise<DockerMode> {
    return (await resolveDockerMode(policy, this.hostPaths(policy), user)).mode;
  }

  /** Resolves the mode and logs why `auto` gave none on a host that has an engine. */
  private async resolve(policy: Policy, user: RunnerUser | undefined, ctx: GuardContext): Promise<DockerMode> {
    const { mode, autoProblems } = await resolveDockerMode(policy, this.hostPaths(policy), user);
    if (autoProblems.length > 0) {
      ctx.log.warn(
        { problems: autoProblems.map((p) => p.what), fixes: autoProblems.map((p) => p.fix) },
        'docker mode auto: no per-job engine on this host, jobs get none',
      );
    }
    return mode;
  }

  async prepare(job: GuardJob, policy: Policy, ctx: GuardContext): Promise<GuardPrepared> {
    const mode = await this.resolve(policy, job.user, ctx);
    await writeFileAtomic(path.join(job.dir, ALLOW_FILE), `${JSON.stringify({ mode, allow: policy.docker.allow })}\n`, 0o644);
    // Not RUNNER_WARDEN_*: that prefix is the agent's own configuration, which never reaches a job.
    const env: Record<string, string> = { CONTAINER_HOOKS_DOCKER_POLICY: path.join(job.dir, ALLOW_FILE) };
    if (this.opts.containerHooks) env.ACTIONS_RUNNER_CONTAINER_HOOKS = this.opts.containerHooks;
    if (mode === 'host') {
      ctx.log.warn({ mode }, 'docker mode host: jobs can act as root through the host engine');
      const direct = await rootEngineReach(job.user, this.hostPaths(policy));
      if (direct.length > 0)
        ctx.log.warn({ problems: direct.map((p) => p.what) }, 'docker mode host: the runner user can bypass the policy proxy');
      const proxy = await startApiProxy({
        listen: path.join(job.dir, PROXY_SOCKET),
        upstream: policy.cleanup.containers.socket,
        allow: policy.docker.allow,
        workspaceRoots: [path.join(job.runnerRoot, '_work'), job.dir],
        owner: job.user,
      });
      this.proxies.set(job.key, proxy);
      env.DOCKER_HOST = `unix://${proxy.socket}`;
      return { env, notes: ['docker mode host: jobs can act as root through the host engine; creates go through the policy proxy'] };
    }
    if (mode === 'none') {
      unfitIf(await rootEngineReach(job.user, this.hostPaths(policy)), 'docker mode none');
      return { env, notes: ['docker mode none: no engine'] };
    }
    unfitIf(await isolatedHostProblems(job.user, this.hostPaths(policy)), 'docker mode isolated');
    this.jobRoot ??= path.dirname(job.dir);
    const mirror = mirrorForEngine(policy.docker.mirror);
    const waitStarted = Date.now();
    const warm = await this.warm.take(warmKey(job.user, mirror, policy));
    if (warm) {
      await writeFileAtomic(engineLayout(job.dir).record, JSON.stringify({ ...warm.rec, dir: warm.layout.dir }));
      const waited = Date.now() - waitStarted;
      this.watch(job.key, warm, ctx);
      ctx.log.info({ waitedMs: waited, socket: warm.layout.socket }, 'job engine taken (started while the previous job was verified)');
      env.DOCKER_HOST = `unix://${warm.layout.socket}`;
      return { env, notes: [`docker mode isolated: rootless engine started during the previous verification, waited ${waited} ms`] };
    }
    const layout = engineLayout(job.dir);
    const last = this.lastNet;
    this.lastNet = undefined;
    const netBefore = last && Date.now() - last.at < NET_BASELINE_REUSE_MS ? last.net : undefined;
    try {
      const started = await this.launch(layout, job.user, cgroupName(job.key), mirror, ctx.signal, netBefore);
      const waited = Date.now() - waitStarted;
      this.watch(job.key, started, ctx);
      await this.warmUp(started, job.user, policy, job.stateDir, ctx);
      env.DOCKER_HOST = `unix://${layout.socket}`;
      return {
        env,
        notes: [`docker mode isolated: rootless engine spawned in ${waited} ms; its socket queues calls until it answers`],
      };
    } catch (err) {
      await this.release(job, policy, ctx).catch(() => undefined);
      if (err instanceof EngineStartError) {
        throw new GuardUnfitError(this.name, `the job's engine did not start: ${err.message}: ${err.log}`, `see ${layout.log}`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  /**
   * Starts the next job's engine while this host is verified (off the ready path); the next
   * prepare takes it. Only for isolated mode on a host that can give it; never throws.
   */
  prewarm(policy: Policy, ctx: GuardContext): void {
    const user = this.opts.runnerUser;
    const jobRoot = this.opts.jobRoot ?? this.jobRoot;
    if (this.opts.prewarm !== true || !user || !jobRoot || this.warm.pending) return;
    const mirror = mirrorForEngine(policy.docker.mirror);
    this.warm.start(
      warmKey(user, mirror, policy),
      jobRoot,
      async (layout, signal) => {
        const { mode } = await resolveDockerMode(policy, this.hostPaths(policy), user);
        if (mode !== 'isolated' || (await isolatedHostProblems(user, this.hostPaths(policy))).length > 0) return undefined;
        const l = await this.launch(layout, user, cgroupName(`warm-${path.basename(path.dirname(layout.dir))}`), mirror, signal);
        await this.warmUp(l, user, policy, this.opts.stateDir, ctx);
        return l;
      },
      ctx.log,
    );
  }

  /**
   * Follows a job's engine to its first answer without holding the listener: the outcome is
   * logged, observed (onStarted) and kept for verify, where an engine that never answered is a
   * finding (the host could not give the policy's mode).
   */
  private watch(key: string, l: Launched, ctx: GuardContext): void {
    const st: EngineStart = { state: 'starting' };
    this.starts.set(key, st);
    this.track(
      l.ready.then(
        (ms) => {
          if (st.state === 'starting') st.state = 'ready';
          this.opts.onStarted?.(ms);
          ctx.log.info({ startMs: ms, socket: l.layout.socket }, 'job engine ready');
        },
        (err: unknown) => {
          if (st.state !== 'starting') return;
          st.state = 'failed';
          st.error = err instanceof EngineStartError ? `${err.message}: ${err.log}` : describeError(err);
          ctx.log.error({ err: describeError(err), log: l.layout.log }, "the job's engine did not start");
        },
      ),
    );
  }

  /**
   * Pulls the team's warm images (policy docker.warm) into a just-launched engine once it
   * answers, in the background (warm-images.ts); learnt ones only with a state directory.
   */
  private async warmUp(l: Launched, user: RunnerUser, policy: Policy, stateDir: string | undefined, ctx: GuardContext): Promise<void> {
    const w = policy.docker.warm;
    const plan = await warmPlan(policy.team, stateDir ?? '', { ...w, learn: w.learn && stateDir !== undefined }, ctx.log);
    if (plan) this.warmImages.start(l.layout.socket, l.ready, user, plan, ctx.log, l.rec.cgroup);
  }

  /** Starts an engine in `layout` for `user`; resolves once it runs (its `ready` says when it answers). */
  private async launch(
    layout: EngineLayout,
    user: RunnerUser,
    cgroup: string,
    mirror: { url?: string; hostLoopback: boolean },
    signal: AbortSignal,
    netBefore?: HostNet,
  ): Promise<Launched> {
    return launchEngine({
      layout,
      user,
      subuidFile: this.paths.subuid,
      net: this.net,
      cgroupName: cgroup,
      cgroupParent: this.opts.cgroupParent ?? DEFAULT_CGROUP_PARENT,
      cgroupSupport: await this.cgroupSupport(),
      rootlesskit: (await findBinary('rootlesskit', this.paths.binDirs)) as string,
      enginePath: this.opts.enginePath ?? this.paths.binDirs.join(':'),
      mirror,
      ...(netBefore ? { netBefore } : {}),
      ...(this.opts.storageDriver ? { storageDriver: this.opts.storageDriver } : {}),
      signal,
    });
  }

  async release(job: GuardJob, policy: Policy, ctx: GuardContext): Promise<GuardReleased> {
    const proxy = this.proxies.get(job.key);
    if (proxy) {
      this.proxies.delete(job.key);
      await proxy.close();
      if (proxy.refused.length > 0) ctx.log.info({ refused: proxy.refused }, 'engine proxy refused requests');
    }
    if (this.keepsHostImages(policy) && (await this.mode(policy, job.user)) === 'host')
      return releaseHostImages(policy.cleanup.containers.socket, this.opts.stateDir as string);
    const { layout, rec } = await recordedLayout(job);
    if (!rec) return { outcome: 'skipped', reason: 'no engine was started for this job' };
    this.released.set(job.key, { layout, rec });
    const st = this.starts.get(job.key);
    // Before the teardown: warm pulls still going are abandoned; the team learns what the engine holds.
    const plan = await this.warmImages.stop(layout.socket);
    if (plan?.policy.learn && st?.state === 'ready')
      await learnWarmImages(layout.socket, job.user, plan, this.warmImages.totals, ctx.log, rec.cgroup);
    if (st?.state === 'starting') {
      // Killed now, so its start fails: that is this release's doing, not the host's.
      st.state = 'released';
      ctx.log.warn({}, 'the job ended before its engine answered');
    }
    const { killed, left } = await killEngine(rec);
    const { moved, done } = await moveAsideAndDelete(layout);
    this.track(done);
    const removed = { 'engine processes': { count: killed, bytes: 0 }, 'engine directories': { count: moved ? 1 : 0, bytes: 0 } };
    if (left.length > 0) {
      ctx.log.error({ pids: left }, 'engine processes survived SIGKILL');
      return { removed, outcome: 'dirty', reason: `${left.length} engine process(es) survived SIGKILL` };
    }
    return { removed, outcome: 'ok' };
  }

  async verify(job: GuardJob | undefined, policy: Policy, ctx: GuardContext): Promise<GuardFinding[]> {
    if (job === undefined) {
      const user = this.opts.runnerUser;
      const mode = await this.resolve(policy, user, ctx);
      if (mode === 'host') {
        ctx.log.warn({ mode }, 'docker mode host: jobs can act as root through the host engine');
        if (this.keepsHostImages(policy) && this.opts.stateDir)
          await takeImageBaseline(policy.cleanup.containers.socket, this.opts.stateDir);
      }
      const refused = await containerJobsRefused(
        this.paths,
        this.opts.containerHooks,
        this.opts.runnerRoot ? path.join(this.opts.runnerRoot, '.env') : undefined,
      );
      if (refused) ctx.log.warn({ problem: refused.what, fix: refused.fix }, 'container jobs will be refused');
      if (mode === 'isolated' && policy.docker.mirror) {
        const storage = this.opts.mirrorStorage ?? DEFAULT_MIRROR_STORAGE;
        for (const p of await mirrorProblems(policy.docker.mirror, storage, gibToBytes(policy.docker.mirrorCapGiB)))
          ctx.log.warn({ problem: p.what, fix: p.fix }, 'image cache');
      }
      if (!user || mode === 'host') return [];
      const problems =
        mode === 'isolated'
          ? await isolatedHostProblems(user, this.hostPaths(policy))
          : await rootEngineReach(user, this.hostPaths(policy));
      // A job root too deep for containerd's socket: every warm engine would fail after 15 s.
      const deep = mode === 'isolated' && this.opts.jobRoot ? socketPathProblem(warmLayoutSample(this.opts.jobRoot)) : undefined;
      if (deep) problems.push(deep);
      return problems.map((p) => ({ problem: `docker mode ${mode}: ${p.what}`, detail: { fix: p.fix } }));
    }
    if (this.keepsHostImages(policy) && (await this.mode(policy, job.user)) === 'host')
      return verifyHostImages(policy.cleanup.containers.socket, this.opts.stateDir as string);
    const kept = this.released.get(job.key);
    this.released.delete(job.key);
    const recorded = await recordedLayout(job);
    const { layout, rec } = recorded.rec ? recorded : (kept ?? recorded);
    const st = this.starts.get(job.key);
    this.starts.delete(job.key);
    if (!rec) return [];
    const findings: GuardFinding[] = [];
    if (st?.state === 'failed')
      findings.push({ problem: `the job's engine never answered: ${st.error ?? 'unknown'}`, detail: { fix: 'see the agent log' } });
    if (rec.pid !== undefined && pidAlive(rec.pid)) findings.push({ problem: `engine process ${rec.pid} still runs` });
    if (rec.cgroup !== undefined) {
      const procs = await fsp.readFile(path.join(rec.cgroup, 'cgroup.procs'), 'utf8').catch(() => '');
      const n = procs.split('\n').filter(Boolean).length;
      if (n > 0) findings.push({ problem: `engine cgroup ${rec.cgroup} still holds ${n} process(es)` });
    }
    const strays = await subidProcesses(rec.subuids);
    if (strays.length > 0)
      findings.push({ problem: `${strays.length} process(es) run under the runner user's subordinate ids`, detail: { pids: strays } });
    for (const p of [layout.dir, layout.socket]) {
      if (
        await fsp.lstat(p).then(
          () => true,
          () => false,
        )
      )
        findings.push({ problem: `engine path ${p} still exists` });
    }
    for (const mp of await mountsUnder(job.dir)) findings.push({ problem: `mount ${mp} left under the job's directory` });
    const netNow = await snapshotHostNet(this.net);
    for (const line of netAdded(rec.net, netNow)) findings.push({ problem: `${line} appeared on the host during the job` });
    // The next cold start's baseline, unless this check found leftovers (then they must not become normal).
    this.lastNet = findings.length === 0 ? { at: Date.now(), net: netNow } : undefined;
    return findings;
  }

  /** Stops a warm engine nobody took, then resolves when every background deletion has finished (tests, shutdown). */
  async drain(): Promise<void> {
    await this.warm.discard();
    while (this.deletions.size > 0) await Promise.all([...this.deletions]);
  }

  /** Host mode keeping images: images are a shared cache whose tags must not move. */
  private keepsHostImages(policy: Policy): boolean {
    return policy.cleanup.containers.images === 'keep' && this.opts.stateDir !== undefined;
  }

  private track(p: Promise<void>): void {
    this.deletions.add(p);
    void p.finally(() => this.deletions.delete(p));
  }

  private hostPaths(policy: Policy): EngineHostPaths {
    return { ...this.paths, hostSockets: [...this.paths.hostSockets, policy.cleanup.containers.socket] };
  }

  private async cgroupSupport(): Promise<CgroupSupport> {
    this.support ??= await detectCgroupSupport();
    return this.support;
  }
}

/** Where a job's engine start stands: `released` when the job ended first (its release killed it). */
interface EngineStart {
  state: 'starting' | 'ready' | 'failed' | 'released';
  error?: string;
}
