import { loadHostConfig } from '../policy/load.js';
import { EXIT, type CliIO } from './io.js';
import { printConfigError } from './startup-errors.js';
import { takeConfigArg } from './config-args.js';
import { statusCommand } from './status.js';
import { journalCommand } from './journal.js';

function healthUrl(listen: string): string {
  const [host, port] = listen.startsWith('[')
    ? [listen.slice(0, listen.indexOf(']') + 1), listen.slice(listen.indexOf(']') + 2)]
    : listen.split(':');
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
