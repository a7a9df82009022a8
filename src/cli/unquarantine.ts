/**
 * `runner-warden unquarantine --reason TEXT [--config FILE]`: the operator's release of a
 * quarantined host, recorded in the journal with who asked, when and why. The host is not served
 * at once: the agent cleans and verifies it first, as after a crash.
 *
 * With no agent running (the state directory's lock is free), the release is done here, under
 * that lock. With an agent running, it is handed to the agent through a root-only request file the
 * quarantined agent looks for every few seconds; this command waits for the agent to take it.
 */
import { hostname } from 'node:os';
import { loadHostConfig } from '../policy/load.js';
import { acquireLock, LockBusyError } from '../lib/lock.js';
import { describeError } from '../lib/errors.js';
import { Journal } from '../agent/journal.js';
import { StateStore } from '../agent/state-store.js';
import { QuarantineStore } from '../agent/quarantine-store.js';
import { EXIT, parseOptions, type CliIO } from './io.js';
import { takeConfigArg } from './config-args.js';
import { printConfigError } from './startup-errors.js';
import { stateLockFile } from './host-lock.js';
import { UNQUARANTINE_USAGE } from './usage.js';

/**
 * How long to wait for a running agent to take the request: it looks every couple of seconds
 * (RELEASE_POLL_MS); 20 s allows for a loaded host.
 */
export const AGENT_TAKE_TIMEOUT_MS = 20_000;

/** Between looks at whether the agent took the request. */
const TAKE_POLL_MS = 200;

/** Runs the command; resolves with the exit code. */
export async function unquarantineCli(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout.write(UNQUARANTINE_USAGE);
    return EXIT.ok;
  }
  const { configFile, rest } = takeConfigArg(args, env);
  const { opts, positional, unknown } = parseOptions(rest, { values: ['reason'] });
  const reason = typeof opts.reason === 'string' ? opts.reason.trim() : '';
  if (unknown.length > 0 || positional.length > 0 || reason === '') {
    io.stderr.write(
      `runner-warden unquarantine: ${reason === '' ? '--reason TEXT is required (why the host is safe to serve again)' : `unexpected ${[...unknown, ...positional].join(' ')}`}\n${UNQUARANTINE_USAGE}`,
    );
    return EXIT.usage;
  }
  let stateDir: string;
  let runnerRoot: string;
  try {
    ({
      stateDir,
      runner: { root: runnerRoot },
    } = await loadHostConfig(configFile, env));
  } catch (err) {
    if (printConfigError(err, io, configFile)) return EXIT.config;
    throw err;
  }
  const by = `${env.SUDO_USER ?? env.USER ?? 'unknown'} (uid ${process.getuid?.() ?? '?'}) on ${hostname()}`;
  const store = new QuarantineStore(stateDir, runnerRoot);
  try {
    const fact = await store.load();
    if (!fact) {
      io.stdout.write('the host is not quarantined\n');
      return EXIT.ok;
    }
    const at = new Date().toISOString();
    let lock;
    try {
      lock = await acquireLock(stateLockFile(stateDir));
    } catch (err) {
      if (!(err instanceof LockBusyError)) throw err;
      return await handToAgent(store, { v: 1, reason, by, at }, err.holderPid, io);
    }
    try {
      // Journal first: a release that is not recorded must not happen.
      await new Journal({ dir: stateDir }).append({
        type: 'event',
        event: 'unquarantine',
        at,
        detail: { reason, by, quarantineReason: fact.reason, quarantinedAt: fact.at, via: 'cli' },
      });
      const states = new StateStore(stateDir);
      const s = await states.load();
      // The next agent must clean and verify before it serves, and must not read the old
      // `quarantined` state back as the fact.
      if (s) await states.save({ ...s, state: 'stopped', dirty: true, quarantineReason: undefined });
      await store.clear();
    } finally {
      await lock.release();
    }
    io.stdout.write(`quarantine ended (was: ${fact.reason}); the agent will clean and verify the host before serving\n`);
    return EXIT.ok;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    io.stderr.write(
      `runner-warden unquarantine: ${code === 'EACCES' || code === 'EPERM' ? `${stateDir} is root-only: run as root` : describeError(err)}\n`,
    );
    return EXIT.tempfail;
  }
}

/** Leaves the request for the running agent and waits for it to take it. */
async function handToAgent(
  store: QuarantineStore,
  req: { v: 1; reason: string; by: string; at: string },
  pid: number | undefined,
  io: CliIO,
): Promise<number> {
  await store.writeRequest(req);
  const deadline = Date.now() + AGENT_TAKE_TIMEOUT_MS;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, TAKE_POLL_MS));
    if (!(await store.load())) {
      io.stdout.write(
        `the running agent${pid ? ` (pid ${pid})` : ''} ended the quarantine; it cleans and verifies the host before serving\n`,
      );
      return EXIT.ok;
    }
  }
  await store.withdrawRequest();
  io.stderr.write(
    `runner-warden unquarantine: the running agent${pid ? ` (pid ${pid})` : ''} did not take the request within ${AGENT_TAKE_TIMEOUT_MS / 1000} s; ` +
      'stop it (systemctl stop runner-warden) and run this again\n',
  );
  return EXIT.tempfail;
}
