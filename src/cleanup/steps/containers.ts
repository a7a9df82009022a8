/**
 * Step "containers": when a Docker-compatible engine answers on policy.containers.socket, removes
 * the containers (forced, with their anonymous volumes), volumes and networks the job created,
 * then images and build cache as the policy says. No engine → "skipped: no engine".
 *
 * "Created by the job" = created at or after ctx.jobStartedAt (the engine stamps containers and
 * images to the second, so the comparison is at second granularity). Without a job start (a manual
 * `runner-warden cleanup`, or a restart that lost it), every container, volume and non-predefined
 * network counts as the job's: a runner host runs nothing of its own in the engine; images are
 * then kept unless the policy says `all`.
 */
import { describeError } from '../../lib/errors.js';
import {
  DockerApi,
  isNoEngine,
  PREDEFINED_NETWORKS,
  type ContainerSummary,
  type ImageSummary,
  type NetworkSummary,
  type VolumeSummary,
} from '../docker-api.js';
import { addRemoved, capLines } from '../report.js';
import type { CleanupContext, CleanupStep, Removed, StepReport } from '../types.js';

/** What the job left in the engine, by the policy's scope. */
export interface JobResources {
  containers: ContainerSummary[];
  volumes: VolumeSummary[];
  networks: NetworkSummary[];
  images: ImageSummary[];
}

/**
 * Epoch second from which engine objects count as the job's; undefined = everything. The policy
 * may widen it to everything with `containers.scope: all` (a field the policy schema may add).
 */
export function jobSinceSeconds(ctx: Pick<CleanupContext, 'policy' | 'jobStartedAt'>): number | undefined {
  const scope = (ctx.policy.containers as { scope?: string }).scope;
  if (scope === 'all' || ctx.jobStartedAt === undefined) return undefined;
  return Math.floor(ctx.jobStartedAt / 1000);
}

function isoSeconds(s: string | undefined): number | undefined {
  if (!s) return undefined;
  const ms = Date.parse(s.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000);
}

/** Lists the job's containers, volumes, networks and (per policy.containers.images) images. */
export async function listJobResources(
  api: DockerApi,
  ctx: Pick<CleanupContext, 'policy' | 'jobStartedAt' | 'engineBefore'>,
): Promise<JobResources> {
  const p = ctx.policy.containers;
  const out: JobResources = { containers: [], volumes: [], networks: [], images: [] };
  const before = (ctx.policy.containers as { scope?: string }).scope === 'all' ? undefined : ctx.engineBefore;
  if (before) {
    // The inventory taken before the job decides: what was there stays, whatever its timestamps say.
    const had = {
      containers: new Set(before.containers),
      volumes: new Set(before.volumes),
      networks: new Set(before.networks),
      images: new Set(before.images),
    };
    if (p.containers) out.containers = (await api.containers()).filter((c) => !had.containers.has(c.Id));
    if (p.volumes) out.volumes = (await api.volumes()).filter((v) => !had.volumes.has(v.Name));
    if (p.networks) out.networks = (await api.networks()).filter((n) => !PREDEFINED_NETWORKS.has(n.Name) && !had.networks.has(n.Id));
    if (p.images === 'all') out.images = await api.images();
    else if (p.images === 'job') out.images = (await api.images()).filter((i) => !had.images.has(i.Id));
    return out;
  }
  // No inventory (a manual pass, or an agent that crashed before taking one): creation times.
  const since = jobSinceSeconds(ctx);
  const after = (sec: number | undefined): boolean => since === undefined || sec === undefined || sec >= since;
  if (p.containers) out.containers = (await api.containers()).filter((c) => after(c.Created));
  if (p.volumes) out.volumes = (await api.volumes()).filter((v) => after(isoSeconds(v.CreatedAt)));
  if (p.networks) {
    out.networks = (await api.networks()).filter((n) => !PREDEFINED_NETWORKS.has(n.Name) && after(isoSeconds(n.Created)));
  }
  if (p.images === 'all') out.images = await api.images();
  else if (p.images === 'job' && since !== undefined) out.images = (await api.images()).filter((i) => i.Created >= since);
  return out;
}

/** The containers step (tests point it at their own engine through policy.containers.socket). */
export function containersStep(): CleanupStep {
  return {
    name: 'containers',
    async run(ctx: CleanupContext): Promise<Omit<StepReport, 'name' | 'durationMs'>> {
      const p = ctx.policy.containers;
      if (!p.enabled) return { outcome: 'skipped', removed: {}, reason: 'disabled by policy' };
      const api = new DockerApi(p.socket, ctx.signal);
      try {
        await api.version();
      } catch (err) {
        if (isNoEngine(err)) return { outcome: 'skipped', removed: {}, reason: 'no engine' };
        throw err;
      }
      const res = await listJobResources(api, ctx);
      if (ctx.dryRun) {
        const plan = [
          ...res.containers.map((c) => `container ${c.Id.slice(0, 12)} ${c.Names?.[0] ?? ''}`.trim()),
          ...res.volumes.map((v) => `volume ${v.Name}`),
          ...res.networks.map((n) => `network ${n.Name}`),
          ...res.images.map((i) => `image ${i.Id.slice(0, 19)} ${i.RepoTags?.[0] ?? ''}`.trim()),
          ...(p.buildCache ? ['build cache'] : []),
        ];
        return { outcome: 'ok', removed: {}, plan: capLines(plan) };
      }
      const removed: Record<string, Removed> = {};
      const problems: string[] = [];
      const attempt = async (kind: string, what: string, fn: () => Promise<boolean>, bytes = 0): Promise<void> => {
        try {
          if (await fn()) addRemoved(removed, kind, { count: 1, bytes });
        } catch (err) {
          problems.push(`${kind} ${what}: ${describeError(err)}`);
        }
      };
      // Containers first: volumes, networks and images in use cannot go before them.
      for (const c of res.containers) await attempt('container', c.Id.slice(0, 12), () => api.removeContainer(c.Id));
      for (const v of res.volumes) await attempt('volume', v.Name, () => api.removeVolume(v.Name));
      for (const n of res.networks) await attempt('network', n.Name, () => api.removeNetwork(n.Id));
      for (const i of res.images) await attempt('image', i.Id.slice(0, 19), () => api.removeImage(i.Id), i.Size ?? 0);
      if (p.buildCache) {
        try {
          addRemoved(removed, 'build-cache', { count: 1, bytes: await api.pruneBuildCache() });
        } catch (err) {
          // podman's compat API has no build cache endpoint: nothing to prune there.
          if (!(err as { status?: number }).status || (err as { status?: number }).status !== 404) {
            problems.push(`build cache: ${describeError(err)}`);
          }
        }
      }
      // Trust nothing: look again.
      const left = await listJobResources(api, { ...ctx, policy: { ...ctx.policy, containers: { ...p, images: 'keep' } } });
      for (const c of left.containers) problems.push(`container ${c.Id.slice(0, 12)} still present`);
      for (const v of left.volumes) problems.push(`volume ${v.Name} still present`);
      for (const n of left.networks) problems.push(`network ${n.Name} still present`);
      if (problems.length > 0) return { outcome: 'dirty', removed, reason: capLines(problems, 5).join('; ') };
      return { outcome: 'ok', removed };
    },
  };
}
