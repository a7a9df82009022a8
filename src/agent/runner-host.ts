/**
 * The runner installation as the agent touches it: the hook drop directory, the runner's `.env`,
 * its manifest, and the listener process. One port so that the unit tests can run the whole
 * lifecycle without root or child processes; `realRunnerHost` is what production uses.
 */
import { access, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Slot } from '../cleanup/types.js';
import { takeInstallManifest, writeRunnerEnv } from '../cleanup/install-manifest.js';
import { ListenerProcess, type ListenerExit } from '../runner/listener.js';
import { installHooks, readEventDir, watchHookEvents, type HookEvent, type HookPaths } from '../runner/hooks.js';
import { DEFAULT_PATH } from '../runner/env.js';
import { removeLocalConfig } from '../runner/installation.js';
import type { ConsoleEvent } from '../runner/console.js';
import { readDiagJobs, type DiagJob } from '../runner/diag-evidence.js';

/** A started listener, as the supervisor needs it. */
export interface ListenerHandle {
  readonly pid: number;
  readonly startedAt: number;
  /** Resolves once the listener exited and its stdio closed. */
  readonly exited: Promise<ListenerExit>;
  /** SIGINT to the listener, SIGKILL to its group after `graceMs`; resolves with the exit. */
  stop(graceMs: number): Promise<ListenerExit>;
}

/** What the agent does to the runner installation and its listener. */
export interface RunnerHostPort {
  /** Reads (and deletes) hook reports written while the agent was down. */
  takeLeftoverEvents(now: number): Promise<HookEvent[]>;
  /** Writes the root-owned hook scripts and resets the drop directory. */
  installHooks(): Promise<void>;
  /** Delivers hook reports until `signal` aborts. */
  watchEvents(onEvent: (e: HookEvent) => void, signal: AbortSignal): Promise<void>;
  /** Rewrites the runner's `.env` (hooks, PATH) so nothing a job wrote there survives. */
  writeRunnerEnv(): Promise<void>;
  /**
   * Records the runner installation as it is now, after a self-update that no job saw (a job could
   * rewrite what the runner stages during it: never recorded then). Returns the differences left
   * unrecorded (none: everything recorded).
   */
  recordInstall(): Promise<string[]>;
  /** Removes the registration files a listener or config.sh left in the runner root. */
  removeLocalConfig(): Promise<void>;
  /** True (and the marker removed) when a self-update left `update.finished`. */
  takeUpdateFinished(): Promise<boolean>;
  /** The jobs the runner's `_diag` trace names (a job no agent watched); absent: none known. */
  readDiagJobs?(): Promise<DiagJob[]>;
  /** Starts `Runner.Listener run` as the runner user with exactly `env`. */
  startListener(spec: {
    name: string;
    env: Record<string, string>;
    onConsole: (e: ConsoleEvent) => void;
    onSpawn: (pid: number) => void;
  }): Promise<ListenerHandle>;
}

/** The production runner host: real files under the slot and a real listener process. */
export function realRunnerHost(o: { slot: Slot; hooks: HookPaths; clock: Clock; log: Logger; listenerPath?: string }): RunnerHostPort {
  return {
    takeLeftoverEvents: (now) => readEventDir(o.hooks.eventsDir, now),
    installHooks: () => installHooks(o.hooks),
    watchEvents: (onEvent, signal) => watchHookEvents(o.hooks, onEvent, { log: o.log, now: () => o.clock.now(), signal }),
    writeRunnerEnv: () =>
      writeRunnerEnv(
        o.slot,
        {
          ACTIONS_RUNNER_HOOK_JOB_STARTED: o.hooks.startedScript,
          ACTIONS_RUNNER_HOOK_JOB_COMPLETED: o.hooks.completedScript,
          PATH: o.listenerPath ?? DEFAULT_PATH,
        },
        o.clock,
      ),
    recordInstall: async () => {
      await takeInstallManifest(o.slot, o.clock);
      return [];
    },
    removeLocalConfig: () => removeLocalConfig(o.slot.runnerRoot),
    readDiagJobs: () => readDiagJobs(o.slot.runnerRoot),
    takeUpdateFinished: async () => {
      const file = path.join(o.slot.runnerRoot, 'update.finished');
      try {
        await access(file);
      } catch {
        return false;
      }
      await rm(file, { force: true });
      return true;
    },
    startListener: (spec) =>
      ListenerProcess.start({
        root: o.slot.runnerRoot,
        uid: o.slot.user.uid,
        gid: o.slot.user.gid,
        env: spec.env,
        log: o.log.child({ component: 'listener', runner: spec.name }),
        clock: o.clock,
        onConsole: spec.onConsole,
        onSpawn: spec.onSpawn,
      }),
  };
}
