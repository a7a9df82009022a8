/**
 * Hot reload of the team policy. A change to the team's file (or any file of its extends chain)
 * is validated at once; a valid change waits as "pending" and takes effect only when the agent
 * calls atJobBoundary() between jobs, never during a job or a cleanup. An invalid change keeps the
 * last good policy, is logged once and shows in status().lastReloadError.
 *
 *   load() ──► active ◄── atJobBoundary() ◄── pending ◄── reload() ok (new version)
 *                                                         reload() error ─► lastReloadError
 */
import { stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { PolicyError, describeError, isAbort } from '../lib/errors.js';
import { systemClock, type Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { loadPolicy } from './load.js';
import { DEFAULT_POLICY, type Policy } from './types.js';

/**
 * Quiet time after a file event before reloading. Editors and config managers write a file in
 * several steps (truncate, write, rename); 200 ms coalesces them without a noticeable delay.
 */
export const RELOAD_DEBOUNCE_MS = 200;

/** File names tried for a team, in order; more than one existing is an error (which one wins?). */
const EXTENSIONS = ['.yaml', '.yml', '.json'];

/** Options of PolicyStore. */
export interface PolicyStoreOptions {
  /** The policy directory (host config `policyDir`). */
  dir: string;
  /** The team (host config `team`); its file is `<dir>/<team>.yaml` (or .yml, .json). */
  team: string;
  log: Logger;
  /** Default systemClock; used for the debounce and for loadedAt. */
  clock?: Clock;
  /** Called after every reload attempt, for metrics. */
  onReload?: (result: 'ok' | 'error') => void;
  /** Default RELOAD_DEBOUNCE_MS. */
  debounceMs?: number;
}

/** What status() reports (fits StatusSnapshot.policy). */
export interface PolicyStatus {
  team: string;
  /** The team's file; absent when the team has none and the built-in default is in effect. */
  file?: string;
  /** Content hash of the policy in effect. */
  version: string;
  /** When the policy in effect was read (ISO 8601). */
  loadedAt: string;
  /** Why the last change was refused (every problem, one per line); absent after a good reload. */
  lastReloadError?: string;
  /** True when the team has no file and DEFAULT_POLICY (with the team's name) is in effect. */
  usingDefault: boolean;
  /** Version of a valid change waiting for the next job boundary. */
  pendingVersion?: string;
}

interface Entry {
  policy: Policy;
  file?: string;
  files: string[];
  version: string;
  loadedAt: number;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The team policy in effect, with hot reload adopted only at job boundaries. */
export class PolicyStore {
  private readonly dir: string;
  private readonly team: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly onReload: ((result: 'ok' | 'error') => void) | undefined;
  private readonly debounceMs: number;
  private active: Entry | undefined;
  private pending: Entry | undefined;
  private lastError: string | undefined;
  private loggedError: string | undefined;
  private watchingResolve!: () => void;
  private readonly watchingPromise = new Promise<void>((resolve) => {
    this.watchingResolve = resolve;
  });

  constructor(opts: PolicyStoreOptions) {
    this.dir = path.resolve(opts.dir);
    this.team = opts.team;
    this.log = opts.log.child({ component: 'policy', team: opts.team });
    this.clock = opts.clock ?? systemClock;
    this.onReload = opts.onReload;
    this.debounceMs = opts.debounceMs ?? RELOAD_DEBOUNCE_MS;
  }

  /** Reads the team's policy for the first time. Throws PolicyError when it is invalid. */
  async load(): Promise<void> {
    const entry = await this.read();
    this.active = entry;
    this.pending = undefined;
    this.log.info(
      { file: entry.file ?? null, version: entry.version },
      entry.file ? 'policy loaded' : 'no policy file, using the default policy',
    );
  }

  /** The policy in effect (deeply frozen). Throws if load() has not succeeded. */
  current(): Policy {
    if (!this.active) throw new Error('PolicyStore.current() before load()');
    return this.active.policy;
  }

  /** Adopts a pending valid change, then returns the policy in effect. Call only between jobs. */
  atJobBoundary(): Policy {
    if (this.pending) {
      const from = this.active?.version;
      this.active = this.pending;
      this.pending = undefined;
      this.log.info({ from, to: this.active.version, file: this.active.file ?? null }, 'policy change adopted');
    }
    return this.current();
  }

  /** The team, file, version in effect, load time and the last refused change. */
  status(): PolicyStatus {
    const a = this.active;
    return {
      team: this.team,
      ...(a?.file !== undefined ? { file: a.file } : {}),
      version: a?.version ?? '',
      loadedAt: new Date(a?.loadedAt ?? 0).toISOString(),
      ...(this.lastError !== undefined ? { lastReloadError: this.lastError } : {}),
      usingDefault: a !== undefined && a.file === undefined,
      ...(this.pending ? { pendingVersion: this.pending.version } : {}),
    };
  }

  /**
   * Re-reads the team's policy now: a valid change becomes pending (or cancels a pending one when
   * the files are back to the policy in effect); an invalid one keeps everything and records the
   * error. Never throws. run() calls it on file events; the CLI may call it on SIGHUP.
   */
  async reload(): Promise<'ok' | 'error'> {
    let next: Entry;
    try {
      next = await this.read();
    } catch (err) {
      const message = err instanceof PolicyError ? err.problems.join('\n') || err.message : describeError(err);
      this.lastError = message;
      if (message !== this.loggedError) {
        this.loggedError = message;
        this.log.error(
          { problems: err instanceof PolicyError ? err.problems : [message] },
          'policy change refused, keeping the last good policy',
        );
      }
      this.onReload?.('error');
      return 'error';
    }
    this.lastError = undefined;
    this.loggedError = undefined;
    if (next.version === this.active?.version) {
      if (this.pending) this.log.info({ version: next.version }, 'policy change reverted before it took effect');
      this.pending = undefined;
    } else if (next.version !== this.pending?.version) {
      this.pending = next;
      this.log.info({ version: next.version, file: next.file ?? null }, 'policy change pending until the next job boundary');
    }
    this.onReload?.('ok');
    return 'ok';
  }

  /** Resolves once run() watches the files (for tests and startup ordering). */
  whenWatching(): Promise<void> {
    return this.watchingPromise;
  }

  /** Watches the team's file and its extends chain until `signal` aborts, reloading on change. */
  async run(signal: AbortSignal): Promise<void> {
    let wake: (() => void) | undefined;
    let changed = false;
    const relevant = (): Set<string> => {
      const files = new Set<string>(EXTENSIONS.map((ext) => path.join(this.dir, `${this.team}${ext}`)));
      for (const f of [...(this.active?.files ?? []), ...(this.pending?.files ?? [])]) files.add(path.resolve(f));
      return files;
    };
    const dirsOf = (files: Set<string>): string[] => [...new Set([...files].map((f) => path.dirname(f)))];
    let watched = relevant();
    const watcher: FSWatcher = watch(dirsOf(watched), { ignoreInitial: true, depth: 0, ignorePermissionErrors: true });
    watcher.on('all', (_event, file) => {
      if (!watched.has(path.resolve(file))) return;
      changed = true;
      wake?.();
    });
    watcher.on('error', (err) => this.log.warn({ err: describeError(err) }, 'policy watcher error'));
    const onAbort = (): void => wake?.();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await new Promise<void>((resolve) => {
        watcher.once('ready', () => resolve());
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      this.watchingResolve();
      while (!signal.aborted) {
        if (!changed) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        try {
          await this.clock.sleep(this.debounceMs, signal);
        } catch (err) {
          if (isAbort(err) || signal.aborted) break;
          throw err;
        }
        changed = false;
        await this.reload();
        const now = relevant();
        const added = dirsOf(now).filter((d) => !dirsOf(watched).includes(d));
        if (added.length > 0) watcher.add(added);
        watched = now;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      await watcher.close();
    }
  }

  private async teamFile(): Promise<string | undefined> {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(this.team) || this.team.includes('..')) {
      throw new PolicyError(`invalid team name ${JSON.stringify(this.team)}`, this.dir, [
        `${this.dir}: team: expected a team name of letters, digits, '.', '_' and '-', got ${JSON.stringify(this.team)}`,
      ]);
    }
    const found: string[] = [];
    for (const ext of EXTENSIONS) {
      const file = path.join(this.dir, `${this.team}${ext}`);
      try {
        await stat(file);
        found.push(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
      }
    }
    if (found.length > 1) {
      throw new PolicyError(`ambiguous policy for team ${this.team}`, found[0] as string, [
        `${found[0] as string}: (root): expected one policy file for team ${JSON.stringify(this.team)}, got ${found.map((f) => path.basename(f)).join(' and ')}`,
      ]);
    }
    return found[0];
  }

  private async read(): Promise<Entry> {
    const file = await this.teamFile();
    if (file === undefined) {
      const policy = deepFreeze({ ...structuredClone(DEFAULT_POLICY), team: this.team });
      const version = `default-${createHash('sha256').update(JSON.stringify(policy)).digest('hex').slice(0, 8)}`;
      return { policy, files: [], version, loadedAt: this.clock.now() };
    }
    const loaded = await loadPolicy(file, { policyDir: this.dir, team: this.team });
    return {
      policy: deepFreeze(loaded.policy),
      file,
      files: loaded.files.map((f) => path.resolve(f)),
      version: loaded.version,
      loadedAt: this.clock.now(),
    };
  }
}
