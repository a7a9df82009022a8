import { chmod, lstat, mkdir, open, readdir, rm, writeFile } from 'node:fs/promises';
import { constants as fsc } from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../lib/log.js';

/**
 * The runner's job hooks (contract §3) report to the agent through a drop directory the agent owns:
 * root-owned, mode 0733, so the runner user can create files in it but cannot list or read what is
 * there. Each hook writes `KEY=value` lines to a temp name and renames it to `*.evt`; the agent
 * reads, validates and deletes it. Hook events are hints (the job could write one too); the agent
 * decides from the listener's exit.
 */

/** The job metadata a hook reports: the GITHUB_* and RUNNER_* values of contract §3. */
export interface HookEvent {
  event: 'started' | 'completed';
  at: number;
  vars: Record<string, string>;
}

/** Variables the hook scripts send. No secret is among them (tokens are not GITHUB_* here). */
export const HOOK_VARS = [
  'GITHUB_REPOSITORY',
  'GITHUB_WORKFLOW',
  'GITHUB_JOB',
  'GITHUB_RUN_ID',
  'GITHUB_RUN_NUMBER',
  'GITHUB_RUN_ATTEMPT',
  'GITHUB_SHA',
  'GITHUB_REF',
  'GITHUB_EVENT_NAME',
  'GITHUB_ACTOR',
  'GITHUB_WORKSPACE',
  'RUNNER_NAME',
  'RUNNER_TRACKING_ID',
] as const;

/** An event file larger than this is not a hook's (which writes < 2 KiB); it is dropped unread. */
export const MAX_EVENT_BYTES = 16 * 1024;
/** Values are cut to this many characters: enough for any ref or workflow name. */
const MAX_VALUE_CHARS = 512;

/** Where the hook scripts and the drop directory live. */
export interface HookPaths {
  dir: string;
  startedScript: string;
  completedScript: string;
  eventsDir: string;
}

/** The paths under a public (0755) directory inside the state dir. */
export function hookPaths(publicDir: string): HookPaths {
  return {
    dir: publicDir,
    startedScript: path.join(publicDir, 'hooks', 'job-started.sh'),
    completedScript: path.join(publicDir, 'hooks', 'job-completed.sh'),
    eventsDir: path.join(publicDir, 'events'),
  };
}

function hookScript(event: 'started' | 'completed', eventsDir: string): string {
  // Runs as `bash -e <path>` as the runner user (contract §3); it must never fail the job.
  return `#!/bin/bash
# runner-warden job-${event} hook. Root-owned; rewritten by the agent at every start.
d=${shellQuote(eventsDir)}
t="$d/.job-${event}.$$.$RANDOM.tmp"
{
  printf 'event=%s\\n' ${event}
${HOOK_VARS.map((v) => `  printf '%s=%s\\n' ${v} "\${${v}//$'\\n'/ }"`).join('\n')}
} > "$t" 2>/dev/null && mv -f "$t" "$d/job-${event}.$$.$RANDOM.evt" 2>/dev/null || true
exit 0
`;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Writes the hook scripts (root-owned 0755) and the drop directory (root-owned 0733), removing any
 * event left from an earlier listener so it cannot be mistaken for this one's.
 */
export async function installHooks(paths: HookPaths): Promise<void> {
  await mkdir(path.dirname(paths.startedScript), { recursive: true, mode: 0o755 });
  await chmod(paths.dir, 0o755);
  await chmod(path.dirname(paths.startedScript), 0o755);
  await writeFile(paths.startedScript, hookScript('started', paths.eventsDir), { mode: 0o755 });
  await writeFile(paths.completedScript, hookScript('completed', paths.eventsDir), { mode: 0o755 });
  await chmod(paths.startedScript, 0o755);
  await chmod(paths.completedScript, 0o755);
  await mkdir(paths.eventsDir, { recursive: true, mode: 0o733 });
  await chmod(paths.eventsDir, 0o733);
  for (const name of await readdir(paths.eventsDir)) {
    await rm(path.join(paths.eventsDir, name), { force: true, recursive: true });
  }
}

/** Reads and deletes one event file, refusing anything that is not a small regular file. */
export async function readEventFile(file: string, now: number): Promise<HookEvent | undefined> {
  try {
    const st = await lstat(file);
    if (!st.isFile() || st.size > MAX_EVENT_BYTES) return undefined;
    const fh = await open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    let text: string;
    try {
      const buf = Buffer.alloc(MAX_EVENT_BYTES);
      const { bytesRead } = await fh.read(buf, 0, MAX_EVENT_BYTES, 0);
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
    const vars: Record<string, string> = {};
    let event: HookEvent['event'] | undefined;
    for (const line of text.split('\n')) {
      const eq = line.indexOf('=');
      if (eq <= 0) continue;
      const key = line.slice(0, eq);
      const value = line.slice(eq + 1).slice(0, MAX_VALUE_CHARS);
      if (key === 'event' && (value === 'started' || value === 'completed')) event = value;
      else if ((HOOK_VARS as readonly string[]).includes(key) && value !== '') vars[key] = value;
    }
    return event ? { event, at: now, vars } : undefined;
  } catch {
    return undefined;
  } finally {
    await rm(file, { force: true }).catch(() => {});
  }
}

/** Reads (and deletes) every event file in the drop directory; [] when it does not exist. */
export async function readEventDir(eventsDir: string, now: number): Promise<HookEvent[]> {
  const out: HookEvent[] = [];
  for (const name of await readdir(eventsDir).catch(() => [] as string[])) {
    if (!name.endsWith('.evt')) continue;
    const e = await readEventFile(path.join(eventsDir, name), now);
    if (e) out.push(e);
  }
  return out;
}

/**
 * Watches the drop directory and calls `onEvent` for each hook report, until `signal` aborts.
 * chokidar (inotify) means no polling while idle.
 */
export async function watchHookEvents(
  eventsDir: string,
  onEvent: (e: HookEvent) => void,
  opts: { log: Logger; now: () => number; signal: AbortSignal },
): Promise<void> {
  if (opts.signal.aborted) return;
  const watcher: FSWatcher = watch(eventsDir, { depth: 0, ignoreInitial: false, persistent: true });
  const seen = new Set<string>();
  const handle = (file: string): void => {
    if (!file.endsWith('.evt') || seen.has(file)) return;
    seen.add(file);
    void readEventFile(file, opts.now()).then((e) => {
      seen.delete(file);
      if (e) onEvent(e);
      else opts.log.warn({ file: path.basename(file) }, 'ignored malformed hook event');
    });
  };
  watcher.on('add', handle);
  watcher.on('change', handle);
  watcher.on('error', (err) => opts.log.warn({ err }, 'hook event watcher error'));
  await new Promise<void>((resolve) => {
    watcher.once('ready', resolve);
    opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await new Promise<void>((resolve) => {
    if (opts.signal.aborted) resolve();
    else opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await watcher.close();
}
