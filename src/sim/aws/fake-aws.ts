/**
 * A loopback fake of the two AWS services the aws-asg provider uses, on one HTTP server:
 * - IMDSv2: PUT /latest/api/token (TTL header required), GET /latest/meta-data/... with the token
 *   (401 without, as on an instance that requires IMDSv2);
 * - the Auto Scaling Query API the SDK sends: POST / with a form body `Action=...&Version=2011-01-01`,
 *   answered with the XML the SDK parses (and `<ErrorResponse>` for errors).
 * The group is modelled (min, desired, instances, termination lifecycle hooks) so that
 * terminate-with-decrement at MinSize fails with the real ValidationError and a scale-in holds the
 * instance in Terminating:Wait until CompleteLifecycleAction; `failNext` programs any other failure.
 * The Query API enforces a request rate per account, as AWS does: past it the answer is 400
 * `Throttling` "Rate exceeded" (IMDS is not limited: it is per instance). Every request is recorded.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { RateBucket, type CloudRate } from '../cloud-rate.js';
import { listenOnLoopback } from '../loopback.js';

/**
 * AWS throttles API calls with a token bucket per account and Region. Auto Scaling publishes no
 * sizes; these are EC2's documented ones for mutating actions (a bucket of 50, 5 refilled a second).
 */
export const DEFAULT_AWS_RATE: CloudRate = { burst: 50, perSecond: 5 };

const XMLNS = 'http://autoscaling.amazonaws.com/doc/2011-01-01/';

/** One request the fake saw. */
export interface FakeAwsCall {
  service: 'imds' | 'autoscaling';
  method: string;
  path: string;
  /** Query API action, for autoscaling calls. */
  action?: string;
  /** Decoded form parameters, for autoscaling calls. */
  params: Record<string, string>;
  /** The region in the SigV4 credential scope, for autoscaling calls. */
  signingRegion?: string;
  /** The HTTP status the fake answered. */
  status: number;
}

/** A programmed failure for the next matching Auto Scaling call. */
export interface FakeAwsFailure {
  action: string;
  /** Only when every listed parameter has this value (e.g. ShouldDecrementDesiredCapacity: 'false'). */
  when?: Record<string, string>;
  status?: number;
  code: string;
  message?: string;
  /** How many matching calls fail; default 1. */
  times?: number;
}

/** The fake's world; defaults: one instance i-0fake in group "runners" with min 0, desired 1. */
export interface FakeAwsOptions {
  instanceId?: string;
  region?: string;
  group?: { name: string; min: number; desired: number; max: number };
  /** When set, the access key id every signed request must use. */
  accessKeyId?: string;
  /** Extra IMDS metadata paths (e.g. "spot/instance-action") and their bodies. */
  metadata?: Record<string, string>;
  /** Names of the group's autoscaling:EC2_INSTANCE_TERMINATING lifecycle hooks; default none. */
  terminationHooks?: string[];
  /** More instances of the group (a fleet), besides `instanceId`. */
  moreInstances?: string[];
  /** The Auto Scaling API's request rate; default DEFAULT_AWS_RATE; false: unlimited. */
  rate?: CloudRate | false;
  /** The clock of the rate; default the system clock. */
  clock?: Clock;
}

/** One instance of the modelled group. */
export interface FakeAwsInstance {
  health: string;
  /** Set once a termination was accepted. */
  terminating: boolean;
  /** Auto Scaling's LifecycleState: InService, Terminating:Wait, Terminating:Proceed, Terminating. */
  lifecycleState: string;
}

/** A running fake. */
export interface FakeAws {
  /** Base URL for both the IMDS endpoint and the Auto Scaling endpoint override. */
  url: string;
  calls: FakeAwsCall[];
  /** The modelled group; tests read desired capacity and instance health from it. */
  group: { name: string; min: number; desired: number; max: number; instances: Map<string, FakeAwsInstance>; terminationHooks: string[] };
  metadata: Record<string, string>;
  /** Throttling answers so far. */
  throttled(): number;
  failNext(failure: FakeAwsFailure): void;
  /**
   * The group scales in `instanceId` (default the fake's instance) as AWS does: the instance goes
   * to Terminating:Wait while a termination hook is pending (Terminating without one) and IMDS
   * reports target lifecycle state Terminated.
   */
  scaleIn(instanceId?: string): void;
  close(): Promise<void>;
}

function xml(action: string, result: string): string {
  const inner = result === '' ? '' : `<${action}Result>${result}</${action}Result>`;
  return `<${action}Response xmlns="${XMLNS}">${inner}<ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></${action}Response>`;
}

function xmlError(code: string, message: string, sender: boolean): string {
  const esc = message.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return `<ErrorResponse xmlns="${XMLNS}"><Error><Type>${sender ? 'Sender' : 'Receiver'}</Type><Code>${code}</Code><Message>${esc}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`;
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeAws(opts: FakeAwsOptions = {}): Promise<FakeAws> {
  const instanceId = opts.instanceId ?? 'i-0fake0000000000001';
  const region = opts.region ?? 'eu-west-1';
  const g = opts.group ?? { name: 'runners', min: 0, desired: 1, max: 10 };
  const group: FakeAws['group'] = {
    ...g,
    instances: new Map(
      [instanceId, ...(opts.moreInstances ?? [])].map((id) => [id, { health: 'Healthy', terminating: false, lifecycleState: 'InService' }]),
    ),
    terminationHooks: [...(opts.terminationHooks ?? [])],
  };
  const metadata: Record<string, string> = {
    'instance-id': instanceId,
    'placement/region': region,
    'placement/availability-zone': `${region}a`,
    'autoscaling/target-lifecycle-state': 'InService',
    ...opts.metadata,
  };
  const tokens = new Set<string>();
  const failures: FakeAwsFailure[] = [];
  const calls: FakeAwsCall[] = [];
  const bucket = opts.rate === false ? undefined : new RateBucket(opts.rate ?? DEFAULT_AWS_RATE, opts.clock);

  const autoscaling = (action: string, p: Record<string, string>): { status: number; body: string } => {
    const failure = failures.find((f) => f.action === action && Object.entries(f.when ?? {}).every(([k, v]) => p[k] === v));
    if (failure) {
      failure.times = (failure.times ?? 1) - 1;
      if (failure.times <= 0) failures.splice(failures.indexOf(failure), 1);
      const status = failure.status ?? 400;
      return { status, body: xmlError(failure.code, failure.message ?? failure.code, status < 500) };
    }
    const id = p.InstanceId ?? '';
    const inst = group.instances.get(id);
    const notFound = {
      status: 400,
      body: xmlError('ValidationError', `Instance Id not found - No managed instance found for instance ID: ${id}`, true),
    };
    switch (action) {
      case 'TerminateInstanceInAutoScalingGroup': {
        if (!inst || inst.terminating) return notFound;
        const decrement = p.ShouldDecrementDesiredCapacity === 'true';
        if (decrement && group.desired <= group.min) {
          // The message AWS returns at MinSize (what Buildkite's chain falls through on).
          return {
            status: 400,
            body: xmlError(
              'ValidationError',
              `Currently, desiredSize equals minSize (${group.min}). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.`,
              true,
            ),
          };
        }
        inst.terminating = true;
        inst.lifecycleState = group.terminationHooks.length > 0 ? 'Terminating:Wait' : 'Terminating';
        if (decrement) group.desired -= 1;
        const activity = `<Activity><ActivityId>${randomUUID()}</ActivityId><AutoScalingGroupName>${group.name}</AutoScalingGroupName><Description>Terminating EC2 instance: ${id}</Description><Cause>At ${new Date().toISOString()} instance ${id} was taken out of service in response to a user request${decrement ? ', shrinking the capacity' : ''}.</Cause><StartTime>${new Date().toISOString()}</StartTime><StatusCode>InProgress</StatusCode><Progress>0</Progress></Activity>`;
        return { status: 200, body: xml(action, activity) };
      }
      case 'SetInstanceHealth': {
        if (!inst) return notFound;
        inst.health = p.HealthStatus ?? inst.health;
        return { status: 200, body: xml(action, '') };
      }
      case 'DescribeAutoScalingInstances': {
        // Unknown ids are left out of the list, not an error (as AWS answers).
        const ids = Object.entries(p)
          .filter(([k]) => /^InstanceIds\.member\.\d+$/.test(k))
          .map(([, v]) => v);
        const members = ids
          .filter((i) => group.instances.has(i))
          .map((i) => {
            const m = group.instances.get(i) as FakeAwsInstance;
            return `<member><AutoScalingGroupName>${group.name}</AutoScalingGroupName><InstanceId>${i}</InstanceId><InstanceType>m7i.large</InstanceType><AvailabilityZone>${region}a</AvailabilityZone><LifecycleState>${m.lifecycleState}</LifecycleState><HealthStatus>${m.health === 'Healthy' ? 'HEALTHY' : 'UNHEALTHY'}</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>`;
          });
        return { status: 200, body: xml(action, `<AutoScalingInstances>${members.join('')}</AutoScalingInstances>`) };
      }
      case 'CompleteLifecycleAction': {
        if (p.AutoScalingGroupName !== group.name) {
          return { status: 400, body: xmlError('ValidationError', `Group ${p.AutoScalingGroupName ?? ''} not found`, true) };
        }
        if (!group.terminationHooks.includes(p.LifecycleHookName ?? '')) {
          return { status: 400, body: xmlError('ValidationError', `No Lifecycle Hook found for ${p.LifecycleHookName ?? ''}`, true) };
        }
        if (!inst || inst.lifecycleState !== 'Terminating:Wait') {
          return { status: 400, body: xmlError('ValidationError', `No active Lifecycle Action found with instance ID ${id}`, true) };
        }
        if (p.LifecycleActionResult !== 'CONTINUE' && p.LifecycleActionResult !== 'ABANDON') {
          return { status: 400, body: xmlError('ValidationError', 'LifecycleActionResult must be CONTINUE or ABANDON', true) };
        }
        inst.lifecycleState = 'Terminating:Proceed';
        return { status: 200, body: xml(action, '') };
      }
      default:
        return { status: 400, body: xmlError('InvalidAction', `The action ${action} is not valid for this web service.`, true) };
    }
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', 'http://fake');
      const answer = (
        service: FakeAwsCall['service'],
        status: number,
        text: string,
        type: string,
        extra: Partial<FakeAwsCall> = {},
      ): void => {
        calls.push({ service, method: req.method ?? '', path: url.pathname, params: {}, status, ...extra });
        res.writeHead(status, { 'content-type': type, 'x-amzn-requestid': randomUUID() });
        res.end(text);
      };
      if (url.pathname === '/latest/api/token') {
        const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
        if (req.method !== 'PUT') return answer('imds', 405, '', 'text/plain');
        if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return answer('imds', 400, '', 'text/plain');
        const token = randomUUID();
        tokens.add(token);
        return answer('imds', 200, token, 'text/plain');
      }
      if (url.pathname.startsWith('/latest/meta-data/')) {
        const token = req.headers['x-aws-ec2-metadata-token'];
        if (typeof token !== 'string' || !tokens.has(token)) return answer('imds', 401, '', 'text/plain');
        const value = metadata[url.pathname.slice('/latest/meta-data/'.length)];
        return value === undefined ? answer('imds', 404, '', 'text/plain') : answer('imds', 200, value, 'text/plain');
      }
      if (req.method === 'POST' && url.pathname === '/') {
        const params = Object.fromEntries(new URLSearchParams(body));
        const action = params.Action ?? '';
        const auth = req.headers.authorization ?? '';
        const scope = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/autoscaling\/aws4_request/.exec(auth);
        const key = scope?.[1];
        const signingRegion = scope?.[2];
        if (key === undefined || (opts.accessKeyId !== undefined && key !== opts.accessKeyId)) {
          const text = xmlError('InvalidClientTokenId', 'The security token included in the request is invalid.', true);
          return answer('autoscaling', 403, text, 'text/xml', { action, params, ...(signingRegion ? { signingRegion } : {}) });
        }
        const out =
          bucket?.take() === undefined ? autoscaling(action, params) : { status: 400, body: xmlError('Throttling', 'Rate exceeded', true) };
        return answer('autoscaling', out.status, out.body, 'text/xml', { action, params, ...(signingRegion ? { signingRegion } : {}) });
      }
      return answer('imds', 404, '', 'text/plain');
    });
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    group,
    metadata,
    throttled: () => bucket?.refused ?? 0,
    failNext: (f) => failures.push({ ...f }),
    scaleIn: (id = instanceId) => {
      const inst = group.instances.get(id);
      if (!inst) throw new Error(`fake AWS: no instance ${id} in the group`);
      inst.terminating = true;
      inst.lifecycleState = group.terminationHooks.length > 0 ? 'Terminating:Wait' : 'Terminating';
      group.desired = Math.max(group.min, group.desired - 1);
      metadata['autoscaling/target-lifecycle-state'] = 'Terminated';
    },
    close,
  };
}
