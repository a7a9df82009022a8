import { ADMIN_PATH, runAdmin } from './argv.js';
import { RECYCLE_DEFAULTS, type CommandRecycleConfig } from './config.js';
import type { RecycleEvent, RecycleProvider } from './port.js';

/**
 * The environment an admin command sees: PATH, the whole event as JSON in RUNNER_WARDEN_EVENT, a
 * few flat variables for shell scripts, then the config's `env` (which may override PATH).
 */
export function eventEnv(event: RecycleEvent, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {
    PATH: ADMIN_PATH,
    RUNNER_WARDEN_EVENT: JSON.stringify(event),
    RUNNER_WARDEN_REASON: event.reason,
    RUNNER_WARDEN_HOST: event.host,
    RUNNER_WARDEN_TEAM: event.team,
    RUNNER_WARDEN_JOBS_SERVED: String(event.jobsServed),
    RUNNER_WARDEN_IDEMPOTENCY_KEY: event.idempotencyKey,
  };
  if (event.runnerName !== undefined) env.RUNNER_WARDEN_RUNNER_NAME = event.runnerName;
  if (event.runnerId !== undefined) env.RUNNER_WARDEN_RUNNER_ID = String(event.runnerId);
  return { ...env, ...extra };
}

/** `command`: runs an admin command with the event in its environment; exit 0 within the timeout = ok. */
export function commandProvider(config: CommandRecycleConfig): RecycleProvider {
  const timeoutMs = (config.timeoutSeconds ?? RECYCLE_DEFAULTS.command.timeoutSeconds) * 1000;
  return {
    name: 'command',
    async recycle(event, signal) {
      const run = await runAdmin(config.command, eventEnv(event, config.env), timeoutMs, signal);
      return { provider: 'command', ok: run.ok, detail: run.detail };
    },
  };
}
