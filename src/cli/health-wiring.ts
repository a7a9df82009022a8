/**
 * The agent's outward signs of life: the host-figures sampler (CPU, memory, disk, the container
 * engine, the docker mode) and the health server (/healthz, /readyz, /status, /metrics, /drain).
 */
import type { Logger } from '../lib/log.js';
import type { Agent } from '../agent/agent.js';
import type { PolicyStore } from '../policy/watch.js';
import type { Slot } from '../cleanup/types.js';
import type { HostConfig } from '../policy/types.js';
import type { AgentMetrics } from '../health/metrics.js';
import { startHealthServer, type HealthServer } from '../health/server.js';
import { portHolders } from '../health/port-holders.js';
import { HostFiguresSampler, type HostSample } from '../health/host-figures.js';
import { procSources } from '../health/proc-figures.js';
import { probeEngine } from '../cleanup/engine-inventory.js';
import { modeStatus } from '../engine/mode.js';
import type { EngineGuard } from '../engine/engine-guard.js';
import { imageCacheStatus } from '../engine/mirror-probe.js';
import type { JanitorTotals } from '../engine/mirror-janitor.js';

/** Host figures: `run` it in the background; `last()` is what /status shows. */
export interface HostFigures {
  run(signal: AbortSignal): Promise<void>;
  last(): HostSample | undefined;
}

/** The sampler of the slot's host figures, feeding the metrics. */
export function hostFigures(o: {
  slot: Slot;
  policies: PolicyStore;
  engineGuard: EngineGuard;
  metrics: AgentMetrics;
  log: Logger;
  signal: AbortSignal;
  /** What the agent's pruning of this host's image cache last found; undefined when it prunes none. */
  mirrorTotals?: () => JanitorTotals | undefined;
}): HostFigures {
  let last: HostSample | undefined;
  const sampler = new HostFiguresSampler({
    workDir: o.slot.workDir,
    log: o.log.child({ component: 'host-figures' }),
    sources: {
      // CPU and memory straight from /proc: systeminformation would cost an idle agent megabytes.
      ...procSources(),
      // The engine the current policy cleans: a dockerd that died between jobs shows here (and in
      // the ContainerEngineDown alert) rather than only as failed container jobs.
      containerEngine: async () => {
        const c = o.policies.current().cleanup.containers;
        return c.enabled ? probeEngine(c.socket, o.signal) : undefined;
      },
      // Whether jobs can act as root through the engine (docker.mode host), for /status, `status` and the metric.
      dockerMode: async () => modeStatus(await o.engineGuard.mode(o.policies.current())),
      // A cache that is down costs every job its pulls from the upstream: shown, not only in /metrics.
      imageCache: async () => {
        const url = o.policies.current().docker.mirror;
        return url ? imageCacheStatus(url, o.mirrorTotals?.(), o.signal) : undefined;
      },
    },
    onSample: (s) => {
      last = s;
      o.metrics.hostFigures(s);
    },
  });
  return { run: (signal) => sampler.run(signal), last: () => last };
}

/** How long the agent waits for a killed squatter's socket to leave the kernel's table before binding again. */
const SQUATTER_GONE_WAIT_MS = 5_000;

/**
 * Starts the health server on `config.health.listen`. When the port is held by a process of the
 * runner user (`runnerUid`), a job's process that outlived a stopped agent and now answers its
 * probes (a fake 200 for a dirty host), that process is killed and the port bound again, once: the
 * recovery would kill every process of that user anyway. Anyone else's process keeps the port, and
 * the start fails naming health.listen.
 */
export async function startAgentHealth(
  config: HostConfig,
  o: { agent: Agent; metrics: AgentMetrics; figures: HostFigures; extraSecrets: () => string[]; log: Logger; runnerUid?: number },
): Promise<HealthServer> {
  const start = (): Promise<HealthServer> =>
    startHealthServer({
      listen: config.health.listen,
      ...(config.health.tokenFile ? { tokenFile: config.health.tokenFile } : {}),
      snapshot: () => {
        const host = o.figures.last();
        return { ...o.agent.snapshot(), ...(host ? { host } : {}) };
      },
      metrics: o.metrics,
      secrets: () => [...o.agent.secretValues(), ...o.extraSecrets()],
      onDrain: () => o.agent.drain('drain requested (POST /drain)', { recycle: true }),
      log: o.log.child({ component: 'health' }),
    });
  try {
    return await start();
  } catch (err) {
    const code = (err as { cause?: NodeJS.ErrnoException }).cause?.code;
    if (code !== 'EADDRINUSE' || o.runnerUid === undefined || o.runnerUid === 0) throw err;
    const port = Number(config.health.listen.slice(config.health.listen.lastIndexOf(':') + 1));
    const holders = await portHolders(port, new Set([o.runnerUid]));
    const pids = holders.flatMap((h) => h.pids);
    if (pids.length === 0) throw err;
    o.log.warn({ port, uid: o.runnerUid, pids }, "the health port was held by the runner user's process (left by a job): killed");
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    const end = Date.now() + SQUATTER_GONE_WAIT_MS;
    while (Date.now() < end && (await portHolders(port, new Set([o.runnerUid]))).length > 0) {
      await new Promise((r) => setTimeout(r, 100));
    }
    return start();
  }
}
