/**
 * `runner-warden drain`: asks the running agent to drain. By default through the agent's root-only
 * control socket in the state directory (reaches exactly the agent that holds the slot's lock);
 * with `--url`, through the health endpoint's `POST /drain`, which needs the health token.
 * Never a signal to a pid read from a file: a stale file would name an unrelated process.
 */
import { loadHostConfig } from '../policy/load.js';
import { readTokenFile } from '../health/token.js';
import { describeError } from '../lib/errors.js';
import { EXIT, commandOptions, type CliIO } from './io.js';
import { printConfigError } from './startup-errors.js';
import { controlSocketPath, NoAgentError, sendControl, CONTROL_REPLY_TIMEOUT_MS } from './control-socket.js';
import { DEFAULT_CONFIG, DRAIN_USAGE } from './usage.js';

/** Runs the command: 0 requested, 75 no agent answered, 78 bad config, 64 usage. */
export async function drainCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const opts = commandOptions(args, { values: ['config', 'url', 'token-file'] }, DRAIN_USAGE, io);
  if (typeof opts === 'number') return opts;
  const configFile = String(opts.config ?? env.RUNNER_WARDEN_CONFIG ?? DEFAULT_CONFIG);
  if (typeof opts.url === 'string') {
    let tokenFile = typeof opts['token-file'] === 'string' ? opts['token-file'] : undefined;
    if (tokenFile === undefined && opts.config !== undefined) {
      try {
        tokenFile = (await loadHostConfig(configFile, env)).health.tokenFile;
      } catch (err) {
        if (printConfigError(err, io, configFile)) return EXIT.config;
        throw err;
      }
    }
    return drainOverHttp(opts.url, tokenFile, io);
  }
  let stateDir: string;
  try {
    stateDir = (await loadHostConfig(configFile, env)).stateDir;
  } catch (err) {
    if (printConfigError(err, io, configFile)) return EXIT.config;
    throw err;
  }
  try {
    const { pid } = await sendControl(controlSocketPath(stateDir), 'drain');
    io.stdout.write(`drain requested from agent ${pid}\n`);
    return EXIT.ok;
  } catch (err) {
    const why = err instanceof NoAgentError ? 'nothing listens on its control socket' : describeError(err);
    io.stderr.write(`runner-warden drain: no running agent answered in ${stateDir} (${why})\n`);
    return EXIT.tempfail;
  }
}

async function drainOverHttp(base: string, tokenFile: string | undefined, io: CliIO): Promise<number> {
  let url: URL;
  try {
    url = new URL('/drain', base.includes('://') ? base : `http://${base}`);
  } catch {
    io.stderr.write(`runner-warden drain: --url: expected a URL, got ${JSON.stringify(base)}\n`);
    return EXIT.usage;
  }
  const headers: Record<string, string> = {};
  if (tokenFile !== undefined) {
    try {
      headers.authorization = `Bearer ${await readTokenFile(tokenFile)}`;
    } catch (err) {
      io.stderr.write(`runner-warden drain: ${describeError(err)}\n`);
      return EXIT.config;
    }
  }
  try {
    const res = await fetch(url, { method: 'POST', headers, signal: AbortSignal.timeout(CONTROL_REPLY_TIMEOUT_MS) });
    const body = (await res.text()).slice(0, 512).trim();
    if (res.status === 202) {
      io.stdout.write(`drain requested from ${url.origin}${body ? ` (${body})` : ''}\n`);
      return EXIT.ok;
    }
    io.stderr.write(`runner-warden drain: ${url.href} answered ${res.status}: ${body}\n`);
    return res.status === 401 || res.status === 403 ? EXIT.config : EXIT.tempfail;
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    io.stderr.write(`runner-warden drain: no running agent answered at ${url.href} (${cause ?? describeError(err)})\n`);
    return EXIT.tempfail;
  }
}
