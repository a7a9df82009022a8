/**
 * How `run` (and the one-shot commands) report an error that stops them: one message on stderr,
 * one exit code a supervisor can act on. 78 (EX_CONFIG): an operator must change a file or the host
 * (systemd's RestartPreventExitStatus stops the restart loop); 75 (EX_TEMPFAIL): try again later
 * (another agent holds the slot, the disk is full); 70 (EX_SOFTWARE): a bug, with its stack.
 */
import { ConfigError, PolicyError, RunnerInstallError, describeError } from '../lib/errors.js';
import { LockBusyError, LockError } from '../lib/lock.js';
import { EXIT, type CliIO } from './io.js';

/** EX_SOFTWARE: an error nothing expected (a bug); the stack goes with it. */
export const EX_SOFTWARE = 70;

/** Prints a configuration error once (its summary and each problem not already in it); true if it was one. */
export function printConfigError(err: unknown, io: CliIO, configFile?: string): boolean {
  if (err instanceof ConfigError || err instanceof PolicyError) {
    const file = err.file || configFile;
    io.stderr.write(`runner-warden: ${err.message}\n`);
    for (const p of err.problems) {
      if (err.message.includes(p)) continue;
      io.stderr.write(`  ${file && !p.startsWith(file) ? `${file}: ` : ''}${p}\n`);
    }
    return true;
  }
  if (err instanceof RunnerInstallError) {
    io.stderr.write(`runner-warden: ${err.message}\n`);
    return true;
  }
  return false;
}

/** Prints one message for an error that stopped a command and returns its exit code. */
export function reportStartupError(err: unknown, io: CliIO, configFile?: string): number {
  if (printConfigError(err, io, configFile)) return EXIT.config;
  if (err instanceof LockBusyError) {
    const who = err.holderPid !== undefined ? `pid ${err.holderPid}` : 'another process';
    io.stderr.write(`runner-warden: another agent (${who}) already runs on this slot: ${err.file} is locked\n`);
    return EXIT.tempfail;
  }
  if (err instanceof LockError) {
    io.stderr.write(`runner-warden: cannot take the agent lock: ${err.message}\n`);
    return EXIT.tempfail;
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    // An operating-system failure (a full disk, a vanished file): temporary, one line.
    io.stderr.write(`runner-warden: cannot start: ${describeError(err)}\n`);
    return EXIT.tempfail;
  }
  io.stderr.write(`runner-warden: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EX_SOFTWARE;
}
