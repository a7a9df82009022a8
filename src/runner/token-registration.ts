/**
 * Registration-token mode (docs/runner-contract.md §8): for servers without JIT
 * configurations, a runner is registered by `config.sh --ephemeral` with a registration token and
 * removed by `config.sh remove` with a remove token.
 *
 * - config.sh runs as the runner user (it refuses root), in the runner root, with an environment
 *   built from nothing (configShEnv). The token travels in `ACTIONS_RUNNER_INPUT_TOKEN` (contract
 *   §1.1), never in argv: a later job running as the same user could read /proc/<pid>/cmdline of
 *   any process, and argv also ends up in ps listings and audit logs. It is never logged either:
 *   config.sh's output is redacted before it reaches a log line or an error message.
 * - The registration token lasts 1 h (docs/runner-contract.md §10). RunnerTokenCache reuses it across jobs (no API
 *   call per job) and fetches a new one once less than TOKEN_REFRESH_MARGIN_MS remain; a token the
 *   server refused is dropped at once.
 * - The runner id is read from the `.runner` file config.sh wrote (`agentId`, §4.1). The listener
 *   is then started with `run` exactly as in JIT mode, only without the JIT variable.
 */
import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { silentLogger } from '../lib/log.js';
import { runCommand } from '../lib/process.js';
import { DEFAULT_PATH } from './env.js';
import { removeLocalConfig } from './installation.js';

/**
 * Fetch a new registration token once less than this remains of the old one's hour. config.sh
 * presents the token within seconds, but its own retries and a slow server can take minutes; five
 * minutes leaves room for both, and costs at most one extra token call per 55 minutes.
 */
export const TOKEN_REFRESH_MARGIN_MS = 5 * 60_000;

/**
 * How long one config.sh (configure or remove) may run before its process group is killed. The
 * real runner makes several calls with retries of its own (exchange, group lookup, add agent), each
 * bounded by its 100 s HTTP timeout; two minutes bounds a hung server without failing a slow one.
 */
export const CONFIG_SH_TIMEOUT_MS = 120_000;

/** The largest `.runner` file read back; the real one is well under 1 KiB. */
const MAX_RUNNER_FILE_BYTES = 64 * 1024;

/** A registration or remove token and its expiry (ISO date-time), as the REST API returns them (docs/runner-contract.md §10). */
export interface RunnerToken {
  token: string;
  expiresAt: string;
}

/** The two token calls token mode makes; the GitHubPort has them. */
export interface RunnerTokenSource {
  createRegistrationToken(): Promise<RunnerToken>;
  createRemoveToken(): Promise<RunnerToken>;
}

/** Why config.sh failed, from its exit and its (redacted) output. */
export type ConfigShFailure =
  | 'name-exists'
  | 'group-not-found'
  | 'token-refused'
  | 'already-configured'
  /** remove: the server answered 404 to deleting the registration (already gone). */
  | 'not-found'
  | 'timeout'
  | 'failed';

/** config.sh (configure or remove) failed. `detail` is its output with every token redacted. */
export class ConfigShError extends Error {
  override name = 'ConfigShError';
  constructor(
    message: string,
    readonly command: 'configure' | 'remove',
    readonly reason: ConfigShFailure,
    readonly exitCode: number | null,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Where and as whom config.sh runs. `env` is complete and holds no secret (configShEnv builds it). */
export interface ConfigShTarget {
  runnerRoot: string;
  user: { name: string; uid: number; gid: number };
  env: Record<string, string>;
  /** Default CONFIG_SH_TIMEOUT_MS. */
  timeoutMs?: number;
  /** Aborting kills config.sh's process group; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** config.sh's output lines go here at debug level, redacted; default silent. */
  log?: Logger;
}

/** Options of registerWithToken. */
export interface RegisterWithTokenOptions extends ConfigShTarget {
  /** The registration token (a secret: only ever placed in config.sh's environment). */
  token: string;
  /** `--url`: the repository, organisation or enterprise URL (github/scope.ts scopeUrl). */
  scopeUrl: string;
  name: string;
  labels: string[];
  /** Runner group name; null = the default group (no `--runnergroup`). */
  group: string | null;
  /** Default `_work`. */
  workFolder?: string;
}

/** The registration a configured runner root holds (`.runner`). */
export interface LocalRegistration {
  id: number;
  name: string;
}

/**
 * The environment of config.sh, built from nothing: none of the agent's variables (its GitHub
 * token, its config paths) reach the runner user. `extra` is the host config's `runner.env`
 * (proxies, runner knobs), which the agent's own variables override; `ACTIONS_RUNNER_INPUT_*`
 * entries of it are dropped so no configured value can stand in for an argument.
 */
export function configShEnv(opts: {
  user: { name: string };
  home: string;
  tmp: string;
  path?: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  const extra = Object.fromEntries(Object.entries(opts.extra ?? {}).filter(([k]) => !k.toUpperCase().startsWith('ACTIONS_RUNNER_INPUT_')));
  return {
    ...extra,
    PATH: opts.path ?? DEFAULT_PATH,
    HOME: opts.home,
    USER: opts.user.name,
    LOGNAME: opts.user.name,
    SHELL: '/bin/bash',
    LANG: 'C.UTF-8',
    TMPDIR: opts.tmp,
  };
}

/**
 * config.sh's argv for an unattended ephemeral registration (docs/runner-contract.md §8); never the
 * token. Never `--replace`: it takes over a registration of the same name whichever host runs it
 * (that host's listener loses it at its next poll). A taken name fails instead, and the agent
 * registers under the next name, as in JIT mode.
 */
export function configureArgs(o: Pick<RegisterWithTokenOptions, 'scopeUrl' | 'name' | 'labels' | 'group' | 'workFolder'>): string[] {
  const args = ['--unattended', '--ephemeral', '--disableupdate', '--url', o.scopeUrl, '--name', o.name];
  // `--labels ""` would be read as a flag by the runner's parser (§1.1); leave it out instead.
  if (o.labels.length > 0) args.push('--labels', o.labels.join(','));
  if (o.group) args.push('--runnergroup', o.group);
  args.push('--work', o.workFolder ?? '_work');
  return args;
}

/**
 * Registers an ephemeral runner with `config.sh` and a registration token; resolves with the id
 * and name from the `.runner` it wrote. Local config files left by an earlier registration are
 * deleted first (config.sh refuses a configured root). Rejects with ConfigShError when config.sh
 * fails, with the signal's reason when aborted.
 */
export async function registerWithToken(opts: RegisterWithTokenOptions): Promise<LocalRegistration> {
  await removeLocalConfig(opts.runnerRoot);
  await runConfigSh('configure', configureArgs(opts), opts);
  const reg = await readLocalRegistration(opts.runnerRoot);
  if (!reg) {
    throw new ConfigShError('config.sh exited 0 but wrote no readable .runner', 'configure', 'failed', 0, '');
  }
  return { id: reg.id, name: reg.name || opts.name };
}

/**
 * How `config.sh remove` ended (docs/runner-contract.md §8): `removed` (deleted on the server by
 * id), `already-gone` (the server answered 404 to the DELETE: someone deleted it first; config.sh
 * exits 1 then and keeps the local files), `nothing-deleted` (exit 0 with "config files are
 * missing": it deleted nothing on the server, so the REST delete is still needed).
 */
export type RemoveOutcome = 'removed' | 'already-gone' | 'nothing-deleted';

/** config.sh remove skipped the server because `.runner` or `.credentials` was missing. */
const REMOVE_SKIPPED = /Cannot connect to server, because config files are missing/;
/** The DELETE of the registration by id answered 404: it is gone already. */
const DELETE_NOT_FOUND = /Http response code: (NotFound|404) from 'DELETE /;

/**
 * Unregisters the runner configured in `runnerRoot` with `config.sh remove` and a remove token:
 * the runner deletes itself on the server by id and removes its local files. Rejects with
 * ConfigShError for any other failure.
 */
export async function removeWithToken(opts: ConfigShTarget & { token: string }): Promise<{ outcome: RemoveOutcome }> {
  try {
    const out = await runConfigSh('remove', ['remove'], opts);
    return { outcome: REMOVE_SKIPPED.test(out) ? 'nothing-deleted' : 'removed' };
  } catch (err) {
    if (err instanceof ConfigShError && err.reason === 'not-found') {
      // config.sh keeps `.runner` and `.credentials` after a failed remove: the registration they name is gone.
      await removeLocalConfig(opts.runnerRoot);
      return { outcome: 'already-gone' };
    }
    throw err;
  }
}

/** Reads the id and name of the registration in `root/.runner`; undefined when absent or unreadable. */
export async function readLocalRegistration(root: string): Promise<LocalRegistration | undefined> {
  let fh: fsp.FileHandle;
  try {
    // The root belongs to the runner user: never follow a link it may have put at `.runner`.
    fh = await fsp.open(path.join(root, '.runner'), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_RUNNER_FILE_BYTES) return undefined;
    // .NET writes the file with a UTF-8 byte order mark.
    const text = (await fh.readFile('utf8')).replace(/^\uFEFF/, '');
    const data = JSON.parse(text) as { agentId?: unknown; agentName?: unknown };
    const id = typeof data.agentId === 'number' ? data.agentId : Number(data.agentId);
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    return { id, name: typeof data.agentName === 'string' ? data.agentName : '' };
  } catch {
    return undefined;
  } finally {
    await fh.close();
  }
}

/** Runs config.sh with the token in its environment; resolves with its redacted stdout. */
async function runConfigSh(command: 'configure' | 'remove', args: string[], opts: ConfigShTarget & { token: string }): Promise<string> {
  const log = opts.log ?? silentLogger();
  const redact = (text: string): string => (opts.token ? text.split(opts.token).join('[redacted]') : text);
  const res = await runCommand(path.join(opts.runnerRoot, 'config.sh'), args, {
    cwd: opts.runnerRoot,
    uid: opts.user.uid,
    gid: opts.user.gid,
    env: { ...opts.env, ACTIONS_RUNNER_INPUT_TOKEN: opts.token },
    timeoutMs: opts.timeoutMs ?? CONFIG_SH_TIMEOUT_MS,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (opts.signal?.aborted) throw opts.signal.reason;
  const stdout = redact(res.stdout);
  const stderr = redact(res.stderr);
  for (const [stream, text] of [
    ['stdout', stdout],
    ['stderr', stderr],
  ] as const) {
    for (const line of text.split('\n')) if (line.trim() !== '') log.debug({ stream, line, command }, 'config.sh output');
  }
  if (res.code === 0 && !res.timedOut) return stdout;
  const detail = (stderr.trim() || stdout.trim()).split('\n').slice(-5).join(' | ');
  const reason: ConfigShFailure = res.timedOut ? 'timeout' : classify(stderr, stdout);
  const how = res.timedOut ? `timed out after ${opts.timeoutMs ?? CONFIG_SH_TIMEOUT_MS} ms` : `exited ${res.code ?? res.signal}`;
  throw new ConfigShError(`config.sh ${command} ${how}: ${detail || 'no output'}`, command, reason, res.code, detail);
}

/**
 * What config.sh's output says went wrong (the only place its text is interpreted; the lines are
 * those of docs/runner-contract.md §8). The listener prints the failure that ended it last, on
 * stderr: "A runner exists with the same name" alone on stdout is printed whenever the name is
 * taken, so only the final line says the registration failed for that.
 */
export function classify(stderr: string, stdout: string): ConfigShFailure {
  const text = `${stderr}\n${stdout}`;
  const lines = (stderr.trim() !== '' ? stderr : stdout)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const last = lines.at(-1) ?? '';
  if (/^A runner exists with the same name \S/.test(last)) return 'name-exists';
  if (/Could not find any self-hosted runner group named/.test(text)) return 'group-not-found';
  if (/Cannot configure the runner because it is already configured/.test(text)) return 'already-configured';
  // The token exchange answers 404 (or 401/403) for an unknown or expired registration or remove token.
  if (/Http response code: (NotFound|404|Unauthorized|401|Forbidden|403) from 'POST [^']*\/actions\/runner-registration/.test(text))
    return 'token-refused';
  if (DELETE_NOT_FOUND.test(text)) return 'not-found';
  return 'failed';
}

/**
 * A registration (or remove) token reused until less than `marginMs` (default
 * TOKEN_REFRESH_MARGIN_MS) of its hour remain, then fetched again; never used past its expiry.
 * A token whose expiry cannot be read is used once and not kept.
 */
export class RunnerTokenCache {
  private current?: { token: string; expiresAt: number };

  constructor(
    private readonly fetchToken: () => Promise<RunnerToken>,
    private readonly clock: Clock,
    private readonly marginMs = TOKEN_REFRESH_MARGIN_MS,
  ) {}

  /** A token with at least `marginMs` left (one API call when the cached one is too old). */
  async get(): Promise<string> {
    const c = this.current;
    if (c && c.expiresAt - this.clock.now() >= this.marginMs) return c.token;
    this.current = undefined;
    const t = await this.fetchToken();
    const expiresAt = Date.parse(t.expiresAt);
    if (Number.isFinite(expiresAt) && expiresAt - this.clock.now() >= this.marginMs) {
      this.current = { token: t.token, expiresAt };
    }
    return t.token;
  }

  /** Forgets the cached token (the server refused it). */
  invalidate(): void {
    this.current = undefined;
  }

  /** The cached token, for secret scrubbing; undefined when none is held. */
  peek(): string | undefined {
    return this.current?.token;
  }
}

/** Options of TokenRegistrar. */
export interface TokenRegistrarOptions {
  github: RunnerTokenSource;
  /** `config.sh --url` (github/scope.ts scopeUrl of the host config's github.url and scope). */
  scopeUrl: string;
  runnerRoot: string;
  /** The runner user config.sh runs as. */
  user: { name: string; uid: number; gid: number };
  /** The host config's `runner.env` (proxies, runner knobs); config.sh needs them as much as the listener. */
  extraEnv?: Record<string, string>;
  /** PATH for config.sh; default DEFAULT_PATH. */
  path?: string;
  /** Per config.sh run; default CONFIG_SH_TIMEOUT_MS. */
  timeoutMs?: number;
  clock: Clock;
  log: Logger;
}

/** What one config.sh run needs besides the registrar's fixed settings. */
export interface ConfigShCall {
  /** HOME and TMPDIR of config.sh: directories the runner user owns and the next cleanup removes. */
  home: string;
  tmp: string;
  signal?: AbortSignal;
}

/**
 * The token-mode registration strategy the agent uses: a cached registration token plus
 * registerWithToken, and removal by config.sh when the DELETE endpoint cannot be used.
 */
export class TokenRegistrar {
  readonly mode = 'token' as const;
  private readonly tokens: RunnerTokenCache;

  constructor(private readonly o: TokenRegistrarOptions) {
    this.tokens = new RunnerTokenCache(() => o.github.createRegistrationToken(), o.clock);
  }

  /** Registers one ephemeral runner; a token the server refused is dropped so the retry fetches a new one. */
  async register(
    req: ConfigShCall & { name: string; labels: string[]; group: string | null; workFolder?: string },
  ): Promise<LocalRegistration> {
    const token = await this.tokens.get();
    try {
      return await registerWithToken({
        ...this.target(req),
        token,
        scopeUrl: this.o.scopeUrl,
        name: req.name,
        labels: req.labels,
        group: req.group,
        ...(req.workFolder ? { workFolder: req.workFolder } : {}),
      });
    } catch (err) {
      if (err instanceof ConfigShError && err.reason === 'token-refused') this.tokens.invalidate();
      throw err;
    }
  }

  /**
   * Removes runner `runnerId` with `config.sh remove` when the runner root is still configured
   * for it; 'not-local' when it is not (nothing to remove with). Fetches a remove token (1 API call).
   */
  async remove(runnerId: number, call: ConfigShCall): Promise<'removed' | 'already-gone' | 'not-local'> {
    const local = await readLocalRegistration(this.o.runnerRoot);
    if (!local || local.id !== runnerId) return 'not-local';
    const t = await this.o.github.createRemoveToken();
    const r = await removeWithToken({ ...this.target(call), token: t.token });
    // Nothing was deleted on the server (config files missing): the caller keeps its REST delete.
    return r.outcome === 'nothing-deleted' ? 'not-local' : r.outcome;
  }

  /** The registration token held, for the health server's scrub. */
  secretValues(): string[] {
    const t = this.tokens.peek();
    return t ? [t] : [];
  }

  private target(call: ConfigShCall): ConfigShTarget {
    return {
      runnerRoot: this.o.runnerRoot,
      user: this.o.user,
      env: configShEnv({
        user: this.o.user,
        home: call.home,
        tmp: call.tmp,
        ...(this.o.path ? { path: this.o.path } : {}),
        ...(this.o.extraEnv ? { extra: this.o.extraEnv } : {}),
      }),
      log: this.o.log,
      ...(this.o.timeoutMs !== undefined ? { timeoutMs: this.o.timeoutMs } : {}),
      ...(call.signal ? { signal: call.signal } : {}),
    };
  }
}
