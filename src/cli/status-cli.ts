import { readFile } from 'node:fs/promises';
import { loadHostConfig } from '../policy/load.js';
import { EXIT, type CliIO } from './io.js';
import { printConfigError } from './run.js';
import { takeConfigArg } from './config-args.js';
import { statusCommand } from './status.js';
import { journalCommand } from './journal.js';
import { statePaths } from './wire.js';

function healthUrl(listen: string): string {
  const [host, port] = listen.startsWith('[') ? [listen.slice(0, listen.indexOf(']') + 1), listen.slice(listen.indexOf(']') + 2)] : listen.split(':');
  const h = host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host;
  return `http://${h}:${port}`;
}

/** `runner-warden status [--config FILE] [--url URL] [--json]`. */
export async function statusCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { configFile, rest } = takeConfigArg(args, env);
  let url = 'http://127.0.0.1:9469';
  let tokenFile: string | undefined;
  if (!rest.includes('--url')) {
    try {
      const config = await loadHostConfig(configFile, env);
      url = healthUrl(config.health.listen);
      tokenFile = config.health.tokenFile;
    } catch (err) {
      if (printConfigError(err, io)) return EXIT.config;
      throw err;
    }
  }
  return statusCommand(rest, io, { url, ...(tokenFile ? { tokenFile } : {}) });
}

/** `runner-warden journal [--config FILE] [--json] [-n N]`. */
export async function journalCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { configFile, rest } = takeConfigArg(args, env);
  try {
    const config = await loadHostConfig(configFile, env);
    return await journalCommand(rest, io, { stateDir: config.stateDir });
  } catch (err) {
    if (printConfigError(err, io)) return EXIT.config;
    throw err;
  }
}

/**
 * `runner-warden drain [--config FILE]`: asks the running agent (its pid in the state dir) to drain:
 * idle → deregister and stop now; busy → let the job run to the grace period, then cancel, clean, recycle.
 */
export async function drainCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { configFile } = takeConfigArg(args, env);
  try {
    const config = await loadHostConfig(configFile, env);
    const pid = Number((await readFile(statePaths(config.stateDir).pidFile, 'utf8')).trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new Error('bad pid file');
    process.kill(pid, 'SIGUSR2');
    io.stdout.write(`drain requested from agent ${pid}\n`);
    return EXIT.ok;
  } catch (err) {
    if (printConfigError(err, io)) return EXIT.config;
    io.stderr.write(`runner-warden drain: no running agent found (${(err as Error).message})\n`);
    return EXIT.tempfail;
  }
}
