import { promises as fsp } from 'node:fs';
import { describeError } from '../lib/errors.js';
import { RECYCLE_DEFAULTS, type KubernetesRecycleConfig } from './config.js';
import { HttpNetworkError, httpRequest } from './http.js';
import type { RecycleProvider } from './port.js';

/** The API URL: `apiUrl` when given, else https://serviceHost:servicePort (IPv6 hosts bracketed). */
export function kubernetesApiUrl(config: KubernetesRecycleConfig): string | undefined {
  if (config.apiUrl !== undefined) return config.apiUrl.replace(/\/+$/, '');
  if (config.serviceHost === undefined) return undefined;
  const host = config.serviceHost.includes(':') ? `[${config.serviceHost}]` : config.serviceHost;
  return `https://${host}:${config.servicePort ?? 443}`;
}

/** Status.message of a Kubernetes error body, if it is one. */
function statusMessage(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { kind?: string; message?: unknown };
    return parsed.kind === 'Status' && typeof parsed.message === 'string' ? parsed.message : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `kubernetes`: deletes its own pod through the API with the service-account token, so the
 * controller (Deployment, ReplicaSet, ARC-style operator) starts a fresh one. The token and CA are
 * read at use time because projected service-account tokens rotate. A 404 is a failure here: we
 * run inside that pod, so it means the name or namespace is wrong and a fallback should run.
 */
export function kubernetesProvider(config: KubernetesRecycleConfig): RecycleProvider {
  const d = RECYCLE_DEFAULTS.kubernetes;
  const timeoutMs = (config.timeoutSeconds ?? d.timeoutSeconds) * 1000;
  const fail = (detail: string) => ({ provider: 'kubernetes', ok: false, detail });
  return {
    name: 'kubernetes',
    async recycle(_event, signal) {
      const base = kubernetesApiUrl(config);
      if (base === undefined) return fail('no API URL: set apiUrl or serviceHost (KUBERNETES_SERVICE_HOST)');
      if (config.podName === undefined) return fail('no pod name: pass the downward API pod name');
      let token: string;
      let namespace: string;
      let ca: string | undefined;
      try {
        token = (await fsp.readFile(config.tokenFile ?? d.tokenFile, 'utf8')).trim();
        namespace = config.namespace ?? (await fsp.readFile(config.namespaceFile ?? d.namespaceFile, 'utf8')).trim();
        if (base.startsWith('https:')) {
          ca = await fsp.readFile(config.caFile ?? d.caFile, 'utf8');
        }
      } catch (err) {
        return fail(`service account files: ${describeError(err)}`);
      }
      const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(config.podName)}`;
      const body =
        config.gracePeriodSeconds === undefined
          ? undefined
          : JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: config.gracePeriodSeconds });
      try {
        const res = await httpRequest(base + path, {
          method: 'DELETE',
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'application/json',
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          ...(body !== undefined ? { body } : {}),
          ...(ca !== undefined ? { ca } : {}),
          timeoutMs,
          signal,
        });
        const pod = `pod ${namespace}/${config.podName}`;
        if (res.status === 200 || res.status === 202) {
          return { provider: 'kubernetes', ok: true, detail: `${pod} deletion accepted (HTTP ${res.status})` };
        }
        const why = statusMessage(res.body);
        return fail(`delete ${pod}: HTTP ${res.status}${why ? `: ${why}` : ''}`);
      } catch (err) {
        if (!(err instanceof HttpNetworkError)) throw err;
        return fail(`delete pod: ${describeError(err)}`);
      }
    },
  };
}
