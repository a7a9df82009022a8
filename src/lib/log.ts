import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Field paths pino removes from every record. The agent never puts a secret in a field on
 * purpose; this is the second line for mistakes.
 */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'jitConfig',
  '*.jitConfig',
  'encoded_jit_config',
  '*.encoded_jit_config',
  'privateKey',
  '*.privateKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'env.ACTIONS_RUNNER_INPUT_JITCONFIG',
  'env.ACTIONS_RUNNER_INPUT_TOKEN',
];

/** Options of the root logger; defaults: level info, JSON lines to stdout. */
export interface LogOptions {
  level?: string;
  /** Where lines go; default stdout. Tests pass a sink. */
  destination?: DestinationStream;
}

/** The one root logger, made in the composition root; components use `log.child({ component })`. */
export function createLogger(opts: LogOptions = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { app: 'runner-warden' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A logger that drops everything; for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
