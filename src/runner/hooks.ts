import { chmod, chown, lstat, mkdir, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { ConfigError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { listUsers, readGroups } from '../lib/users.js';

/**
 * The runner's job hooks (docs/runner-contract.md §5) report to the agent over a unix socket that only the runner
 * user can reach: `<publicDir>/report/` is root:<runner's own group> 0710 and the socket in it is
 * root:<that group> 0660, so another local user cannot even traverse to it, and nothing a report
 * holds ever touches a filesystem (a flood fills no disk). The agent takes a bounded number of
 * bounded reports (size, count per window, concurrent connections, a deadline each) and parses them
 * defensively. The group must be the runner user's alone: the agent refuses a shared one.
 *
 * Each hook is a root-owned bash script that runs a root-owned client with the agent's own node;
 * the client sends `KEY=value` lines and waits for the agent's acknowledgement, so a report is
 * delivered before the listener goes on. Hook events are hints (the job can send one too); the
 * agent decides from the listener's exit.
 */

/** The job metadata a hook reports: the GITHUB_* and RUNNER_* values of docs/runner-contract.md §5. */
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

/** A report larger than this is not a hook's (which sends < 2 KiB); the connection is cut unread. */
export const MAX_EVENT_BYTES = 16 * 1024;
/** Values are cut to this many characters: enough for any ref or workflow name. */
const MAX_VALUE_CHARS = 512;
/** A hook connects and sends at once; a connection silent for 5 s is a job holding a slot. */
export const REPORT_DEADLINE_MS = 5_000;
/** Two hooks run per job, never at the same time; 4 leaves room for a retry and bounds descriptors. */
export const MAX_REPORT_CONNECTIONS = 4;
/**
 * Reports accepted per window: a job sends two, a listener restart or a self-update a few more;
 * 20 a minute bounds what a flooding job costs the agent (parsing, log lines) to nothing.
 */
export const MAX_REPORTS_PER_WINDOW = 20;
/** The window of MAX_REPORTS_PER_WINDOW. */
export const REPORT_WINDOW_MS = 60_000;

/** Where the hook scripts and the report socket live. */
export interface HookPaths {
  dir: string;
  startedScript: string;
  completedScript: string;
  /** The root-owned client the scripts run (CommonJS, node built-ins only). */
  clientScript: string;
  /** The directory of the socket: root:<group> 0710. */
  reportDir: string;
  socket: string;
  /** The drop directory of earlier versions: kept root-only and empty. */
  eventsDir: string;
  /** The runner user's own group (may connect); absent: only root may (no hook reaches the agent). */
  group?: number;
  /** The runner user (the only account allowed in `group`). */
  user?: string;
  /** The node binary the hook client runs with; default the agent's own. */
  node: string;
}

/** The paths under a public (0755) directory inside the state dir; `owner` is the runner user. */
export function hookPaths(publicDir: string, owner?: { name: string; gid: number }, node = process.execPath): HookPaths {
  const reportDir = path.join(publicDir, 'report');
  return {
    dir: publicDir,
    startedScript: path.join(publicDir, 'hooks', 'job-started.sh'),
    completedScript: path.join(publicDir, 'hooks', 'job-completed.sh'),
    clientScript: path.join(publicDir, 'hooks', 'report.cjs'),
    reportDir,
    socket: path.join(reportDir, 'hook.sock'),
    eventsDir: path.join(publicDir, 'events'),
    ...(owner ? { group: owner.gid, user: owner.name } : {}),
    node,
  };
}

function hookScript(event: 'started' | 'completed', p: HookPaths): string {
  // Runs as `bash -e <path>` as the runner user (docs/runner-contract.md §5); it must never fail the job. The
  // job's NODE_OPTIONS must not load its code into the client (it would only run as the job's own
  // user, but the report must be the hook's).
  return `#!/bin/bash
# runner-warden job-${event} hook. Root-owned; rewritten by the agent at every start.
unset NODE_OPTIONS NODE_PATH
${shellQuote(p.node)} ${shellQuote(p.clientScript)} ${event} >/dev/null 2>&1 || true
exit 0
`;
}

function clientScript(p: HookPaths): string {
  return `'use strict';
// runner-warden hook report client. Root-owned; rewritten by the agent at every start.
const net = require('node:net');
const event = process.argv[2];
const vars = ${JSON.stringify(HOOK_VARS)};
let body = 'event=' + event + '\\n';
for (const k of vars) {
  const v = process.env[k];
  if (v) body += k + '=' + v.replace(/[\\r\\n]/g, ' ') + '\\n';
}
const s = net.connect(${JSON.stringify(p.socket)});
s.setTimeout(${REPORT_DEADLINE_MS}, () => s.destroy());
s.on('connect', () => s.end(body));
s.on('data', () => {});
s.on('error', () => {});
s.on('close', () => process.exit(0));
`;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Writes the hook scripts and the client (root-owned 0755), the report directory (root:<group>
 * 0710) and empties the old drop directory (root-only 0700). Throws ConfigError when the runner
 * user's group is shared with another account (anyone in it could forge reports).
 */
export async function installHooks(paths: HookPaths): Promise<void> {
  if (paths.group !== undefined) await assertPrivateGroup(paths.group, paths.user);
  const hooksDir = path.dirname(paths.startedScript);
  await mkdir(hooksDir, { recursive: true, mode: 0o755 });
  await chmod(paths.dir, 0o755);
  await chmod(hooksDir, 0o755);
  for (const [file, text] of [
    [paths.startedScript, hookScript('started', paths)],
    [paths.completedScript, hookScript('completed', paths)],
    [paths.clientScript, clientScript(paths)],
  ] as const) {
    await rm(file, { force: true });
    await writeFile(file, text, { mode: 0o755, flag: 'wx' });
    await chmod(file, 0o755);
  }
  await mkdir(paths.reportDir, { recursive: true, mode: 0o710 });
  await chown(paths.reportDir, 0, paths.group ?? 0);
  await chmod(paths.reportDir, 0o710);
  await mkdir(paths.eventsDir, { recursive: true, mode: 0o700 });
  await chmod(paths.eventsDir, 0o700);
  for (const name of await readdir(paths.eventsDir)) {
    await rm(path.join(paths.eventsDir, name), { force: true, recursive: true });
  }
}

async function assertPrivateGroup(gid: number, user: string | undefined): Promise<void> {
  const group = (await readGroups()).find((g) => g.gid === gid);
  const others = new Set((group?.members ?? []).filter((m) => m !== user));
  const sharing = (await listUsers()).filter((u) => u.gid === gid && u.name !== user);
  for (const u of sharing) others.add(u.name);
  if (gid === 0 || others.size > 0) {
    const who = gid === 0 ? 'it is the root group' : `also ${[...others].slice(0, 5).join(', ')}`;
    throw new ConfigError(`runner.user's primary group ${group?.name ?? gid} is shared`, '', [
      `runner.user: expected a user whose primary group is its own (the job hook channel is open to that group), got ${user ?? '?'} in ${group?.name ?? gid} (${who})`,
    ]);
  }
}

/** Parses a report defensively: known keys only, values cut, no event without a valid `event=` line. */
export function parseReport(text: string, now: number): HookEvent | undefined {
  const vars: Record<string, string> = {};
  let event: HookEvent['event'] | undefined;
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    const value = stripControls(line.slice(eq + 1)).slice(0, MAX_VALUE_CHARS);
    if (key === 'event' && (value === 'started' || value === 'completed')) event = value;
    else if ((HOOK_VARS as readonly string[]).includes(key) && value !== '') vars[key] = value;
  }
  return event ? { event, at: now, vars } : undefined;
}

/** Control characters (a terminal escape, a bell) become spaces: values reach logs and the journal. */
function stripControls(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    out += c < 0x20 || c === 0x7f ? ' ' : ch;
  }
  return out;
}

/**
 * Files in the drop directory of earlier versions (which any local user could write): deleted
 * unread. Reports travel over the socket now; none is left behind by a dead agent.
 */
export async function readEventDir(eventsDir: string, _now: number): Promise<HookEvent[]> {
  for (const name of await readdir(eventsDir).catch(() => [] as string[])) {
    await rm(path.join(eventsDir, name), { force: true, recursive: true }).catch(() => {});
  }
  return [];
}

/** Options of watchHookReports; window and caps default to the constants above. */
export interface WatchOptions {
  log: Logger;
  now: () => number;
  signal: AbortSignal;
  maxPerWindow?: number;
  windowMs?: number;
}

/**
 * Serves the report socket and calls `onEvent` for each valid report, until `signal` aborts.
 * `paths` may also be the old drop directory's path: the socket is found beside it.
 */
export async function watchHookEvents(paths: HookPaths | string, onEvent: (e: HookEvent) => void, opts: WatchOptions): Promise<void> {
  if (opts.signal.aborted) return;
  const socket = typeof paths === 'string' ? path.join(path.dirname(paths), 'report', 'hook.sock') : paths.socket;
  const group = typeof paths === 'string' ? (await lstat(path.dirname(socket))).gid : (paths.group ?? 0);
  const maxPerWindow = opts.maxPerWindow ?? MAX_REPORTS_PER_WINDOW;
  const windowMs = opts.windowMs ?? REPORT_WINDOW_MS;
  let windowStart = opts.now();
  let taken = 0;
  let dropped = 0;
  const admit = (): boolean => {
    const now = opts.now();
    if (now - windowStart >= windowMs || now < windowStart) {
      if (dropped > 0) opts.log.warn({ dropped, windowMs }, 'hook reports over the limit were dropped');
      windowStart = now;
      taken = 0;
      dropped = 0;
    }
    if (taken >= maxPerWindow) {
      dropped++;
      return false;
    }
    taken++;
    return true;
  };
  const server = net.createServer((sock) => {
    const chunks: Buffer[] = [];
    let size = 0;
    sock.setTimeout(REPORT_DEADLINE_MS, () => sock.destroy());
    sock.on('error', () => sock.destroy());
    sock.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_EVENT_BYTES) {
        opts.log.warn({ bytes: size }, 'oversized hook report dropped');
        sock.destroy();
        return;
      }
      chunks.push(d);
    });
    sock.on('end', () => {
      const e = admit() ? parseReport(Buffer.concat(chunks).toString('utf8'), opts.now()) : undefined;
      sock.end('ok\n');
      if (e) onEvent(e);
    });
  });
  server.maxConnections = MAX_REPORT_CONNECTIONS;
  await unlink(socket).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Until these two calls the socket has the umask's mode (no write for group or others): no one
  // but root can connect in between.
  await chown(socket, 0, group);
  await chmod(socket, 0o660);
  await new Promise<void>((resolve) => {
    if (opts.signal.aborted) resolve();
    else opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await unlink(socket).catch(() => {});
}
