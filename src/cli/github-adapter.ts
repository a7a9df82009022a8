/**
 * The GitHub side of the composition root: the runner scope, the agent's credentials, and the
 * Octokit adapter with its request metrics (and a private CA for GHES when the config names one).
 */
import { readFile, stat } from 'node:fs/promises';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { ConfigError } from '../lib/errors.js';
import type { HostConfig } from '../policy/types.js';
import { createOctokitPort, type GitHubAuth } from '../github/octokit.js';
import { createCaFetch, readCaBundle } from '../github/tls.js';
import type { RunnerScope } from '../github/scope.js';
import type { GitHubPort } from '../github/port.js';
import type { AgentMetrics } from '../health/metrics.js';
import type { FleetSlots } from '../lib/fleet-slots.js';

/** The scope of the config (exactly one of org, repo, enterprise; the schema enforces it). */
export function scopeOf(config: HostConfig): RunnerScope {
  if (config.github.repo) {
    const [owner = '', repo = ''] = config.github.repo.split('/');
    return { kind: 'repo', owner, repo };
  }
  if (config.github.enterprise) return { kind: 'enterprise', enterprise: config.github.enterprise };
  return { kind: 'org', org: config.github.org ?? '' };
}

/** Reads the agent's credentials from the file or variable the config names. */
export async function readAuth(config: HostConfig, env: NodeJS.ProcessEnv, configFile: string): Promise<GitHubAuth> {
  const g = config.github;
  if (g.app) {
    const privateKey = await readSecretFile(g.app.privateKeyFile, configFile, 'github.app.privateKeyFile');
    return { kind: 'app', appId: g.app.appId, installationId: g.app.installationId, privateKey };
  }
  if (g.token?.file) {
    const token = (await readSecretFile(g.token.file, configFile, 'github.token.file')).trim();
    return { kind: 'token', token };
  }
  if (g.token?.env) {
    const token = env[g.token.env];
    if (!token) {
      throw new ConfigError(`github.token.env names ${g.token.env}, which is not set`, configFile, [
        `${configFile}: github.token.env: expected the name of a set environment variable, got "${g.token.env}" (unset)`,
      ]);
    }
    return { kind: 'token', token: token.trim() };
  }
  throw new ConfigError('no GitHub credentials', configFile, [`${configFile}: github: expected token or app`]);
}

async function readSecretFile(file: string, configFile: string, field: string): Promise<string> {
  try {
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0) {
      throw new ConfigError(`${field} ${file} is readable by others`, configFile, [
        `${configFile}: ${field}: expected a file only root can read (chmod 600), got mode ${(st.mode & 0o777).toString(8)}`,
      ]);
    }
    return await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${field} ${file} cannot be read`, configFile, [
      `${configFile}: ${field}: expected a readable file, got "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    ]);
  }
}

/** The GitHub port and what closing it takes (the private-CA agent, when there is one). */
export interface GitHubAdapter {
  github: GitHubPort;
  close(): void;
}

/** Builds the Octokit adapter for the config; its requests feed the metrics. */
export async function createGitHubAdapter(
  config: HostConfig,
  o: { env: NodeJS.ProcessEnv; configFile: string; clock: Clock; log: Logger; metrics: AgentMetrics; slots?: FleetSlots },
): Promise<GitHubAdapter> {
  // GHES behind a private CA: the API calls trust github.caFile besides the system roots. Without
  // one, the same node:https fetch with Node's own trust: the global fetch costs an idle agent
  // about 11 MiB (its HTTP client and parser, loaded on the first call).
  const caFetch = createCaFetch(config.github.caFile ? await readCaBundle(config.github.caFile, o.configFile) : undefined);
  const github = createOctokitPort({
    apiUrl: config.github.apiUrl,
    fetch: caFetch.fetch,
    scope: scopeOf(config),
    auth: await readAuth(config, o.env, o.configFile),
    clock: o.clock,
    log: o.log.child({ component: 'github' }),
    ...(o.slots ? { slots: o.slots } : {}),
    onRequest: (r) => {
      o.metrics.githubRequest(r.endpoint, r.status);
      if (r.rateLimitRemaining !== undefined) o.metrics.rateLimitRemaining(r.rateLimitRemaining);
    },
  });
  return { github, close: () => caFetch.close() };
}
