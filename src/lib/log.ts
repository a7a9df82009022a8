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
  /**
   * stdout is connected to the journal (the composition root compares JOURNAL_STREAM with
   * stdout): each line then starts with its syslog priority, `<N>`, which journald strips and
   * stores as PRIORITY, so `journalctl -p warning` works. Otherwise lines are plain JSON.
   */
  journald?: boolean;
}

/** pino's numeric levels → syslog priorities (sd-daemon(3): `<N>` line prefixes). */
export function syslogPriority(level: number): number {
  if (level >= 60) return 2; // fatal → crit
  if (level >= 50) return 3; // error → err
  if (level >= 40) return 4; // warn → warning
  if (level >= 30) return 6; // info → info
  return 7; // debug, trace → debug
}

/** Prefixes each JSON line with its priority for journald; flushing goes to the wrapped stream. */
export function journaldStream(inner: DestinationStream): DestinationStream {
  const out = inner as DestinationStream & { flush?: (cb?: (err?: Error) => void) => void; flushSync?: () => void; end?: () => void };
  return {
    write(line: string): void {
      // pino writes "level" first: {"level":30,...}
      const m = /^\{"level":(\d+)/.exec(line);
      out.write(`<${syslogPriority(m ? Number(m[1]) : 30)}>${line}`);
    },
    ...(out.flush ? { flush: (cb?: (err?: Error) => void) => out.flush?.(cb) } : {}),
    ...(out.flushSync ? { flushSync: () => out.flushSync?.() } : {}),
    ...(out.end ? { end: () => out.end?.() } : {}),
  };
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
    (opts.journald ? journaldStream : (d: DestinationStream) => d)(opts.destination ?? pino.destination({ fd: 1, sync: false })),
  );
}

/** A logger that drops everything; for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
