/**
 * Runner updates in place, between jobs, without recycling the host (host config
 * `runner.updates`). Layout after the first update (every later one switches one symlink):
 *
 *   <root>/bin        -> versions/current/bin        (and externals, run.sh, config.sh, ...)
 *   <root>/versions/current -> 2.331.0              (the one rename that switches versions)
 *   <root>/versions/2.330.0/  the previous version, kept for a roll back
 *   <root>/versions/2.331.0/  unpacked from the verified tarball
 *
 * Steps: newest release from the source → newer than the running one? → download (bounded in
 * time and size) while hashing → SHA-256 equal to the published digest, else refused → unpack
 * into a staging directory beside the installation (same filesystem) → check it is a runner →
 * rename into versions/<new> → (first time only) copy the old version to versions/<old> with
 * hard links and point every top-level entry at versions/current, which still names the old one
 * → rename versions/current.next over versions/current (atomic) → the installation manifest is
 * re-taken. An intent file (`.runner-update.json`, fsynced) names each step; recoverRunnerUpdate
 * (run at agent start and first thing in updateRunner) undoes an unfinished migration so a
 * crash anywhere leaves the old runner (or, once the switch happened, the new one) working.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { runCommand } from '../lib/process.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { compareVersions, latestRelease, ReleaseSourceError, type ReleaseCandidate } from './update-source.js';

/** A release tarball is about 200 MB; more than 1 GiB is not a runner and would fill the disk. */
export const MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024;
/** Reading the release list takes well under a second; 30 s covers a slow mirror. */
export const RELEASE_LIST_TIMEOUT_MS = 30_000;
/** A 200 MB tarball at a modest 5 MB/s takes 40 s; ten minutes is a hung transfer. */
export const DOWNLOAD_TIMEOUT_MS = 10 * 60_000;
/** Unpacking takes seconds; a tar that runs two minutes is stuck on a bad disk. */
const UNPACK_TIMEOUT_MS = 120_000;
/** `Runner.Listener --version` answers at once; 30 s allows a cold .NET start on a slow disk. */
const VERSION_TIMEOUT_MS = 30_000;

const INTENT = '.runner-update.json';
const STAGING = '.updates';
const VERSIONS = 'versions';
/** What an unpacked runner must contain to be installed. */
const REQUIRED = ['bin/Runner.Listener', 'run.sh', 'config.sh'];
/** Top-level names the runner writes itself: never part of a version, never switched. */
const RUNNER_OWNED = new Set([
  '_work',
  '_diag',
  '.runner',
  '.runner_migrated',
  '.credentials',
  '.credentials_migrated',
  '.credentials_rsaparams',
  '.env',
  '.path',
  '.runner-warden.lock',
  '.runner-warden.quarantined',
  INTENT,
  STAGING,
  VERSIONS,
]);

/** The outcome the agent branches on. */
export type UpdateResult = { updated: string; from: string; ms: number } | { none: string } | { refused: string };

/** What updateRunner needs; the agent passes its runner root, host config and clock. */
export interface UpdateOptions {
  root: string;
  /** `github` or a mirror URL (host config runner.updates.source). */
  source: string;
  apiUrl: string;
  /** e.g. 'linux-x64' (default). */
  platform?: string;
  token?: string;
  /** The running version; default: asked from `bin/Runner.Listener --version`. */
  currentVersion?: string;
  fetch?: typeof fetch;
  clock: Clock;
  log: Logger;
  /** Re-takes the installation manifest after the switch (the agent passes takeInstallManifest). */
  retakeManifest: () => Promise<unknown>;
  /** Test hook: called before each named step (a crash test kills the process there). */
  beforeStep?: (step: string) => void | Promise<void>;
}

interface Intent {
  from: string;
  to: string;
  /** 'migrating' until every top-level entry is a symlink into versions/current; then 'switching'. */
  state: 'migrating' | 'switching';
  moved: string[];
}

/** Installs a newer verified release, or says why not. Never throws for an expected refusal. */
export async function updateRunner(o: UpdateOptions): Promise<UpdateResult> {
  const step = async (name: string): Promise<void> => {
    await o.beforeStep?.(name);
  };
  await recoverRunnerUpdate(o.root, o.log);
  const doFetch = o.fetch ?? globalThis.fetch;
  let current: string;
  try {
    current = o.currentVersion ?? (await installedVersion(o.root));
  } catch (err) {
    return { refused: `the running version cannot be read: ${(err as Error).message}` };
  }
  let rel: ReleaseCandidate;
  try {
    rel = await latestRelease({
      source: o.source,
      apiUrl: o.apiUrl,
      platform: o.platform ?? 'linux-x64',
      ...(o.token ? { token: o.token } : {}),
      fetch: doFetch,
      timeoutMs: RELEASE_LIST_TIMEOUT_MS,
    });
  } catch (err) {
    if (err instanceof ReleaseSourceError) return { refused: err.message };
    throw err;
  }
  if (compareVersions(rel.version, current) <= 0) return { none: `v${current} is the newest release` };
  const staging = path.join(o.root, STAGING);
  await fsp.rm(staging, { recursive: true, force: true });
  await fsp.mkdir(staging, { recursive: true, mode: 0o700 });
  const tarball = path.join(staging, rel.assetName);
  await step('download');
  const got = await download(doFetch, rel.url, tarball);
  if ('refused' in got) return got;
  if (got.sha256 !== rel.sha256) {
    await fsp.rm(staging, { recursive: true, force: true });
    o.log.error(
      { version: rel.version, published: rel.sha256, got: got.sha256 },
      'runner release refused: SHA-256 differs from the published digest',
    );
    return { refused: `v${rel.version}: SHA-256 ${got.sha256} differs from the published ${rel.sha256}` };
  }
  const started = o.clock.now();
  await step('unpack');
  const unpacked = path.join(staging, rel.version);
  await fsp.mkdir(unpacked);
  const tar = await runCommand('tar', ['-xzf', tarball, '-C', unpacked, '--no-same-owner', '--no-overwrite-dir'], {
    timeoutMs: UNPACK_TIMEOUT_MS,
  });
  if (tar.code !== 0) {
    await fsp.rm(staging, { recursive: true, force: true });
    return { refused: `v${rel.version}: the tarball does not unpack (${tar.stderr.trim().slice(0, 200)})` };
  }
  for (const rel2 of REQUIRED) {
    if (!(await exists(path.join(unpacked, rel2)))) {
      await fsp.rm(staging, { recursive: true, force: true });
      return { refused: `v${rel.version}: the tarball has no ${rel2}` };
    }
  }
  const versions = path.join(o.root, VERSIONS);
  await fsp.mkdir(versions, { recursive: true, mode: 0o755 });
  await fsp.rm(path.join(versions, rel.version), { recursive: true, force: true });
  await fsp.rename(unpacked, path.join(versions, rel.version));
  const intent: Intent = { from: current, to: rel.version, state: 'migrating', moved: [] };
  await writeIntent(o.root, intent);
  await step('migrate');
  await migrate(o.root, current, rel.version, intent, step);
  intent.state = 'switching';
  await writeIntent(o.root, intent);
  await step('switch');
  await pointCurrent(o.root, rel.version);
  await step('switched');
  await fsp.rm(path.join(o.root, INTENT), { force: true });
  await fsp.rm(staging, { recursive: true, force: true });
  await pruneVersions(o.root, [current, rel.version]);
  await o.retakeManifest();
  const ms = o.clock.now() - started;
  o.log.info({ from: current, to: rel.version, ms }, 'runner updated in place');
  return { updated: rel.version, from: current, ms };
}

/**
 * Finishes or undoes an update a crash interrupted: before the switch the old version is made
 * whole again (every top-level entry back in place), after it nothing is left to do but the
 * intent file. Idempotent; a no-op without an intent file.
 */
export async function recoverRunnerUpdate(root: string, log?: Logger): Promise<'none' | 'rolled-back' | 'finished'> {
  let intent: Intent;
  try {
    intent = JSON.parse(await fsp.readFile(path.join(root, INTENT), 'utf8')) as Intent;
  } catch {
    return 'none';
  }
  const current = await fsp.readlink(path.join(root, VERSIONS, 'current')).catch(() => undefined);
  if (current === intent.to) {
    await fsp.rm(path.join(root, INTENT), { force: true });
    log?.info({ version: intent.to }, 'runner update was switched before a crash; finished');
    return 'finished';
  }
  // Before the switch: a top-level directory moved aside but not yet replaced by its symlink goes back.
  for (const name of intent.moved) {
    const live = path.join(root, name);
    const aside = path.join(root, STAGING, `old-${name}`);
    if (!(await exists(live)) && (await exists(aside))) await fsp.rename(aside, live);
  }
  await fsp.rm(path.join(root, VERSIONS, 'current.next'), { force: true });
  await fsp.rm(path.join(root, INTENT), { force: true });
  log?.warn({ from: intent.from, to: intent.to }, 'runner update interrupted before the switch; the old version stays');
  return 'rolled-back';
}

/** The installed version, from `bin/Runner.Listener --version`. */
export async function installedVersion(root: string): Promise<string> {
  const r = await runCommand(path.join(root, 'bin', 'Runner.Listener'), ['--version'], { timeoutMs: VERSION_TIMEOUT_MS, cwd: root });
  const v = /(\d+\.\d+\.\d+)/.exec(r.stdout)?.[1];
  if (r.code !== 0 || !v) throw new Error(`bin/Runner.Listener --version exited ${r.code} with "${r.stdout.trim().slice(0, 80)}"`);
  return v;
}

/**
 * Makes every top-level entry of the old installation a symlink into versions/current (which
 * names the old version until the switch). Done once: later updates find the symlinks in place.
 */
async function migrate(root: string, from: string, to: string, intent: Intent, step: (s: string) => Promise<void>): Promise<void> {
  const versions = path.join(root, VERSIONS);
  if ((await fsp.readlink(path.join(versions, 'current')).catch(() => undefined)) === undefined) {
    // The old installation as a version of its own: hard links, so no data is copied.
    const old = path.join(versions, from);
    await fsp.rm(old, { recursive: true, force: true });
    await fsp.mkdir(old);
    for (const name of await topLevel(root)) {
      const r = await runCommand('cp', ['-al', '--', path.join(root, name), path.join(old, name)], { timeoutMs: UNPACK_TIMEOUT_MS });
      if (r.code !== 0) throw new Error(`cp -al ${name}: ${r.stderr.trim()}`);
    }
    await pointCurrent(root, from);
  }
  const names = new Set([...(await topLevel(root)), ...(await fsp.readdir(path.join(versions, to)))]);
  for (const name of names) {
    if (RUNNER_OWNED.has(name)) continue;
    const live = path.join(root, name);
    const target = path.join(VERSIONS, 'current', name);
    const st = await fsp.lstat(live).catch(() => undefined);
    if (st?.isSymbolicLink() && (await fsp.readlink(live)) === target) continue;
    const tmp = path.join(root, `.${name}.rw-link`);
    await fsp.rm(tmp, { force: true });
    await fsp.symlink(target, tmp);
    if (st?.isDirectory()) {
      // rename(2) cannot put a symlink over a directory: move it aside first (recovery puts it back).
      intent.moved.push(name);
      await writeIntent(root, intent);
      await fsp.rename(live, path.join(root, STAGING, `old-${name}`));
      await step(`migrate:${name}`);
    }
    await fsp.rename(tmp, live);
  }
}

/** Atomically points versions/current at `version`. */
async function pointCurrent(root: string, version: string): Promise<void> {
  const next = path.join(root, VERSIONS, 'current.next');
  await fsp.rm(next, { force: true });
  await fsp.symlink(version, next);
  await fsp.rename(next, path.join(root, VERSIONS, 'current'));
  const dir = await fsp.open(path.join(root, VERSIONS), 'r');
  await dir.sync().finally(() => dir.close());
}

/** Removes every version but `keep` (the previous one stays for a roll back by hand). */
async function pruneVersions(root: string, keep: string[]): Promise<void> {
  for (const name of await fsp.readdir(path.join(root, VERSIONS))) {
    if (name === 'current' || keep.includes(name)) continue;
    await fsp.rm(path.join(root, VERSIONS, name), { recursive: true, force: true });
  }
}

async function topLevel(root: string): Promise<string[]> {
  return (await fsp.readdir(root)).filter((n) => !RUNNER_OWNED.has(n) && !n.endsWith('.rw-link'));
}

async function writeIntent(root: string, intent: Intent): Promise<void> {
  const file = path.join(root, INTENT);
  const tmp = `${file}.tmp`;
  const fh = await fsp.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(intent));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
}

/** Streams `url` to `file`, hashing as it goes, bounded in time and size. */
async function download(doFetch: typeof fetch, url: string, file: string): Promise<{ sha256: string } | { refused: string }> {
  const hash = createHash('sha256');
  let size = 0;
  try {
    const res = await doFetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) });
    if (!res.ok || !res.body) return { refused: `${url} answered ${res.status}` };
    const fh = await fsp.open(file, 'w', 0o600);
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        size += chunk.length;
        if (size > MAX_DOWNLOAD_BYTES) return { refused: `${url} is larger than ${MAX_DOWNLOAD_BYTES} bytes` };
        hash.update(chunk);
        await fh.write(chunk);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    return { refused: `${url} could not be downloaded: ${(err as Error).message}` };
  }
  return { sha256: hash.digest('hex') };
}

async function exists(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    () => true,
    () => false,
  );
}
