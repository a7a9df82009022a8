/**
 * The recycler: the configured provider and its fallbacks, tried in order until one accepts.
 *
 *   event ─► provider ──ok──► done
 *               │ not ok / threw
 *               ▼
 *           fallback[0] ──ok──► done
 *               │ ...
 *               ▼
 *           all failed ─► not ok, every attempt recorded
 *
 * An abort of the caller's signal stops the chain at once (no further fallbacks).
 */
import type { RandomSource } from '../lib/backoff.js';
import type { Clock } from '../lib/clock.js';
import { systemClock } from '../lib/clock.js';
import type { FleetPlace } from '../lib/fleet-slots.js';
import { ConfigError, describeError } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/log.js';
import type { RecycleConfig } from '../policy/types.js';
import { awsAsgProvider, type AwsAsgDeps } from './aws-asg.js';
import { commandProvider } from './command.js';
import { parseRecycleConfig, type RecycleChainConfig, type RecycleProviderConfig } from './config.js';
import { azureVmssProvider } from './azure-vmss.js';
import { exitProvider } from './exit.js';
import { gcpMigProvider } from './gcp-mig.js';
import { kubernetesApiUrl, kubernetesProvider } from './kubernetes.js';
import { noneProvider } from './none.js';
import type { RecycleAttempt, RecycleChain, RecycleProvider, RecycleResult } from './port.js';
import { shutdownProvider } from './shutdown.js';
import { webhookProvider } from './webhook.js';

/** What createRecycler needs besides config; defaults: system clock, silent logger, SDK credential chain. */
export interface RecyclerDeps {
  clock?: Clock;
  log?: Logger;
  awsCredentials?: AwsAsgDeps['credentials'];
  /** Uniform numbers in [0, 1) for the retry jitter of the webhook provider; default Math.random. */
  random?: RandomSource;
  /** The config file named in ConfigError. */
  configFile?: string;
  /** This host's place in the fleet (host config `fleet`): throttled cloud calls retry in its slot. */
  fleet?: FleetPlace;
}

/** Builds one provider from its config. */
export function createProvider(config: RecycleProviderConfig, deps: RecyclerDeps = {}): RecycleProvider {
  switch (config.provider) {
    case 'none':
      return noneProvider();
    case 'exit':
      return exitProvider(config);
    case 'shutdown':
      return shutdownProvider(config);
    case 'aws-asg':
      return awsAsgProvider(config, {
        clock: deps.clock ?? systemClock,
        ...(deps.fleet ? { fleet: deps.fleet } : {}),
        ...(deps.awsCredentials !== undefined ? { credentials: deps.awsCredentials } : {}),
      });
    case 'gcp-mig':
      return gcpMigProvider(config, { clock: deps.clock ?? systemClock, ...(deps.fleet ? { fleet: deps.fleet } : {}) });
    case 'azure-vmss':
      return azureVmssProvider(config, { clock: deps.clock ?? systemClock, ...(deps.fleet ? { fleet: deps.fleet } : {}) });
    case 'kubernetes':
      return kubernetesProvider(config);
    case 'webhook':
      return webhookProvider(config, { clock: deps.clock ?? systemClock, ...(deps.random ? { random: deps.random } : {}) });
    case 'command':
      return commandProvider(config);
  }
}

/**
 * Validates the `recycle` section (ConfigError listing every problem, including the kubernetes
 * values the composition root must have filled in) and builds the provider, then its fallbacks.
 * Takes the loaded config's shape (every provider's keys optional) or the typed union.
 */
export function createRecycler(config: RecycleConfig | RecycleChainConfig, deps: RecyclerDeps = {}): RecycleChain {
  const file = deps.configFile ?? 'recycle';
  const parsed = parseRecycleConfig(config, file);
  const { fallback = [], ...primary } = parsed;
  const configs: RecycleProviderConfig[] = [primary, ...fallback];
  // Values the file may leave out because the composition root fills them from the downward API
  // and KUBERNETES_SERVICE_*; missing here, they would only fail at the end of the first job.
  const problems = configs.flatMap((c, i) => {
    if (c.provider !== 'kubernetes') return [];
    const where = i === 0 ? 'recycle' : `recycle.fallback.${i - 1}`;
    return [
      ...(c.podName === undefined ? [`${where}: podName is required (downward API metadata.name)`] : []),
      ...(kubernetesApiUrl(c) === undefined ? [`${where}: apiUrl or serviceHost is required`] : []),
    ];
  });
  if (problems.length > 0)
    throw new ConfigError(file === 'recycle' ? 'invalid recycle section' : `invalid recycle section in ${file}`, file, problems);
  const chain = configs.map((c) => createProvider(c, deps));
  return chainProviders(chain, deps);
}

/** A recycler over already-built providers (tests and callers with their own providers use it). */
export function chainProviders(providers: RecycleProvider[], deps: Pick<RecyclerDeps, 'clock' | 'log'> = {}): RecycleChain {
  const clock = deps.clock ?? systemClock;
  const log = (deps.log ?? silentLogger()).child({ component: 'recycle' });
  return {
    providers: providers.map((p) => p.name),
    async recycle(event, signal) {
      const attempts: RecycleAttempt[] = [];
      for (const provider of providers) {
        const started = clock.now();
        let result: RecycleResult;
        let aborted = false;
        try {
          if (signal.aborted) throw signal.reason;
          result = await provider.recycle(event, signal);
        } catch (err) {
          // Only the caller's signal ends the chain: a provider's own timeout is a failure like any
          // other, and the fallbacks still run.
          aborted = signal.aborted;
          result = {
            provider: provider.name,
            ok: false,
            detail: aborted ? 'aborted' : `provider failed: ${describeError(err)}`,
          };
        }
        const attempt: RecycleAttempt = {
          ...result,
          startedAt: new Date(started).toISOString(),
          durationMs: clock.now() - started,
        };
        attempts.push(attempt);
        const fields = { provider: attempt.provider, ok: attempt.ok, detail: attempt.detail, durationMs: attempt.durationMs };
        if (attempt.ok) {
          log.info(fields, 'recycle signal sent');
          return { ...result, attempts, aborted: false };
        }
        if (aborted) {
          log.info(fields, 'recycle aborted');
          return { ...result, attempts, aborted: true };
        }
        log.warn(fields, 'recycle provider failed');
      }
      const last = attempts[attempts.length - 1];
      return {
        provider: last?.provider ?? 'none',
        ok: false,
        detail: last === undefined ? 'no provider configured' : `every provider failed; last: ${last.detail}`,
        attempts,
        aborted: false,
      };
    },
  };
}
