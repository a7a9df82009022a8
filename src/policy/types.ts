/**
 * PROVISIONAL hand-written shapes of the team policy and the host config, so that the cleanup
 * engine, the agent and the policy loader can be built side by side. The policy issue replaces
 * these with types derived from the JSON Schemas, keeping every name below.
 */

/** A command an admin runs before or after cleanup. */
export interface AdminCommand {
  run: string;
  timeoutSeconds: number;
}

/** What each cleanup step does. */
export interface CleanupPolicy {
  processes: { enabled: boolean; graceSeconds: number };
  containers: {
    enabled: boolean;
    /** Docker-compatible API socket; default /var/run/docker.sock. */
    socket: string;
    containers: boolean;
    volumes: boolean;
    networks: boolean;
    /** keep: leave all images; job: remove images created during the job; all: remove every image. */
    images: 'keep' | 'job' | 'all';
    buildCache: boolean;
  };
  workdir: {
    enabled: boolean;
    /** Entries of _work kept between jobs, relative to _work (e.g. "_tool"). */
    keep: string[];
  };
  credentials: {
    enabled: boolean;
    /** Extra paths relative to the runner user's home. */
    extraPaths: string[];
    /** Extra globs relative to the runner user's home. */
    extraGlobs: string[];
  };
  home: {
    enabled: boolean;
    /** Paths relative to home that are kept between jobs (caches). */
    keep: string[];
  };
  temp: {
    enabled: boolean;
    /** Absolute directories swept for the runner user's files. */
    paths: string[];
  };
  system: { enabled: boolean };
  runnerInstall: { enabled: boolean };
  commands: { before: AdminCommand[]; after: AdminCommand[] };
}

/** The team policy, after inheritance and defaults. */
export interface Policy {
  version: 1;
  team: string;
  host: {
    /** Jobs a host may serve before it is recycled; 1 = a fresh host for every job. */
    maxJobs: number;
    maxLifetimeMinutes: number | null;
    maxIdleMinutes: number | null;
  };
  runner: { labels: string[]; group: string | null };
  limits: {
    maxJobMinutes: number;
    minFreeDiskPercent: number;
    minFreeInodesPercent: number;
  };
  recycle: {
    onJobFailed: boolean;
    /** Listener crashes in a row that count as a crash loop. */
    crashLoopThreshold: number;
  };
  cleanup: CleanupPolicy;
}

/** The policy used when a team has none: a fresh host for every job, everything on. */
export const DEFAULT_POLICY: Policy = {
  version: 1,
  team: 'default',
  host: { maxJobs: 1, maxLifetimeMinutes: null, maxIdleMinutes: null },
  runner: { labels: [], group: null },
  limits: { maxJobMinutes: 360, minFreeDiskPercent: 10, minFreeInodesPercent: 5 },
  recycle: { onJobFailed: false, crashLoopThreshold: 3 },
  cleanup: {
    processes: { enabled: true, graceSeconds: 5 },
    containers: {
      enabled: true,
      socket: '/var/run/docker.sock',
      containers: true,
      volumes: true,
      networks: true,
      images: 'keep',
      buildCache: true,
    },
    workdir: { enabled: true, keep: [] },
    credentials: { enabled: true, extraPaths: [], extraGlobs: [] },
    home: { enabled: true, keep: [] },
    temp: { enabled: true, paths: ['/tmp', '/var/tmp', '/dev/shm'] },
    system: { enabled: true },
    runnerInstall: { enabled: true },
    commands: { before: [], after: [] },
  },
};

/** How the agent authenticates to GitHub. */
export type GitHubCredentials =
  | { kind: 'token'; token: { file?: string; env?: string } }
  | { kind: 'app'; appId: number | string; installationId: number; privateKeyFile: string };

/** The host config (`/etc/runner-warden/config.yaml`), after defaults. */
export interface HostConfig {
  github: {
    url: string;
    apiUrl: string;
    org?: string;
    repo?: string;
    enterprise?: string;
    token?: { file?: string; env?: string };
    app?: { appId: number | string; installationId: number; privateKeyFile: string };
    registration: 'jit' | 'token';
    /** PEM bundle for a GHES server with a private CA. */
    caFile?: string;
  };
  runner: {
    root: string;
    user: string;
    /** Template: {hostname}, {seq}, {random}. Default "{hostname}-{seq}". */
    name: string;
    labels: string[];
    group: string | null;
    /** Jobs the agent serves before it stops (0 = no limit). For demos and tests. */
    maxJobs?: number;
  };
  team: string;
  policyDir: string;
  stateDir: string;
  health: { listen: string; tokenFile?: string };
  recycle: RecycleConfig;
  /** Timers, overridable for tests; defaults in agent/timeouts.ts. */
  timeouts?: Partial<Record<string, number>>;
}

/** Filled in by the recycle issue. */
export interface RecycleConfig {
  provider: 'none' | 'exit' | 'shutdown' | 'aws-asg' | 'kubernetes' | 'webhook' | 'command';
  exitCode?: number;
  command?: string;
  fallback?: RecycleConfig[];
  [key: string]: unknown;
}
