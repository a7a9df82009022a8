/**
 * Warm images: a job's engine is given the images its team's jobs use before the job asks for
 * them, pulled through the image cache by the agent once the engine answers, in the background.
 *
 * ```
 *  engine answers ─► pull, one at a time, as the runner user (engine-call.ts):
 *                      the operator's docker.warm.images (by name, as listed)
 *                      then, with docker.warm.learn, the team's learnt images BY DIGEST (warm-store.ts)
 *                    a job's own pull of the same image joins the pull (dockerd shares the layers)
 *                    or finds it done
 *  job ends        ─► stop(): pulls still going are abandoned; learn() (warm-learn.ts) reads the
 *                    engine's images before its teardown
 * ```
 * A learnt entry whose pull failed is forgotten (a forged digest costs at most one failed pull;
 * dockerd reports an unknown digest as its fallback's error, not as "not found", so every
 * failure counts: a cache that was down costs the team its list until its jobs pull again).
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import type { Logger } from '../lib/log.js';
import { describeError } from '../lib/errors.js';
import { canonicalRef, parseHubRef } from './image-ref.js';
import { engineCallAsUser } from './engine-call.js';
import { readLearned, recordLearned } from './warm-store.js';

/**
 * One warm pull's limit: a few GB through the cache on a loaded host; past it the pull is
 * abandoned (the job's own pull of that image still works).
 */
const WARM_PULL_TIMEOUT_MS = 600_000;
/** Engines whose pulls are remembered: a slot has a job's engine and at most one warm one. */
const MAX_RUNS = 8;
/** A pull's answer is a progress stream; its last 64 KiB hold its outcome. */
const PULL_TAIL_BYTES = 64 * 1024;

/** The policy's `docker.warm` section. */
export interface WarmPolicy {
  images: string[];
  learn: boolean;
  max: number;
}

/** One finished warm pull, for the log, the metric and the bench. */
export interface WarmPull {
  image: string;
  ok: boolean;
  /** From the engine's first answer to the end of this pull. */
  afterAnswerMs: number;
  pullMs: number;
  error?: string;
}

/** Counters of /metrics. */
export interface WarmTotals {
  done: number;
  failed: number;
  /** Entries a job's engine reported that were refused (malformed, not Docker Hub). */
  dropped: number;
}

/** What one engine was asked to warm (learn() leaves these out of what the job pulled). */
export interface WarmPlan {
  team: string;
  stateDir: string;
  policy: WarmPolicy;
  /** The operator's images, canonical. */
  listed: string[];
  /** The team's learnt images (by digest), canonical, most recent first. */
  learnt: string[];
}

/** The images to warm for `team`: the listed ones, then the learnt ones; invalid listed names are logged and left out. */
export async function warmPlan(team: string, stateDir: string, policy: WarmPolicy, log: Logger): Promise<WarmPlan | undefined> {
  if (policy.images.length === 0 && !policy.learn) return undefined;
  if (!(await hasCurl())) {
    log.warn({ fix: 'install curl (apt-get install curl)' }, 'docker.warm: curl is not installed; no warm images');
    return undefined;
  }
  const listed: string[] = [];
  for (const name of policy.images) {
    const r = parseHubRef(name);
    if (r.ok) listed.push(canonicalRef(r.ref));
    else log.warn({ image: name, why: r.why }, 'docker.warm.images: left out');
  }
  const learnt = policy.learn ? (await readLearned(stateDir, team)).slice(0, policy.max) : [];
  return { team, stateDir, policy, listed: [...new Set(listed)], learnt: learnt.filter((x) => !listed.includes(x)) };
}

/** The agent's calls on an engine are curl runs (engine-call.ts). */
async function hasCurl(): Promise<boolean> {
  for (const p of ['/usr/bin/curl', '/bin/curl'])
    if (
      await fsp.access(p, fsc.X_OK).then(
        () => true,
        () => false,
      )
    )
      return true;
  return false;
}

interface Run {
  abort: AbortController;
  done: Promise<void>;
  plan: WarmPlan;
}

/** Warm pulls of every engine of one agent, by engine socket. */
export class WarmImages {
  readonly totals: WarmTotals = { done: 0, failed: 0, dropped: 0 };
  private readonly runs = new Map<string, Run>();

  constructor(private readonly onPulled?: (p: WarmPull) => void) {}

  /** What the engine on `socket` was asked to warm, if anything. */
  plan(socket: string): WarmPlan | undefined {
    return this.runs.get(socket)?.plan;
  }

  /** Pulls the plan's images into the engine on `socket` once `ready` resolves (its first answer). Never throws. */
  start(socket: string, ready: Promise<number>, user: { uid: number; gid: number }, plan: WarmPlan, log: Logger, cgroup?: string): void {
    if (this.runs.has(socket)) return;
    const abort = new AbortController();
    const done = (async () => {
      try {
        await ready;
      } catch {
        return;
      }
      const answered = Date.now();
      const failed: string[] = [];
      for (const image of [...plan.listed, ...plan.learnt]) {
        if (abort.signal.aborted) return;
        const p = await pullOne(socket, user, image, answered, abort.signal, cgroup);
        if (abort.signal.aborted) return;
        if (p.ok) this.totals.done++;
        else this.totals.failed++;
        if (!p.ok && plan.learnt.includes(image)) failed.push(image);
        this.onPulled?.(p);
        if (p.ok) log.info({ image, pullMs: p.pullMs, afterAnswerMs: p.afterAnswerMs }, 'warm image pulled');
        else log.warn({ image, error: p.error }, 'warm image not pulled');
      }
      if (failed.length > 0) await recordLearned(plan.stateDir, plan.team, [], plan.policy.max, failed);
    })().catch((err: unknown) => log.warn({ err: describeError(err) }, 'warm images: stopped'));
    this.runs.set(socket, { abort, done, plan });
    // An engine stopped without a release (a warm engine no job took) leaves its entry: keep the last few.
    for (const key of this.runs.keys()) if (this.runs.size > MAX_RUNS) this.runs.delete(key);
  }

  /** Abandons the warm pulls of the engine on `socket` and waits until they have stopped. */
  async stop(socket: string): Promise<WarmPlan | undefined> {
    const run = this.runs.get(socket);
    if (!run) return undefined;
    this.runs.delete(socket);
    run.abort.abort();
    await run.done;
    return run.plan;
  }

  /** Resolves when the engine's warm pulls are done (tests, the bench). */
  async settled(socket: string): Promise<void> {
    await this.runs.get(socket)?.done;
  }
}

/** One pull through the Engine API (`POST /images/create`). */
async function pullOne(
  socket: string,
  user: { uid: number; gid: number },
  image: string,
  answered: number,
  signal: AbortSignal,
  cgroup: string | undefined,
): Promise<WarmPull> {
  const t = Date.now();
  const r = parseHubRef(image);
  const ref = r.ok ? r.ref : { repo: '' };
  const q = new URLSearchParams({ fromImage: `docker.io/${ref.repo}`, tag: ref.digest ?? ref.tag ?? 'latest' });
  const a = await engineCallAsUser({
    socket,
    user,
    method: 'POST',
    path: `/images/create?${q.toString()}`,
    timeoutMs: WARM_PULL_TIMEOUT_MS,
    tailBytes: PULL_TAIL_BYTES,
    signal,
    ...(cgroup !== undefined ? { cgroup } : {}),
  });
  const last = a.body.trim().split('\n').at(-1) ?? '';
  let error = a.error ?? (a.status !== 200 ? `HTTP ${a.status}: ${last.slice(0, 300)}` : undefined);
  if (!error) {
    try {
      const j = JSON.parse(last) as { error?: unknown; errorDetail?: { message?: unknown } };
      if (j.error !== undefined || j.errorDetail !== undefined) error = String(j.error ?? j.errorDetail?.message).slice(0, 300);
    } catch {
      error = `an answer that is not the engine's: ${last.slice(0, 100)}`;
    }
  }
  const now = Date.now();
  return {
    image,
    ok: error === undefined,
    afterAnswerMs: now - answered,
    pullMs: now - t,
    ...(error !== undefined ? { error } : {}),
  };
}
