/**
 * The simulated `configure` and `remove` commands, the registration-token path of
 * docs/runner-contract.md §8 (ConfigurationManager.ConfigureAsync / UnconfigureAsync).
 * Failures throw ConfigureFailure, whose message the listener prints to stderr before exit 1.
 *
 * The API base comes from `--url`: github.com → https://api.github.com, any other host (GHES) →
 * `<scheme>://<host>/api/v3`. Because github.com is unreachable in the lab, the simulator-only env
 * `RUNNER_SIM_API_URL` overrides it (point it at the fake GitHub's url).
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CommandSettings } from './args.js';
import { addAgent, BrokerHttpError, BrokerUnreachableError, deleteAgent, exchangeToken } from './broker.js';
import type { Terminal } from './diag.js';
import { deleteLocalConfig, isConfigured, readRunnerSettings, writeConfigFile } from './files.js';

/** A configure/remove failure; the message is what the runner prints. */
export class ConfigureFailure extends Error {
  override name = 'ConfigureFailure';
}

/** The longest label the service accepts (Validators.LabelsValidator). */
const MAX_LABEL_LENGTH = 256;

/** The API base URL for a `--url`, honouring the simulator-only `RUNNER_SIM_API_URL`. */
export function apiUrlFor(githubUrl: string, env: NodeJS.ProcessEnv): string {
  const override = env.RUNNER_SIM_API_URL;
  if (override) return override.replace(/\/+$/, '');
  const u = new URL(githubUrl);
  const host = u.hostname.toLowerCase();
  if (host === 'github.com' || host === 'www.github.com') return 'https://api.github.com';
  if (host.endsWith('.ghe.com')) return `${u.protocol}//api.${host}`;
  return `${u.protocol}//${u.host}/api/v3`;
}

function isValidUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

function invalid(arg: string): ConfigureFailure {
  return new ConfigureFailure(`Invalid configuration provided for ${arg}. Terminating unattended configuration.`);
}

async function exchange(apiUrl: string, token: string, githubUrl: string, event: 'register' | 'remove') {
  try {
    return await exchangeToken(apiUrl, token, githubUrl, event);
  } catch (err) {
    if (err instanceof BrokerHttpError) {
      const reason = err.status === 404 ? 'NotFound' : String(err.status);
      throw new ConfigureFailure(`Http response code: ${reason} from 'POST ${err.url}'${err.body ? `\n${err.body}` : ''}`);
    }
    if (err instanceof BrokerUnreachableError) throw new ConfigureFailure(err.message);
    throw err;
  }
}

/** `config.sh [configure] --url U --token T ...`; resolves on success. */
export async function configure(root: string, cmd: CommandSettings, term: Terminal, env: NodeJS.ProcessEnv): Promise<void> {
  if (isConfigured(root)) {
    throw new ConfigureFailure(
      "Cannot configure the runner because it is already configured. To reconfigure the runner, run 'config.cmd remove' or './config.sh remove' first.",
    );
  }
  const url = cmd.arg('url');
  if (!url || !isValidUrl(url)) throw invalid('url');
  const token = cmd.arg('token');
  if (!token) {
    if (cmd.arg('pat')) throw new ConfigureFailure('The simulated runner supports only --token registration.');
    throw invalid('token');
  }
  // the simulator never prompts: every configure behaves as --unattended
  term.writeSection('Authentication');
  const ex = await exchange(apiUrlFor(url, env), token, url, 'register');
  term.writeSuccess('Connected to GitHub');

  term.writeSection('Runner Registration');
  const group = cmd.arg('runnergroup') ?? null;
  const name = cmd.arg('name') ?? os.hostname();
  const userLabels = (cmd.arg('labels') ?? '').split(',').filter((l) => l !== '');
  for (const l of userLabels) {
    if (l.length > MAX_LABEL_LENGTH) throw invalid('labels');
  }
  const noDefault = cmd.flag('no-default-labels');
  if (noDefault && userLabels.length === 0) throw invalid('labels');
  const arch = process.arch === 'arm64' ? 'ARM64' : process.arch === 'arm' ? 'ARM' : 'X64';
  const labels = [...(noDefault ? [] : ['self-hosted', 'Linux', arch]), ...userLabels].filter(
    (l, i, all) => all.findIndex((x) => x.toLowerCase() === l.toLowerCase()) === i,
  );
  const work = cmd.arg('work') ?? '_work';
  const replace = cmd.flag('replace');
  let added;
  try {
    added = await addAgent(ex.url, ex.token, {
      name,
      labels,
      ephemeral: cmd.flag('ephemeral'),
      disableUpdate: cmd.flag('disableupdate'),
      runnerGroup: group,
      replace,
      workFolder: work,
    });
  } catch (err) {
    if (err instanceof BrokerHttpError || err instanceof BrokerUnreachableError) throw new ConfigureFailure(err.message);
    throw err;
  }
  if (added.kind === 'groupNotFound') {
    throw new ConfigureFailure(`Could not find any self-hosted runner group named "${group ?? 'default'}".`);
  }
  // ConfigurationManager looks the name up first and prints this whenever it is taken; with
  // --replace it then takes that registration over (whoever runs it), without it (unattended) fails
  if (added.kind === 'exists' || added.replaced) term.writeLine('A runner exists with the same name');
  if (added.kind === 'exists') throw new ConfigureFailure(`A runner exists with the same name ${name}.`);
  term.writeSuccess(added.replaced ? 'Successfully replaced the runner' : 'Runner successfully added');

  for (const f of ['.credentials', '.credentials_rsaparams'] as const) {
    const text = added.files[f];
    if (text !== undefined) writeConfigFile(root, f, text);
  }
  term.writeSection('Runner settings');
  const runnerText = added.files['.runner'];
  if (runnerText === undefined) throw new ConfigureFailure('The server did not return the runner settings.');
  writeConfigFile(root, '.runner', runnerText);
  term.writeSuccess('Settings Saved.');
  term.writeLine();
}

/**
 * `config.sh remove [--token T] [--local]`; resolves on success (ConfigurationManager.UnconfigureAsync,
 * runner-admin flow, which github.com uses today):
 * - `.runner` and `.credentials` present: exchange the remove token, then DELETE the registration by
 *   its id. Any failure, a registration already deleted (404) included, prints the HTTP line,
 *   `Failed: Removing runner from the server` and the error, and exits 1 with the local files kept.
 * - either file missing: `Cannot connect to server, because config files are missing. Skipping
 *   removing runner from the server.`, then the local files are deleted and it exits 0: nothing was
 *   deleted on the server.
 * The legacy flow's "Does not exist. Skipping Removing runner from the server" (a lookup by name)
 * is not simulated.
 */
export async function remove(root: string, cmd: CommandSettings, term: Terminal, env: NodeJS.ProcessEnv): Promise<void> {
  const print = (line: string, ok: boolean): void => (ok ? term.writeSuccess(line) : term.writeLine(line));
  if (cmd.flag('local')) {
    deleteLocalConfig(root, print);
    return;
  }
  term.writeSection('Runner removal');
  let currentAction = '';
  try {
    if (existsSync(path.join(root, '.service'))) {
      currentAction = 'Removing service';
      term.writeLine(currentAction);
      throw new ConfigureFailure('Uninstall service first');
    }
    currentAction = 'Removing runner from the server';
    if (isConfigured(root) && existsSync(path.join(root, '.credentials'))) {
      const settings = readRunnerSettings(root);
      const token = cmd.arg('token');
      if (!token) {
        if (cmd.arg('pat')) throw new ConfigureFailure('The simulated runner supports only --token removal.');
        throw invalid('token');
      }
      const githubUrl = settings.gitHubUrl || '';
      const ex = await exchange(apiUrlFor(githubUrl || 'https://github.com', env), token, githubUrl, 'remove');
      try {
        await deleteAgent(ex.url, ex.token, settings.agentId);
      } catch (err) {
        if (err instanceof BrokerHttpError) {
          const reason = err.status === 404 ? 'NotFound' : String(err.status);
          term.writeError(`Http response code: ${reason} from 'DELETE ${err.url}' (Request Id: ${randomUUID()})`);
          if (err.body) term.writeError(err.body);
          throw new ConfigureFailure(
            `Response status code does not indicate success: ${err.status} (${err.status === 404 ? 'Not Found' : 'Error'}).`,
          );
        }
        throw err;
      }
      term.writeLine();
      term.writeSuccess('Runner removed successfully');
    } else {
      term.writeLine('Cannot connect to server, because config files are missing. Skipping removing runner from the server.');
    }
    deleteLocalConfig(root, print);
  } catch (err) {
    term.writeError(`Failed: ${currentAction}`);
    throw err;
  }
  term.writeLine();
}
