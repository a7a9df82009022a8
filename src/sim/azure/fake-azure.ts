/**
 * A loopback fake of what the azure-vmss provider talks to, on one HTTP server:
 * - IMDS: GET /metadata/instance/compute and /metadata/identity/oauth2/token, answered only with
 *   the `Metadata: true` header (400 without, as the real service) and with an api-version;
 * - Azure Resource Manager: POST .../virtualMachineScaleSets/N/delete (body `{"instanceIds": [...]}`)
 *   and .../virtualMachineScaleSets/N/virtualMachines/ID/reimage with the bearer token, answering
 *   202 as ARM does for queued operations, or `{"error": {"code", "message"}}`.
 * The scale set is modelled (capacity, instances) so tests read the effect; `failNext` programs an
 * error. Resource Manager's write rate is enforced per subscription, as ARM does: past it the
 * answer is 429 `TooManyRequests` with `Retry-After` (IMDS is not limited: it is per VM). Every
 * request is recorded.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { RateBucket, type CloudRate } from '../cloud-rate.js';
import { listenOnLoopback } from '../loopback.js';

/** Resource Manager's documented bucket for writes per subscription and region: 200, refilled at 10 a second. */
export const DEFAULT_AZURE_RATE: CloudRate = { burst: 200, perSecond: 10 };

/** One request the fake saw. */
export interface FakeAzureCall {
  service: 'imds' | 'arm';
  method: string;
  path: string;
  query: Record<string, string>;
  body?: unknown;
  status: number;
}

/** The fake's world; defaults: instance 3 of scale set "runners" (capacity 2) in resource group "ci". */
export interface FakeAzureOptions {
  subscriptionId?: string;
  resourceGroup?: string;
  scaleSet?: string;
  instanceId?: string;
  capacity?: number;
  /** A VM outside any Uniform scale set (its resourceId names a plain virtual machine). */
  standalone?: boolean;
  /** More instance ids of the scale set (a fleet), besides `instanceId`. */
  moreInstances?: string[];
  /** Resource Manager's write rate; default DEFAULT_AZURE_RATE; false: unlimited. */
  rate?: CloudRate | false;
  /** The clock of the rate; default the system clock. */
  clock?: Clock;
}

/** A running fake. */
export interface FakeAzure {
  url: string;
  calls: FakeAzureCall[];
  /** The bearer token IMDS hands out and ARM requires. */
  token: string;
  scaleSet: { name: string; capacity: number; instances: Map<string, { state: 'Running' | 'Deleting' | 'Reimaging' }> };
  /** Throttling answers so far. */
  throttled(): number;
  failNext(status: number, code: string, message: string): void;
  close(): Promise<void>;
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeAzure(opts: FakeAzureOptions = {}): Promise<FakeAzure> {
  const sub = opts.subscriptionId ?? '00000000-1111-2222-3333-444444444444';
  const rg = opts.resourceGroup ?? 'ci';
  const name = opts.scaleSet ?? 'runners';
  const instanceId = opts.instanceId ?? '3';
  const token = `eyJ0eXAiOiJKV1Qi.fake-${randomBytes(12).toString('hex')}`;
  const scaleSet: FakeAzure['scaleSet'] = {
    name,
    capacity: opts.capacity ?? 2,
    instances: new Map([instanceId, ...(opts.moreInstances ?? [])].map((i) => [i, { state: 'Running' as const }])),
  };
  const bucket = opts.rate === false ? undefined : new RateBucket(opts.rate ?? DEFAULT_AZURE_RATE, opts.clock);
  const setPath = `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachineScaleSets/${name}`;
  const calls: FakeAzureCall[] = [];
  let failure: { status: number; code: string; message: string } | undefined;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const query = Object.fromEntries(url.searchParams);
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        body = raw;
      }
      const answer = (service: FakeAzureCall['service'], status: number, payload: unknown, headers: Record<string, string> = {}): void => {
        calls.push({ service, method: req.method ?? '', path: url.pathname, query, ...(body !== undefined ? { body } : {}), status });
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(payload === undefined ? '' : JSON.stringify(payload));
      };
      const armError = (status: number, code: string, message: string): void => answer('arm', status, { error: { code, message } });

      if (url.pathname.startsWith('/metadata/')) {
        if (req.headers.metadata !== 'true') return answer('imds', 400, { error: 'Bad request. Required metadata header not specified' });
        if (!query['api-version']) return answer('imds', 400, { error: 'Bad request. api-version was not specified in the request' });
        if (url.pathname === '/metadata/instance/compute') {
          const resourceId = opts.standalone
            ? `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachines/lonely-vm`
            : `${setPath}/virtualMachines/${instanceId}`;
          return answer('imds', 200, {
            name: opts.standalone ? 'lonely-vm' : `${name}_${instanceId}`,
            resourceGroupName: rg,
            subscriptionId: sub,
            vmScaleSetName: opts.standalone ? '' : name,
            resourceId,
            location: 'westeurope',
          });
        }
        if (url.pathname === '/metadata/identity/oauth2/token') {
          if (!query.resource)
            return answer('imds', 400, { error: 'invalid_request', error_description: 'Required query variable resource is missing' });
          return answer('imds', 200, { access_token: token, expires_in: '86399', resource: query.resource, token_type: 'Bearer' });
        }
        return answer('imds', 404, { error: 'Not found' });
      }
      if (req.method === 'POST' && url.pathname.startsWith('/subscriptions/')) {
        if (req.headers.authorization !== `Bearer ${token}`)
          return armError(401, 'InvalidAuthenticationToken', 'The access token is invalid.');
        if (!query['api-version'])
          return armError(
            400,
            'MissingApiVersionParameter',
            'The api-version query parameter (?api-version=) is required for all requests.',
          );
        const waitMs = bucket?.take();
        if (waitMs !== undefined) {
          const message =
            'The request is being throttled as the limit has been reached for operation type - Write. For more information, see - https://aka.ms/armthrottling';
          return answer('arm', 429, { error: { code: 'TooManyRequests', message } }, { 'retry-after': String(Math.ceil(waitMs / 1000)) });
        }
        if (failure) {
          const f = failure;
          failure = undefined;
          return armError(f.status, f.code, f.message);
        }
        if (url.pathname === `${setPath}/delete`) {
          const ids = ((body as { instanceIds?: unknown })?.instanceIds ?? []) as unknown[];
          if (ids.length === 0 || ids.some((i) => !scaleSet.instances.has(String(i)))) {
            return armError(400, 'InvalidParameter', `The instance ids ${JSON.stringify(ids)} are not valid for the scale set.`);
          }
          for (const i of ids) {
            const inst = scaleSet.instances.get(String(i));
            if (inst) inst.state = 'Deleting';
            scaleSet.capacity -= 1;
          }
          return answer('arm', 202, undefined);
        }
        const reimage = new RegExp(`^${setPath}/virtualMachines/(\\d+)/reimage$`).exec(url.pathname);
        if (reimage) {
          const inst = scaleSet.instances.get(reimage[1] ?? '');
          if (!inst) return armError(404, 'NotFound', `The entity was not found in this Azure location.`);
          inst.state = 'Reimaging';
          return answer('arm', 202, undefined);
        }
        return armError(404, 'ResourceNotFound', `The Resource '${url.pathname}' was not found.`);
      }
      answer('imds', 404, { error: 'Not found' });
    });
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    token,
    scaleSet,
    throttled: () => bucket?.refused ?? 0,
    failNext: (status, code, message) => {
      failure = { status, code, message };
    },
    close,
  };
}
