import { systemClock } from '../lib/clock.js';
import { createLogger } from '../lib/log.js';
import { describeError } from '../lib/errors.js';
import { loadHostConfig } from '../policy/load.js';
import { EXIT, commandOptions, type CliIO } from './io.js';
import { wire, type Runtime } from './wire.js';
import { HOST_LOCK_DIR, takeHostLocks, type HostLocks } from './host-lock.js';
import { lookupUser } from '../lib/users.js';
import { controlSocketPath, startControlSocket, type ControlServer } from './control-socket.js';
import { printConfigError, reportStartupError } from './startup-errors.js';
import { checkRunnerUser } from './runner-user.js';
import { DEFAULT_CONFIG, RUN_USAGE as USAGE } from './usage.js';
import { notifySystemd, stdoutIsJournal } from './systemd.js';

export { DEFAULT_CONFIG };

/** `runner-warden run [--config FILE]`: the daemon. Exit 0 stopped, 78 bad config, 75 temporary, recycle exit code. */
export async function runCommand(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const opts = commandOptions(args, { values: ['config', 'log-level'] }, USAGE, io);
  if (typeof opts === 'number') return opts;
  const configFile = String(opts.config ?? env.RUNNER_WARDEN_CONFIG ?? DEFAULT_CONFIG);
  const log = createLogger({
    level: String(opts['log-level'] ?? env.RUNNER_WARDEN_LOG_LEVEL ?? 'info'),
    journald: stdoutIsJournal(env),
  });
  let locks: HostLocks | undefined;
  let runtime: Runtime | undefined;
  let control: ControlServer | undefined;
  try {
    const config = await loadHostConfig(configFile, env);
    await checkRunnerUser(config, configFile);
    // Before anything on the host is touched: a second agent must not recover, clean or register.
    const runnerUser = await lookupUser(config.runner.user);
    locks = await takeHostLocks(
      config.stateDir,
      config.runner.root,
      configFile,
      runnerUser ? { uid: runnerUser.uid, lockDir: env.RUNNER_WARDEN_LOCK_DIR ?? HOST_LOCK_DIR } : undefined,
    );
    for (const w of locks.warnings) log.warn({ detail: w }, 'a host lock was not taken');
    runtime = await wire(config, { configFile, env, log, clock: systemClock });
    const agent = runtime.agent;
    // `runner-warden drain`: finish or cancel the job, clean, then recycle the host.
    control = await startControlSocket(
      controlSocketPath(config.stateDir),
      { drain: () => agent.drain('drain requested (runner-warden drain)', { recycle: true }) },
      process.pid,
    );
  } catch (err) {
    await control?.close();
    await runtime?.close().catch(() => {});
    await locks?.release();
    log.flush();
    return reportStartupError(err, io, configFile);
  }
  const rt = runtime;
  const held = locks;
  const ctl = control;
  const shutdown = new AbortController();
  const onTerm = (sig: NodeJS.Signals) => (): void => {
    log.info({ signal: sig }, 'signal received');
    shutdown.abort();
  };
  const handlers: [NodeJS.Signals, () => void][] = [
    ['SIGTERM', onTerm('SIGTERM')],
    ['SIGINT', onTerm('SIGINT')],
  ];
  for (const [sig, h] of handlers) process.on(sig, h);
  // systemd (Type=notify): READY=1 once /healthz answers, watchdog pings while the loop is alive.
  const notifier = notifySystemd(rt, env, log);
  try {
    const exit = await rt.agent.run(shutdown.signal);
    return exit.code;
  } catch (err) {
    if (printConfigError(err, io, configFile)) return EXIT.config;
    log.error({ err: describeError(err) }, 'agent failed');
    return EXIT.tempfail;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
    await notifier.stop();
    await ctl.close();
    await rt.close();
    await held.release();
    log.flush();
  }
}
