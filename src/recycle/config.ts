/**
 * The host config's `recycle` section, typed per provider, with its JSON Schema fragment and the
 * defaults of every provider in one object. The config loader hands over a loose `recycle` section
 * (src/policy/types.ts); `parseRecycleConfig` narrows it to the union below.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { ConfigError } from '../lib/errors.js';

/** The standard in-cluster service-account mount (Kubernetes docs, "Accessing the API from a Pod"). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Every provider default, in one place. */
export const RECYCLE_DEFAULTS = {
  exit: { exitCode: 0 },
  /** A poweroff command returns as soon as systemd queued the job; 30 s covers a slow D-Bus. */
  shutdown: { timeoutSeconds: 30 },
  awsAsg: {
    /** The link-local IMDS address every EC2 instance sees. */
    imdsEndpoint: 'http://169.254.169.254',
    /** IMDSv2 token lifetime; one recycle needs it for seconds, the API minimum is 1 s, max 6 h. */
    imdsTokenTtlSeconds: 60,
    /** IMDS answers in milliseconds on a healthy instance; 2 s each call bounds a broken one. */
    imdsTimeoutSeconds: 2,
    /**
     * Tries per Auto Scaling call after a 5xx or no answer (a blip; three with full jitter ride
     * one out); throttling answers are retried longer (recycle/throttle.ts).
     */
    maxAttempts: 3,
    /** Bound on each try of an Auto Scaling call. */
    timeoutSeconds: 20,
  },
  kubernetes: {
    tokenFile: `${SERVICE_ACCOUNT_DIR}/token`,
    caFile: `${SERVICE_ACCOUNT_DIR}/ca.crt`,
    namespaceFile: `${SERVICE_ACCOUNT_DIR}/namespace`,
    /** The API server answers a pod DELETE once it is stored; 10 s covers a busy control plane. */
    timeoutSeconds: 10,
  },
  webhook: {
    /** Deliveries before giving up; with the backoff below the last one starts about 15 s in. */
    maxAttempts: 5,
    /** First retry delay, doubled on each retry up to maxBackoffMs. */
    initialBackoffMs: 1_000,
    /** Cap on one retry delay so a long outage is still probed every 30 s. */
    maxBackoffMs: 30_000,
    /** Bound on one delivery; a receiver should answer after queueing, not after acting. */
    timeoutSeconds: 10,
  },
  /** An admin command gets a minute, like the cleanup's admin commands. */
  command: { timeoutSeconds: 60 },
  azureVmss: {
    /** The instance metadata service every Azure VM sees. */
    imdsEndpoint: 'http://169.254.169.254',
    managementEndpoint: 'https://management.azure.com',
    /** Compute API version of the scale-set calls. */
    apiVersion: '2024-07-01',
    imdsTimeoutSeconds: 2,
    /** The delete returns 202 once queued; 20 s covers a slow Resource Manager front end. */
    timeoutSeconds: 20,
  },
  gcpMig: {
    /** The metadata server every Compute Engine VM sees. */
    metadataEndpoint: 'http://metadata.google.internal',
    computeEndpoint: 'https://compute.googleapis.com',
    /** The metadata server answers in milliseconds on a healthy VM; 2 s bounds a broken one. */
    metadataTimeoutSeconds: 2,
    /** deleteInstances returns once the operation is queued; 20 s covers a slow API front end. */
    timeoutSeconds: 20,
  },
} as const;

/**
 * Pools keep their size (docs/pools.md): a recycled host is replaced, never taken out of the pool,
 * unless the operator says a scaler owns the pool's size (`scalerOwnsSize: true`). A recycle means
 * "this host is used up", not "the fleet needs fewer hosts".
 */
export interface PoolSizeOption {
  /**
   * True when an autoscaler (a scaling policy, a job-driven scaler) owns the pool's size: the
   * provider may then take the host out without a replacement. Default false: the pool keeps its size.
   */
  scalerOwnsSize?: boolean;
}

/** What gcp-mig does with this VM: recreate keeps the group's size, delete shrinks it. */
export function gcpMigAction(config: GcpMigRecycleConfig): 'delete' | 'recreate' {
  return config.action ?? (config.scalerOwnsSize === true ? 'delete' : 'recreate');
}

/** What azure-vmss does with this instance: reimage keeps the capacity, delete shrinks it. */
export function azureVmssAction(config: AzureVmssRecycleConfig): 'delete' | 'reimage' {
  return config.action ?? (config.scalerOwnsSize === true ? 'delete' : 'reimage');
}

/** `provider: none`: nothing is signalled; the agent stops and leaves the host to the operator. */
export interface NoneRecycleConfig {
  provider: 'none';
}

/** `provider: exit`: the agent exits with `exitCode` (default 0) for a container orchestrator. */
export interface ExitRecycleConfig {
  provider: 'exit';
  exitCode?: number;
}

/**
 * `provider: shutdown`: runs `command` (argv, or a string run by /bin/sh -c). There is no implicit
 * default: production configs say `["systemctl", "poweroff"]` explicitly. Timeout default 30 s.
 */
export interface ShutdownRecycleConfig {
  provider: 'shutdown';
  command: string[] | string;
  timeoutSeconds?: number;
}

/**
 * `provider: aws-asg`: terminate this instance in its group without decrementing the desired
 * capacity (the group launches a replacement), else mark it Unhealthy (the group replaces it). With
 * `scalerOwnsSize: true` the chain starts with a terminate that decrements the desired capacity.
 * Instance id and region come from IMDSv2 unless given; `endpoint` overrides the Auto Scaling API URL.
 */
export interface AwsAsgRecycleConfig extends PoolSizeOption {
  provider: 'aws-asg';
  /** Default http://169.254.169.254. */
  imdsEndpoint?: string;
  /** Auto Scaling API endpoint; default the SDK's regional endpoint. */
  endpoint?: string;
  region?: string;
  instanceId?: string;
  /**
   * The group's autoscaling:EC2_INSTANCE_TERMINATING lifecycle hook. When set, a host the group is
   * already scaling in (LifecycleState Terminating:Wait) is released at once with
   * CompleteLifecycleAction CONTINUE instead of waiting out the hook's heartbeat timeout.
   */
  lifecycleHookName?: string;
  maxAttempts?: number;
  imdsTimeoutSeconds?: number;
  timeoutSeconds?: number;
}

/**
 * `provider: azure-vmss`: the VM asks its scale set (Uniform orchestration) to reimage it (the
 * default: the same VM with a fresh OS disk from the image, the capacity unchanged) or, only when
 * a scaler owns the size, to delete it (the capacity shrinks; autoscale adds VMs as jobs need them).
 * Subscription, resource group, scale set, instance id and a managed-identity token come from IMDS
 * unless given.
 */
export interface AzureVmssRecycleConfig extends PoolSizeOption {
  provider: 'azure-vmss';
  /** Default reimage; delete (the default with scalerOwnsSize) needs scalerOwnsSize: true. */
  action?: 'delete' | 'reimage';
  /** Default http://169.254.169.254. */
  imdsEndpoint?: string;
  /** Default https://management.azure.com. */
  managementEndpoint?: string;
  subscriptionId?: string;
  resourceGroup?: string;
  scaleSet?: string;
  instanceId?: string;
  /** Client id of a user-assigned managed identity; default the system-assigned one. */
  identityClientId?: string;
  imdsTimeoutSeconds?: number;
  timeoutSeconds?: number;
}

/**
 * `provider: gcp-mig`: the VM asks its managed instance group to recreate it (the default:
 * `recreateInstances`, same size, a fresh VM from the template) or, only when a scaler owns the
 * size, to delete it (`deleteInstances`: the group's target size shrinks and its autoscaler adds
 * VMs as jobs need them). Project, zone, instance name, the group (the `created-by` attribute) and
 * an access token come from the metadata server unless given; `computeEndpoint` overrides the API URL.
 */
export interface GcpMigRecycleConfig extends PoolSizeOption {
  provider: 'gcp-mig';
  /** Default recreate; delete (the default with scalerOwnsSize) needs scalerOwnsSize: true. */
  action?: 'delete' | 'recreate';
  /** Default http://metadata.google.internal. */
  metadataEndpoint?: string;
  /** Default https://compute.googleapis.com. */
  computeEndpoint?: string;
  project?: string;
  zone?: string;
  instanceName?: string;
  /** The group's path, `projects/P/zones/Z/instanceGroupManagers/N` (or `regions/R/...`); default the VM's created-by. */
  instanceGroupManager?: string;
  metadataTimeoutSeconds?: number;
  timeoutSeconds?: number;
}

/**
 * `provider: kubernetes`: deletes its own pod. `apiUrl` overrides the in-cluster URL built from
 * `serviceHost`/`servicePort` (the composition root passes KUBERNETES_SERVICE_HOST/PORT);
 * `podName` and `namespace` come from the downward API (namespace falls back to namespaceFile).
 */
export interface KubernetesRecycleConfig {
  provider: 'kubernetes';
  podName?: string;
  namespace?: string;
  apiUrl?: string;
  serviceHost?: string;
  servicePort?: number | string;
  tokenFile?: string;
  caFile?: string;
  namespaceFile?: string;
  gracePeriodSeconds?: number;
  timeoutSeconds?: number;
}

/**
 * `provider: webhook`: POSTs the event as JSON, signed with HMAC-SHA256 of the body using the
 * secret in `secretFile` (must be root-owned and not group/other accessible).
 */
export interface WebhookRecycleConfig {
  provider: 'webhook';
  url: string;
  secretFile: string;
  /** Extra request headers (not secret: they are logged in config dumps). */
  headers?: Record<string, string>;
  /** PEM bundle for a receiver with a private CA. */
  caFile?: string;
  maxAttempts?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  timeoutSeconds?: number;
}

/** `provider: command`: runs an admin command with the event in its environment; exit 0 = ok. */
export interface CommandRecycleConfig {
  provider: 'command';
  command: string[] | string;
  /** Extra environment for the command (the agent's own environment is never passed). */
  env?: Record<string, string>;
  timeoutSeconds?: number;
}

/** One provider's config. */
export type RecycleProviderConfig =
  | NoneRecycleConfig
  | ExitRecycleConfig
  | ShutdownRecycleConfig
  | AwsAsgRecycleConfig
  | GcpMigRecycleConfig
  | AzureVmssRecycleConfig
  | KubernetesRecycleConfig
  | WebhookRecycleConfig
  | CommandRecycleConfig;

/** The provider names, as in `provider:`. */
export type RecycleProviderName = RecycleProviderConfig['provider'];

/** The `recycle` section: a provider and the fallbacks tried in order when it fails. */
export type RecycleChainConfig = RecycleProviderConfig & { fallback?: RecycleProviderConfig[] };

const positiveSeconds = { type: 'number', exclusiveMinimum: 0, maximum: 3600 };
const argv = {
  oneOf: [
    { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
    { type: 'string', minLength: 1 },
  ],
};
const stringMap = { type: 'object', additionalProperties: { type: 'string' } };
const url = { type: 'string', pattern: '^https?://' };

/** Properties each provider accepts (besides `provider` and, at the top level, `fallback`). */
const PROVIDER_PROPERTIES: Record<RecycleProviderName, { props: Record<string, object>; required: string[] }> = {
  none: { props: {}, required: [] },
  exit: { props: { exitCode: { type: 'integer', minimum: 0, maximum: 255 } }, required: [] },
  shutdown: { props: { command: argv, timeoutSeconds: positiveSeconds }, required: ['command'] },
  'aws-asg': {
    props: {
      imdsEndpoint: url,
      endpoint: url,
      region: { type: 'string', minLength: 1 },
      instanceId: { type: 'string', pattern: '^i-[0-9a-f]+$' },
      scalerOwnsSize: { type: 'boolean' },
      // AWS: 1-255 characters of [A-Za-z0-9\-_\/].
      lifecycleHookName: { type: 'string', pattern: '^[A-Za-z0-9_/-]{1,255}$' },
      maxAttempts: { type: 'integer', minimum: 1, maximum: 10 },
      imdsTimeoutSeconds: positiveSeconds,
      timeoutSeconds: positiveSeconds,
    },
    required: [],
  },
  'azure-vmss': {
    props: {
      action: { enum: ['delete', 'reimage'] },
      scalerOwnsSize: { type: 'boolean' },
      imdsEndpoint: url,
      managementEndpoint: url,
      subscriptionId: { type: 'string', pattern: '^[0-9a-fA-F-]{36}$' },
      resourceGroup: { type: 'string', pattern: '^[-\\w._()]{1,90}$' },
      scaleSet: { type: 'string', minLength: 1, maxLength: 64 },
      instanceId: { type: 'string', pattern: '^[0-9]+$' },
      identityClientId: { type: 'string', pattern: '^[0-9a-fA-F-]{36}$' },
      imdsTimeoutSeconds: positiveSeconds,
      timeoutSeconds: positiveSeconds,
    },
    required: [],
  },
  'gcp-mig': {
    props: {
      action: { enum: ['delete', 'recreate'] },
      scalerOwnsSize: { type: 'boolean' },
      metadataEndpoint: url,
      computeEndpoint: url,
      project: { type: 'string', pattern: '^[a-z][-a-z0-9]{4,28}[a-z0-9]$|^[0-9]+$' },
      zone: { type: 'string', pattern: '^[a-z]+-[a-z]+[0-9]+-[a-z]$' },
      instanceName: { type: 'string', pattern: '^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$' },
      instanceGroupManager: { type: 'string', pattern: '^projects/[^/]+/(zones|regions)/[^/]+/instanceGroupManagers/[^/]+$' },
      metadataTimeoutSeconds: positiveSeconds,
      timeoutSeconds: positiveSeconds,
    },
    required: [],
  },
  kubernetes: {
    props: {
      podName: { type: 'string', minLength: 1 },
      namespace: { type: 'string', minLength: 1 },
      apiUrl: url,
      serviceHost: { type: 'string', minLength: 1 },
      servicePort: {
        anyOf: [
          { type: 'integer', minimum: 1, maximum: 65535 },
          { type: 'string', pattern: '^[0-9]+$' },
        ],
      },
      tokenFile: { type: 'string', minLength: 1 },
      caFile: { type: 'string', minLength: 1 },
      namespaceFile: { type: 'string', minLength: 1 },
      gracePeriodSeconds: { type: 'integer', minimum: 0 },
      timeoutSeconds: positiveSeconds,
    },
    required: [],
  },
  webhook: {
    props: {
      url,
      secretFile: { type: 'string', minLength: 1 },
      headers: stringMap,
      caFile: { type: 'string', minLength: 1 },
      maxAttempts: { type: 'integer', minimum: 1, maximum: 20 },
      initialBackoffMs: { type: 'integer', minimum: 0 },
      maxBackoffMs: { type: 'integer', minimum: 0 },
      timeoutSeconds: positiveSeconds,
    },
    required: ['url', 'secretFile'],
  },
  command: {
    props: { command: argv, env: stringMap, timeoutSeconds: positiveSeconds },
    required: ['command'],
  },
};

const PROVIDER_NAMES = Object.keys(PROVIDER_PROPERTIES) as RecycleProviderName[];

function providerSchema(withFallback: boolean): Record<string, unknown> {
  // Every key any provider takes; a key two providers define differently (gcp-mig's and
  // azure-vmss's `action`) is left to each provider's branch below.
  const allProps: Record<string, object | boolean> = { provider: { enum: PROVIDER_NAMES } };
  for (const { props } of Object.values(PROVIDER_PROPERTIES)) {
    for (const [k, v] of Object.entries(props)) {
      allProps[k] = k in allProps && JSON.stringify(allProps[k]) !== JSON.stringify(v) ? true : v;
    }
  }
  if (withFallback) allProps.fallback = { type: 'array', items: providerSchema(false) };
  return {
    type: 'object',
    required: ['provider'],
    properties: allProps,
    additionalProperties: false,
    // Draft-07 has no discriminated union; each branch limits the keys and requires its own.
    allOf: PROVIDER_NAMES.map((name) => {
      const spec = PROVIDER_PROPERTIES[name];
      const keys = ['provider', ...Object.keys(spec.props), ...(withFallback ? ['fallback'] : [])];
      return {
        if: { type: 'object', properties: { provider: { const: name } }, required: ['provider'] },
        then: {
          type: 'object',
          // The provider's own definitions (ajv's strictRequired also wants required keys declared here).
          properties: spec.props,
          required: spec.required,
          propertyNames: { enum: keys },
        },
      };
    }),
  };
}

/**
 * JSON Schema (draft-07) of the host config's `recycle` section, for the config schema to embed
 * under `properties.recycle`. Fallback entries may not have fallbacks of their own.
 */
export const recycleSchema: Readonly<Record<string, unknown>> = providerSchema(true);

let validator: ReturnType<Ajv['compile']> | undefined;

function describe(e: ErrorObject): string {
  const where = e.instancePath === '' ? 'recycle' : `recycle${e.instancePath.replace(/\//g, '.')}`;
  const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;
  if (propertyName !== undefined) return `${where}: property ${propertyName} is not allowed for this provider`;
  if (e.keyword === 'additionalProperties') {
    return `${where}: unknown property ${String((e.params as { additionalProperty?: string }).additionalProperty)}`;
  }
  return `${where}: ${e.message ?? e.keyword}`;
}

/**
 * Narrows the loose `recycle` section to the typed union, or throws ConfigError listing every
 * problem. `file` names the config file in the error.
 */
export function parseRecycleConfig(raw: unknown, file = 'recycle'): RecycleChainConfig {
  // Compiled on first use, never at import time: nothing happens when a module loads.
  validator ??= new Ajv({ allErrors: true, strict: false }).compile(recycleSchema);
  if (!validator(raw)) {
    const problems = (validator.errors ?? [])
      // `if` and `propertyNames` only repeat what the branch's own error says.
      .filter((e) => e.keyword !== 'if' && e.keyword !== 'propertyNames')
      .map(describe);
    throw new ConfigError(file === 'recycle' ? 'invalid recycle section' : `invalid recycle section in ${file}`, file, [
      ...new Set(problems),
    ]);
  }
  const chain = raw as RecycleChainConfig;
  const problems = [chain, ...(chain.fallback ?? [])].flatMap((c, i) =>
    shrinkProblems(c, i === 0 ? 'recycle' : `recycle.fallback.${i - 1}`),
  );
  if (problems.length > 0) {
    throw new ConfigError(file === 'recycle' ? 'invalid recycle section' : `invalid recycle section in ${file}`, file, problems);
  }
  return chain;
}

/** A provider told to shrink its pool while the operator has not said a scaler owns the size. */
function shrinkProblems(c: RecycleProviderConfig, where: string): string[] {
  if (c.provider !== 'gcp-mig' && c.provider !== 'azure-vmss') return [];
  if (c.action !== 'delete' || c.scalerOwnsSize === true) return [];
  const keep = c.provider === 'gcp-mig' ? 'recreate' : 'reimage';
  return [
    `${where}.action: delete shrinks the pool; expected ${keep} (the pool keeps its size), or scalerOwnsSize: true when an autoscaler owns the pool's size (docs/pools.md)`,
  ];
}
