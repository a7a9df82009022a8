import type { HookPaths } from './hooks.js';

/** The PATH the listener gets when the host config names none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Per-job directories the listener writes to (docs/decisions.md, "Prevention before cleanup"). */
export interface JobDirsLike {
  home: string;
  tmp: string;
  dockerConfig: string;
}

/**
 * The listener's whole environment, built from nothing: none of the agent's variables (its token,
 * its config paths) can leak into the job. The JIT config travels here, never in argv. The listener
 * removes ACTIONS_RUNNER_INPUT_* only from its managed environment (what the worker and the steps
 * inherit); its original environment, /proc/<pid>/environ, keeps the JIT config while it runs, and
 * any process of the runner user can read it (docs/runner-contract.md §1).
 */
export function buildListenerEnv(opts: {
  user: { name: string };
  dirs: JobDirsLike;
  hooks: HookPaths;
  jitConfig?: string;
  path?: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  // Extra variables first: the agent's own (HOME, TMPDIR, hooks, the JIT config) always win.
  const extra = Object.fromEntries(
    // The listener matches this prefix in any case (docs/runner-contract.md §1): so does the filter.
    Object.entries(opts.extra ?? {}).filter(([k]) => !k.toUpperCase().startsWith('ACTIONS_RUNNER_INPUT_')),
  );
  const env: Record<string, string> = {
    ...extra,
    PATH: opts.path ?? DEFAULT_PATH,
    HOME: opts.dirs.home,
    USER: opts.user.name,
    LOGNAME: opts.user.name,
    SHELL: '/bin/bash',
    LANG: 'C.UTF-8',
    TMPDIR: opts.dirs.tmp,
    DOCKER_CONFIG: opts.dirs.dockerConfig,
    ACTIONS_RUNNER_HOOK_JOB_STARTED: opts.hooks.startedScript,
    ACTIONS_RUNNER_HOOK_JOB_COMPLETED: opts.hooks.completedScript,
    // A runner the service has deprecated exits 7 instead of 1 (docs/runner-contract.md §2), so the agent can
    // tell "rebuild the image" from a refused registration.
    ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE: '1',
  };
  if (opts.jitConfig !== undefined) env.ACTIONS_RUNNER_INPUT_JITCONFIG = opts.jitConfig;
  return env;
}
