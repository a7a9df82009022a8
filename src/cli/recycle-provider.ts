/**
 * The recycler the agent calls when the host must go: the configured provider chain (with its
 * fallbacks), each attempt stamped with this host's name, the time and an idempotency key.
 */
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { FleetPlace } from '../lib/fleet-slots.js';
import type { HostConfig } from '../policy/types.js';
import type { RecyclePort } from '../agent/agent.js';
import { createRecycler } from '../recycle/chain.js';

/** The agent's recycler for `config.recycle`, or undefined when it is absent or `none`. */
export function buildRecycler(
  config: HostConfig,
  o: { env: NodeJS.ProcessEnv; clock: Clock; log: Logger; configFile: string; hostname: string; fleet?: FleetPlace },
): RecyclePort | undefined {
  if (!config.recycle || config.recycle.provider === 'none') return undefined;
  const { clock, hostname } = o;
  const chain = createRecycler(withDownwardApi(config.recycle, o.env), {
    clock,
    log: o.log,
    configFile: o.configFile,
    ...(o.fleet ? { fleet: o.fleet } : {}),
  });
  return {
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

/**
 * Fills the kubernetes provider's pod and API address from the environment the pod spec gives it
 * (downward API POD_NAME / POD_NAMESPACE, and the KUBERNETES_SERVICE_* every pod has), unless the
 * config names them. Other providers pass through unchanged.
 */
export function withDownwardApi(recycle: HostConfig['recycle'], env: NodeJS.ProcessEnv): HostConfig['recycle'] {
  const fill = (c: HostConfig['recycle']): HostConfig['recycle'] =>
    c.provider !== 'kubernetes'
      ? c
      : {
          ...c,
          ...(c.podName === undefined && env.POD_NAME ? { podName: env.POD_NAME } : {}),
          ...(c.namespace === undefined && env.POD_NAMESPACE ? { namespace: env.POD_NAMESPACE } : {}),
          ...(c.serviceHost === undefined && c.apiUrl === undefined && env.KUBERNETES_SERVICE_HOST
            ? { serviceHost: env.KUBERNETES_SERVICE_HOST }
            : {}),
          ...(c.servicePort === undefined && env.KUBERNETES_SERVICE_PORT ? { servicePort: Number(env.KUBERNETES_SERVICE_PORT) } : {}),
        };
  return { ...fill(recycle), ...(recycle.fallback ? { fallback: recycle.fallback.map(fill) } : {}) };
}
