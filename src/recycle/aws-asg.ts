// Types only at load: the SDK (about 15 MiB resident) is imported when a host is recycled through
// it, so agents on other providers never pay for it (the idle RSS budget is 80 MiB).
import type { AutoScalingClientConfig } from '@aws-sdk/client-auto-scaling';
import { describeError } from '../lib/errors.js';
import { RECYCLE_DEFAULTS, type AwsAsgRecycleConfig } from './config.js';
import { httpRequest } from './http.js';
import type { RecycleProvider, RecycleResult } from './port.js';
import { sendThrottled, type ThrottleDeps, type ThrottleVerdict } from './throttle.js';
import { CLOUD_API_RATES } from './cloud-slots.js';
import { underDeadline } from '../lib/deadline.js';

/** The error names AWS APIs answer a call over the account's rate with. */
const THROTTLING_ERRORS = new Set([
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestThrottled',
]);

/** Throttling, a 5xx or no answer (retried), or an answer that stands. */
function awsVerdict(r: { err?: unknown }): ThrottleVerdict {
  if (r.err === undefined) return { kind: 'final' };
  const e = r.err as { name?: unknown; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  if ((typeof e.name === 'string' && THROTTLING_ERRORS.has(e.name)) || status === 429) return { kind: 'throttled' };
  if (status === undefined || status >= 500) return { kind: 'transient' };
  return { kind: 'final' };
}

/** What awsAsgProvider needs besides its config. */
export interface AwsAsgDeps extends ThrottleDeps {
  /** SDK credentials; default the SDK's chain (env, profile, instance role via IMDS). Tests pass static ones. */
  credentials?: AutoScalingClientConfig['credentials'];
}

/** Instance id and region as IMDSv2 reports them. */
export interface InstanceIdentity {
  instanceId: string;
  region: string;
}

/**
 * Reads instance id and region from IMDSv2: PUT a session token, then GET with it. IMDSv1 (GET
 * without a token) is never used, so instances that require v2 work the same.
 */
export async function readInstanceIdentity(endpoint: string, timeoutMs: number, signal: AbortSignal): Promise<InstanceIdentity> {
  const base = endpoint.replace(/\/+$/, '');
  const tokenRes = await httpRequest(`${base}/latest/api/token`, {
    method: 'PUT',
    headers: {
      'x-aws-ec2-metadata-token-ttl-seconds': String(RECYCLE_DEFAULTS.awsAsg.imdsTokenTtlSeconds),
    },
    timeoutMs,
    signal,
  });
  if (tokenRes.status !== 200) throw new Error(`IMDS token: HTTP ${tokenRes.status}`);
  const token = tokenRes.body.trim();
  const get = async (path: string): Promise<string> => {
    const res = await httpRequest(`${base}/latest/meta-data/${path}`, {
      method: 'GET',
      headers: { 'x-aws-ec2-metadata-token': token },
      timeoutMs,
      signal,
    });
    if (res.status !== 200) throw new Error(`IMDS ${path}: HTTP ${res.status}`);
    return res.body.trim();
  };
  return { instanceId: await get('instance-id'), region: await get('placement/region') };
}

/**
 * `aws-asg`: a terminate-instance chain, from the instance itself. The pool keeps its size
 * (docs/pools.md): 1) terminate in the group with ShouldDecrementDesiredCapacity=false (the group
 * launches a replacement); 2) on failure mark the instance Unhealthy so the group's health check
 * replaces it. Only with `scalerOwnsSize: true` does the chain start with a terminate that
 * decrements the desired capacity (on failure, typically the ValidationError at MinSize, it goes
 * on with 1 and 2).
 *
 * With `lifecycleHookName` set, the provider first asks where the instance stands
 * (DescribeAutoScalingInstances): a host the group is scaling in and holding in Terminating:Wait
 * for that hook (the drain came from the IMDS lifecycle notice) is released with
 * CompleteLifecycleAction CONTINUE, so it goes now rather than when the hook's heartbeat times out;
 * a host already past the hook is left alone; a host in service goes through the chain above.
 */
export function awsAsgProvider(config: AwsAsgRecycleConfig, deps: AwsAsgDeps = {}): RecycleProvider {
  const d = RECYCLE_DEFAULTS.awsAsg;
  const imdsTimeoutMs = (config.imdsTimeoutSeconds ?? d.imdsTimeoutSeconds) * 1000;
  const callTimeoutMs = (config.timeoutSeconds ?? d.timeoutSeconds) * 1000;
  const fail = (detail: string): RecycleResult => ({ provider: 'aws-asg', ok: false, detail });
  return {
    name: 'aws-asg',
    async recycle(_event, signal) {
      let identity: InstanceIdentity;
      try {
        identity =
          config.instanceId !== undefined && config.region !== undefined
            ? { instanceId: config.instanceId, region: config.region }
            : await readInstanceIdentity(config.imdsEndpoint ?? d.imdsEndpoint, imdsTimeoutMs, signal);
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        return fail(`instance identity from IMDSv2: ${describeError(err)}`);
      }
      const instanceId = config.instanceId ?? identity.instanceId;
      const {
        AutoScalingClient,
        CompleteLifecycleActionCommand,
        DescribeAutoScalingInstancesCommand,
        SetInstanceHealthCommand,
        TerminateInstanceInAutoScalingGroupCommand,
      } = await import('@aws-sdk/client-auto-scaling');
      // Built per recycle, never at import; destroyed below so no keep-alive socket outlives it.
      const client = new AutoScalingClient({
        region: config.region ?? identity.region,
        // One try per send: the retries below wait on the agent's clock with full jitter, which
        // the SDK's own (real timers) cannot; a throttled fleet must not retry in step.
        maxAttempts: 1,
        ...(config.endpoint !== undefined ? { endpoint: config.endpoint } : {}),
        ...(deps.credentials !== undefined ? { credentials: deps.credentials } : {}),
      });
      const steps: string[] = [];
      const result = (ok: boolean): RecycleResult => ({ provider: 'aws-asg', ok, detail: `${instanceId}: ${steps.join('; ')}` });
      /** One SDK call bounded by its own timeout and the caller's signal; its output, or undefined (error in steps). */
      const attempt = async <T>(label: string, send: (abortSignal: AbortSignal) => Promise<T>): Promise<T | undefined> => {
        const once = async (): Promise<{ out?: T; err?: unknown }> => {
          try {
            return { out: await underDeadline(callTimeoutMs, [signal], send) };
          } catch (err) {
            if (signal.aborted) throw signal.reason;
            return { err };
          }
        };
        const { answer, throttled } = await sendThrottled(
          once,
          awsVerdict,
          signal,
          deps,
          config.maxAttempts ?? d.maxAttempts,
          undefined,
          CLOUD_API_RATES['aws-asg'],
        );
        if (throttled > 0) steps.push(`${label}: throttled ${throttled}x`);
        if (answer.err === undefined) return answer.out;
        steps.push(`${label}: ${describeError(answer.err)}`);
        return undefined;
      };
      const call = async (label: string, send: (abortSignal: AbortSignal) => Promise<unknown>): Promise<boolean> => {
        const ok = await attempt(label, async (abortSignal) => {
          await send(abortSignal);
          return true;
        });
        if (ok) steps.push(`${label}: accepted`);
        return ok === true;
      };
      /** Releases a host the group is already scaling in; undefined when it is in service (or unknown). */
      const releaseScaleIn = async (hook: string): Promise<RecycleResult | undefined> => {
        const described = await attempt('describe', (abortSignal) =>
          client.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [instanceId] }), { abortSignal }),
        );
        const member = described?.AutoScalingInstances?.[0];
        if (described !== undefined && member === undefined) steps.push('describe: not in an Auto Scaling group');
        const state = member?.LifecycleState ?? '';
        if (state === 'Terminating:Wait') {
          const ok = await call(`complete lifecycle action ${hook} (CONTINUE)`, (abortSignal) =>
            client.send(
              new CompleteLifecycleActionCommand({
                AutoScalingGroupName: member?.AutoScalingGroupName,
                LifecycleHookName: hook,
                InstanceId: instanceId,
                LifecycleActionResult: 'CONTINUE',
              }),
              { abortSignal },
            ),
          );
          // Terminating again would be refused while the hook holds the instance: the fallbacks decide.
          return result(ok);
        }
        if (state.startsWith('Terminating') || state === 'Terminated') {
          steps.push(`already ${state} in ${member?.AutoScalingGroupName ?? 'its group'}`);
          return result(true);
        }
        return undefined;
      };
      const terminate = (decrement: boolean) => (abortSignal: AbortSignal) =>
        client.send(
          new TerminateInstanceInAutoScalingGroupCommand({
            InstanceId: instanceId,
            ShouldDecrementDesiredCapacity: decrement,
          }),
          { abortSignal },
        );
      try {
        if (config.lifecycleHookName !== undefined) {
          const released = await releaseScaleIn(config.lifecycleHookName);
          if (released) return released;
        }
        const decrement = config.scalerOwnsSize === true;
        const done =
          (decrement && (await call('terminate with decrement', terminate(true)))) ||
          (await call('terminate without decrement', terminate(false))) ||
          (await call('set Unhealthy', (abortSignal) =>
            client.send(
              new SetInstanceHealthCommand({
                InstanceId: instanceId,
                HealthStatus: 'Unhealthy',
                // The job is over; waiting out a launch grace period only delays the replacement.
                ShouldRespectGracePeriod: false,
              }),
              { abortSignal },
            ),
          ));
        return result(done);
      } finally {
        client.destroy();
      }
    },
  };
}
