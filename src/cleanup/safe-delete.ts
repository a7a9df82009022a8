/**
 * Deleting a tree as root without being tricked. The work happens in child processes that walk
 * with fts/openat (GNU find and rm): no recursion limit (a 20,000-level tree), no PATH_MAX limit
 * (Node's fs.rm fails past 4,096 bytes of path), root reads mode-000 directories, names are bytes,
 * and a symlink is removed as a link, never followed. The event loop only counts output lines.
 *
 * Before anything is deleted:
 * - the target must hold no mount (mounts.ts): a same-filesystem bind mount shares st_dev, so
 *   `--one-file-system` alone would walk into it and empty its source;
 * - only paths whose bytes are valid UTF-8 go into argv (a Node argv cannot carry other bytes);
 *   callers rename odd names to a name of their own first (the trash does).
 * What the first pass cannot remove (immutable or append-only attributes) gets `chattr -i -a`,
 * only on the entries that remain, regular files and directories only (never a link, FIFO,
 * socket or device: chattr would open them), run from each entry's own directory (`-execdir`)
 * so no path grows past PATH_MAX; then a second pass.
 */
import { promises as fsp } from 'node:fs';
import { spawn } from 'node:child_process';
import type { Logger } from '../lib/log.js';
import { UnsafePathError } from '../lib/errors.js';
import { signalGroup, waitForChild } from '../lib/process.js';
import { mountsUnder, readMountInfo } from './mounts.js';

/** What a deletion removed. `remaining` lists targets that still exist afterwards. */
export interface DeleteResult {
  /** Entries removed (files, directories, links, FIFOs, sockets...). */
  count: number;
  /** Apparent bytes of the non-directory entries removed. */
  bytes: number;
  remaining: string[];
  durationMs: number;
}

/**
 * How the children count and delete:
 * - `find-delete`: one walk, `find -xdev -depth -printf ... -delete` (counts and deletes together);
 * - `find-then-rm`: `find -xdev -printf` to count, then `rm -rf --one-file-system`.
 * bench/cleanup-delete.ts measures both against plain `rm -rf`; find-delete is the default.
 */
export type DeleteStrategy = 'find-delete' | 'find-then-rm';

/** Options of deleteTrees; defaults: strategy find-delete, the real mountinfo, no logger. */
export interface DeleteOptions {
  log?: Logger;
  signal?: AbortSignal;
  strategy?: DeleteStrategy;
  mountinfoFile?: string;
}

/**
 * The longest a deletion child may run before it is killed: a 200,000-file tree takes seconds; an
 * hour means a stuck disk, and the entry is then left for the next drain rather than held forever.
 */
export const DELETE_TIMEOUT_MS = 60 * 60_000;

/**
 * The children's environment: an absolute PATH (find refuses -execdir with a relative PATH entry,
 * and no job-writable directory may be searched for `rm` or `chattr`), and the C locale so that
 * names are bytes.
 */
const CHILD_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

/**
 * Deletes each target (a file, a link or a whole tree) without following symlinks or crossing
 * mounts. Throws UnsafePathError when a target holds a mount or cannot be put in argv; returns
 * `remaining` for targets that could not be fully removed.
 */
export async function deleteTrees(targets: string[], opts: DeleteOptions = {}): Promise<DeleteResult> {
  const started = performance.now();
  const result: DeleteResult = { count: 0, bytes: 0, remaining: [], durationMs: 0 };
  const present: string[] = [];
  for (const t of targets) {
    if (!t.startsWith('/') || t.includes('\0')) throw new UnsafePathError('not an absolute path', t, t);
    if (t.includes('\uFFFD')) throw new UnsafePathError('path bytes are not UTF-8', t, t);
    if (await lexists(t)) present.push(t);
  }
  if (present.length === 0) return done(result, started);
  const mounts = await readMountInfo(opts.mountinfoFile);
  for (const t of present) {
    const inside = mountsUnder(mounts, t, true);
    if (inside.length > 0) {
      throw new UnsafePathError(`a mount is inside: ${inside[0]?.mountPointText}`, t, t);
    }
  }
  const strategy = opts.strategy ?? 'find-delete';
  await pass(present, strategy, result, opts);
  let left = await existing(present);
  if (left.length > 0 && !opts.signal?.aborted) {
    opts.log?.info({ entries: left.length }, 'clearing immutable/append-only attributes');
    await spawnCounted(
      'find',
      [...left, '-xdev', '(', '-type', 'f', '-o', '-type', 'd', ')', '-execdir', 'chattr', '-f', '-i', '-a', '--', '{}', '+'],
      undefined,
      opts.signal,
    );
    await pass(left, strategy, result, opts);
    left = await existing(left);
  }
  result.remaining = left;
  return done(result, started);
}

/** deleteTrees for one target. */
export function deleteTree(target: string, opts: DeleteOptions = {}): Promise<DeleteResult> {
  return deleteTrees([target], opts);
}

async function pass(targets: string[], strategy: DeleteStrategy, result: DeleteResult, opts: DeleteOptions): Promise<void> {
  const counter = lineCounter(result);
  // `--` is not understood by find, so targets are absolute paths: none can start with '-'.
  const printf = ['-printf', '%y %s\\n'];
  if (strategy === 'find-delete') {
    const stderr = await spawnCounted('find', [...targets, '-xdev', '-depth', ...printf, '-delete'], counter, opts.signal);
    if (stderr) opts.log?.debug({ stderr: stderr.slice(0, 500) }, 'find -delete left entries');
    return;
  }
  // Count first, then delete: errors in the count are harmless (the count is a report only).
  const tally: DeleteResult = { count: 0, bytes: 0, remaining: [], durationMs: 0 };
  await spawnCounted('find', [...targets, '-xdev', ...printf], lineCounter(tally), opts.signal);
  const stderr = await spawnCounted('rm', ['-rf', '--one-file-system', '--', ...targets], undefined, opts.signal);
  if (stderr) opts.log?.debug({ stderr: stderr.slice(0, 500) }, 'rm left entries');
  // Entries that survived rm were counted too; subtract them by counting what is left.
  const after: DeleteResult = { count: 0, bytes: 0, remaining: [], durationMs: 0 };
  const still = await existing(targets);
  if (still.length > 0) await spawnCounted('find', [...still, '-xdev', ...printf], lineCounter(after), opts.signal);
  counter.add(tally.count - after.count, tally.bytes - after.bytes);
}

interface Counter {
  feed(chunk: Buffer): void;
  add(count: number, bytes: number): void;
}

/** Counts `%y %s` lines (type letter, apparent size) as they stream in. */
function lineCounter(into: DeleteResult): Counter {
  let partial = '';
  return {
    feed(chunk) {
      const text = partial + chunk.toString('latin1');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.length < 3) continue;
        into.count++;
        if (line[0] !== 'd') into.bytes += Number(line.slice(2)) || 0;
      }
    },
    add(count, bytes) {
      into.count += count;
      into.bytes += bytes;
    },
  };
}

/**
 * Runs a child in its own process group, streams stdout into `counter`, returns (capped) stderr.
 * Aborting, or DELETE_TIMEOUT_MS, kills the group.
 */
async function spawnCounted(cmd: string, args: string[], counter: Counter | undefined, signal?: AbortSignal): Promise<string> {
  if (signal?.aborted) return '';
  const child = spawn(cmd, args, {
    stdio: ['ignore', counter ? 'pipe' : 'ignore', 'pipe'],
    detached: true,
    env: CHILD_ENV,
  });
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => counter?.feed(d));
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 64 * 1024) stderr += d.toString('utf8');
  });
  const kill = (): void => {
    if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
  };
  const timer = setTimeout(kill, DELETE_TIMEOUT_MS);
  signal?.addEventListener('abort', kill, { once: true });
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  try {
    await spawned;
    await waitForChild(child);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', kill);
  }
  return stderr;
}

async function lexists(p: string | Buffer): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function existing(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) if (await lexists(p)) out.push(p);
  return out;
}

function done(result: DeleteResult, started: number): DeleteResult {
  result.durationMs = Math.round(performance.now() - started);
  return result;
}
