/**
 * A loopback fake of what the gcp-mig provider talks to, on one HTTP server:
 * - the metadata server: GET /computeMetadata/v1/... answered only with `Metadata-Flavor: Google`
 *   (403 without, as the real one), the header echoed back; the default service account's token;
 * - the Compute Engine API: POST /compute/v1/projects/P/(zones|regions)/L/instanceGroupManagers/N/
 *   deleteInstances and .../recreateInstances with the bearer token, answering an Operation, or
 *   `{"error": {...}}` as Google APIs do.
 * The group is modelled (target size, instances) so tests read the effect; `failNext` programs an
 * API error. The API enforces a per-minute request quota per project, as Compute Engine does: past
 * it the answer is 429 `rateLimitExceeded` (the metadata server is not limited: it is per VM).
 * Every request is recorded.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { RateBucket, type CloudRate } from '../cloud-rate.js';
import { listenOnLoopback } from '../loopback.js';

/**
 * Compute Engine counts API requests per project per minute (quotas of a few thousand a minute,
 * raised on request): the fake's default is 1,200 a minute, a minute's worth at once at most.
 */
export const DEFAULT_GCP_RATE: CloudRate = { burst: 1200, perSecond: 20 };

/** One request the fake saw. */
export interface FakeGcpCall {
  service: 'metadata' | 'compute';
  method: string;
  path: string;
  body?: unknown;
  status: number;
}

/** The fake's world; defaults: VM runner-abc1 of group "runners" (size 2) in my-project, us-central1-a. */
export interface FakeGcpOptions {
  project?: string;
  projectNumber?: string;
  zone?: string;
  instanceName?: string;
  group?: string;
  targetSize?: number;
  /** A regional group (`regions/<region>` in created-by) instead of a zonal one. */
  regional?: boolean;
  /** Leave the created-by attribute out (a VM that no group created). */
  noCreatedBy?: boolean;
  /** More VMs of the group (a fleet), besides `instanceName`. */
  moreInstances?: string[];
  /** The API's request rate; default DEFAULT_GCP_RATE; false: unlimited. */
  rate?: CloudRate | false;
  /** The clock of the rate; default the system clock. */
  clock?: Clock;
}

/** A running fake. */
export interface FakeGcp {
  url: string;
  calls: FakeGcpCall[];
  /** The bearer token the metadata server hands out and the API requires. */
  token: string;
  group: { name: string; targetSize: number; instances: Map<string, { status: 'RUNNING' | 'DELETING' | 'RECREATING' }> };
  /** Throttling answers so far. */
  throttled(): number;
  /** The next API call answers with this error. */
  failNext(status: number, reason: string, message: string): void;
  close(): Promise<void>;
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeGcp(opts: FakeGcpOptions = {}): Promise<FakeGcp> {
  const project = opts.project ?? 'my-project';
  const projectNumber = opts.projectNumber ?? '123456789012';
  const zone = opts.zone ?? 'us-central1-a';
  const instanceName = opts.instanceName ?? 'runner-abc1';
  const groupName = opts.group ?? 'runners';
  const location = opts.regional ? `regions/${zone.replace(/-[a-z]$/, '')}` : `zones/${zone}`;
  const token = `ya29.fake-${randomBytes(12).toString('hex')}`;
  const group: FakeGcp['group'] = {
    name: groupName,
    targetSize: opts.targetSize ?? 2,
    instances: new Map([instanceName, ...(opts.moreInstances ?? [])].map((n) => [n, { status: 'RUNNING' as const }])),
  };
  const bucket = opts.rate === false ? undefined : new RateBucket(opts.rate ?? DEFAULT_GCP_RATE, opts.clock);
  const metadata: Record<string, string> = {
    'project/project-id': project,
    'project/numeric-project-id': projectNumber,
    'instance/zone': `projects/${projectNumber}/zones/${zone}`,
    'instance/name': instanceName,
    'instance/service-accounts/default/token': JSON.stringify({ access_token: token, expires_in: 3599, token_type: 'Bearer' }),
    ...(opts.noCreatedBy
      ? {}
      : { 'instance/attributes/created-by': `projects/${projectNumber}/${location}/instanceGroupManagers/${groupName}` }),
  };
  const calls: FakeGcpCall[] = [];
  let failure: { status: number; reason: string; message: string } | undefined;
  const groupPath = new RegExp(
    `^/compute/v1/projects/(${project}|${projectNumber})/${location}/instanceGroupManagers/${groupName}/(deleteInstances|recreateInstances)$`,
  );

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        body = raw;
      }
      const answer = (service: FakeGcpCall['service'], status: number, payload: unknown, headers: Record<string, string> = {}): void => {
        calls.push({ service, method: req.method ?? '', path: url.pathname, ...(body !== undefined ? { body } : {}), status });
        const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
        res.writeHead(status, { 'content-type': typeof payload === 'string' ? 'application/text' : 'application/json', ...headers });
        res.end(text);
      };
      const apiError = (status: number, reason: string, message: string): void =>
        answer('compute', status, { error: { code: status, message, errors: [{ message, domain: 'global', reason }], status: reason } });

      if (url.pathname.startsWith('/computeMetadata/v1/')) {
        if (req.headers['metadata-flavor'] !== 'Google') return answer('metadata', 403, 'Missing Metadata-Flavor:Google header.');
        const value = metadata[url.pathname.slice('/computeMetadata/v1/'.length)];
        if (value === undefined) return answer('metadata', 404, 'Not Found', { 'metadata-flavor': 'Google' });
        return answer('metadata', 200, value, { 'metadata-flavor': 'Google' });
      }
      const m = groupPath.exec(url.pathname);
      if (req.method === 'POST' && url.pathname.startsWith('/compute/v1/')) {
        if (req.headers.authorization !== `Bearer ${token}`) {
          return apiError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.');
        }
        if (bucket?.take() !== undefined) {
          // Compute Engine's answer over a rate quota (no Retry-After: the caller backs off).
          const message = `Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com' for consumer 'project_number:${projectNumber}'.`;
          return answer('compute', 429, {
            error: {
              code: 429,
              message,
              errors: [{ message, domain: 'usageLimits', reason: 'rateLimitExceeded' }],
              status: 'RESOURCE_EXHAUSTED',
            },
          });
        }
        if (failure) {
          const f = failure;
          failure = undefined;
          return apiError(f.status, f.reason, f.message);
        }
        if (!m) return apiError(404, 'NOT_FOUND', `The resource '${url.pathname}' was not found`);
        const verb = m[2];
        const names = ((body as { instances?: unknown })?.instances ?? []) as unknown[];
        const targets = names.map((n) => String(n).split('/').pop() ?? '');
        if (targets.length === 0 || targets.some((t) => !group.instances.has(t))) {
          return apiError(400, 'INVALID_ARGUMENT', `Invalid value for field 'resource.instances': ${JSON.stringify(names)}.`);
        }
        for (const t of targets) {
          const inst = group.instances.get(t);
          if (!inst) continue;
          if (verb === 'deleteInstances') {
            inst.status = 'DELETING';
            group.targetSize -= 1;
          } else inst.status = 'RECREATING';
        }
        return answer('compute', 200, {
          kind: 'compute#operation',
          id: String(Date.now()),
          name: `operation-${Date.now()}-${randomBytes(4).toString('hex')}`,
          operationType: `compute.instanceGroupManagers.${verb}`,
          targetLink: `https://www.googleapis.com/compute/v1/projects/${project}/${location}/instanceGroupManagers/${groupName}`,
          status: 'DONE',
          progress: 100,
        });
      }
      answer('metadata', 404, 'Not Found');
    });
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    token,
    group,
    throttled: () => bucket?.refused ?? 0,
    failNext: (status, reason, message) => {
      failure = { status, reason, message };
    },
    close,
  };
}
