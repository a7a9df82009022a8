/**
 * The host config's `recycle` section, typed per provider, and the defaults of every provider in
 * one object. Its JSON Schema is the host config's (src/policy/schema/host-config.schema.json,
 * `$defs/RecycleConfig`: one source, validated with the rest of the file); the config loader hands
 * over a loose `recycle` section (src/policy/types.ts) and `parseRecycleConfig` narrows it to the
 * union below.
 */
import { ConfigError } from '../lib/errors.js';
import { ajvProblems } from '../policy/messages.js';
import { validators } from '../policy/schema.js';
import { formatPath, formatProblem, type Problem } from '../policy/source.js';
import type { RecycleConfig } from '../policy/types.js';

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
 * One provider's part of the generated `RecycleConfig` (the schema is the one source of every
 * field, its type and its doc): the provider's literal, its own keys `K`, of which `R` are required.
 */
type ProviderConfig<P extends RecycleConfig['provider'], K extends keyof RecycleConfig, R extends K = never> = { provider: P } & Pick<
  RecycleConfig,
  Exclude<K, R>
> &
  Required<Pick<RecycleConfig, R>>;

/**
 * Pools keep their size (docs/pools.md): a recycled host is replaced, never taken out of the pool,
 * unless the operator says a scaler owns the pool's size (`scalerOwnsSize: true`). A recycle means
 * "this host is used up", not "the fleet needs fewer hosts".
 */
export type PoolSizeOption = Pick<RecycleConfig, 'scalerOwnsSize'>;

/** What gcp-mig does with this VM: recreate keeps the group's size, delete shrinks it. */
export function gcpMigAction(config: GcpMigRecycleConfig): 'delete' | 'recreate' {
  return config.action ?? (config.scalerOwnsSize === true ? 'delete' : 'recreate');
}

/** What azure-vmss does with this instance: reimage keeps the capacity, delete shrinks it. */
export function azureVmssAction(config: AzureVmssRecycleConfig): 'delete' | 'reimage' {
  return config.action ?? (config.scalerOwnsSize === true ? 'delete' : 'reimage');
}

/** `provider: none`: nothing is signalled; the agent stops and leaves the host to the operator. */
export type NoneRecycleConfig = ProviderConfig<'none', never>;

/** `provider: exit`: the agent exits with `exitCode` (default 0) for a container orchestrator. */
export type ExitRecycleConfig = ProviderConfig<'exit', 'exitCode'>;

/**
 * `provider: shutdown`: runs `command` (argv, or a string run by /bin/sh -c). There is no implicit
 * default: production configs say `["systemctl", "poweroff"]` explicitly. Timeout default 30 s.
 */
export type ShutdownRecycleConfig = ProviderConfig<'shutdown', 'command' | 'timeoutSeconds', 'command'>;

/**
 * `provider: aws-asg`: terminate this instance in its group without decrementing the desired
 * capacity (the group launches a replacement), else mark it Unhealthy (the group replaces it). With
 * `scalerOwnsSize: true` the chain starts with a terminate that decrements the desired capacity.
 * Instance id and region come from IMDSv2 unless given; `endpoint` overrides the Auto Scaling API URL.
 * With `lifecycleHookName`, a host the group is already scaling in (LifecycleState
 * Terminating:Wait) is released at once with CompleteLifecycleAction CONTINUE instead of waiting
 * out the hook's heartbeat timeout.
 */
export type AwsAsgRecycleConfig = ProviderConfig<
  'aws-asg',
  | 'scalerOwnsSize'
  | 'imdsEndpoint'
  | 'endpoint'
  | 'region'
  | 'instanceId'
  | 'lifecycleHookName'
  | 'maxAttempts'
  | 'imdsTimeoutSeconds'
  | 'timeoutSeconds'
>;

/**
 * `provider: azure-vmss`: the VM asks its scale set (Uniform orchestration) to reimage it (the
 * default: the same VM with a fresh OS disk from the image, the capacity unchanged) or, only when
 * a scaler owns the size, to delete it (the capacity shrinks; autoscale adds VMs as jobs need them).
 * Subscription, resource group, scale set, instance id and a managed-identity token come from IMDS
 * unless given.
 */
export type AzureVmssRecycleConfig = ProviderConfig<
  'azure-vmss',
  | 'scalerOwnsSize'
  | 'imdsEndpoint'
  | 'managementEndpoint'
  | 'subscriptionId'
  | 'resourceGroup'
  | 'scaleSet'
  | 'instanceId'
  | 'identityClientId'
  | 'imdsTimeoutSeconds'
  | 'timeoutSeconds'
> & {
  /** Default reimage; delete (the default with scalerOwnsSize) needs scalerOwnsSize: true (the schema checks the values). */
  action?: 'delete' | 'reimage';
};

/**
 * `provider: gcp-mig`: the VM asks its managed instance group to recreate it (the default:
 * `recreateInstances`, same size, a fresh VM from the template) or, only when a scaler owns the
 * size, to delete it (`deleteInstances`: the group's target size shrinks and its autoscaler adds
 * VMs as jobs need them). Project, zone, instance name, the group (the `created-by` attribute) and
 * an access token come from the metadata server unless given; `computeEndpoint` overrides the API URL.
 */
export type GcpMigRecycleConfig = ProviderConfig<
  'gcp-mig',
  | 'scalerOwnsSize'
  | 'metadataEndpoint'
  | 'computeEndpoint'
  | 'project'
  | 'zone'
  | 'instanceName'
  | 'instanceGroupManager'
  | 'metadataTimeoutSeconds'
  | 'timeoutSeconds'
> & {
  /** Default recreate; delete (the default with scalerOwnsSize) needs scalerOwnsSize: true (the schema checks the values). */
  action?: 'delete' | 'recreate';
};

/**
 * `provider: kubernetes`: deletes its own pod. `apiUrl` overrides the in-cluster URL built from
 * `serviceHost`/`servicePort` (the composition root passes KUBERNETES_SERVICE_HOST/PORT);
 * `podName` and `namespace` come from the downward API (namespace falls back to namespaceFile).
 */
export type KubernetesRecycleConfig = ProviderConfig<
  'kubernetes',
  | 'podName'
  | 'namespace'
  | 'apiUrl'
  | 'serviceHost'
  | 'servicePort'
  | 'tokenFile'
  | 'caFile'
  | 'namespaceFile'
  | 'gracePeriodSeconds'
  | 'timeoutSeconds'
>;

/**
 * `provider: webhook`: POSTs the event as JSON, signed with HMAC-SHA256 of the body using the
 * secret in `secretFile` (must be root-owned and not group/other accessible).
 */
export type WebhookRecycleConfig = ProviderConfig<
  'webhook',
  'url' | 'secretFile' | 'headers' | 'caFile' | 'maxAttempts' | 'initialBackoffMs' | 'maxBackoffMs' | 'timeoutSeconds',
  'url' | 'secretFile'
>;

/** `provider: command`: runs an admin command with the event in its environment; exit 0 = ok. */
export type CommandRecycleConfig = ProviderConfig<'command', 'command' | 'env' | 'timeoutSeconds', 'command'>;

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

/** The `recycle` section: a provider and the fallbacks tried in order when it fails. */
export type RecycleChainConfig = RecycleProviderConfig & { fallback?: RecycleProviderConfig[] };

/**
 * Narrows a `recycle` section to the typed union, or throws ConfigError listing every problem as
 * `<file>: recycle.<field>: expected ..., got ...`. The schema is the host config's own
 * (`$defs/RecycleConfig` in src/policy/schema/host-config.schema.json): a loaded host config was
 * already checked against it; this checks a section built in code or changed since (the
 * composition root fills the kubernetes options from the pod's environment). `file` names the
 * config file in the error.
 */
export function parseRecycleConfig(raw: unknown, file = 'recycle'): RecycleChainConfig {
  const validate = validators().recycle;
  if (!validate(raw)) {
    const where = (): Pick<Problem, 'source'> => ({ source: file });
    // Without a file (a section built in code) the line starts at the field.
    const problems = ajvProblems(validate.errors ?? [], raw, where).map((p) =>
      file === 'recycle' ? `${formatPath(['recycle', ...p.path])}: ${p.message}` : formatProblem({ ...p, path: ['recycle', ...p.path] }),
    );
    throw new ConfigError(file === 'recycle' ? 'invalid recycle section' : `invalid recycle section in ${file}`, file, [
      ...new Set(problems),
    ]);
  }
  return raw as RecycleChainConfig;
}
