/**
 * The runner installation's manifest: every file of the runner root (`bin/`,
 * `externals/`, the scripts, `.env`, `.path`...) recorded at boot, so that a job that changes or
 * adds a file meant to run in the next job (docs/hostile-jobs.md, 11) makes the host dirty. Stored root-only in
 * `<slot.stateDir>/runner-install.json`. Comparison is stat-first, like the home baseline.
 *
 * Left out: what the runner itself writes while it runs (`_work`, `_diag`, its registration files,
 * which the credentials step removes) and the agent's own directories when they sit inside the root.
 */
import { promises as fsp, constants as fsc } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileAtomic } from '../lib/fs.js';
import { isInside } from '../lib/fs.js';
import { systemClock, type Clock } from '../lib/clock.js';
import {
  recordTree,
  indexEntries,
  encodeEntries,
  decodeEntries,
  entryFromStat,
  hashFile,
  type Row,
  type TreeIndex,
  type ManifestEntry,
} from './baseline.js';
import { diffTree, type HomeDiff } from './home-diff.js';
import { DirRef, fromText, shown, isGone } from '../lib/nofollow.js';
import type { Removed, Slot } from './types.js';

/** Top-level names of the runner root that the runner rewrites by itself and are not part of the install. */
export const INSTALL_EXCLUDED = [
  '_work',
  '_diag',
  '.runner',
  '.runner_migrated',
  '.credentials',
  '.credentials_migrated',
  '.credentials_rsaparams',
  // config.sh rewrites svc.sh with per-runner content at every registration (token mode); the
  // agent never runs it, so a job that changes it gains nothing.
  'svc.sh',
  // The agent's one-agent-per-host lock (root-only 0600, rewritten with the agent's pid at each start).
  '.runner-warden.lock',
  // The copy of a quarantine fact (agent/quarantine-store.ts): present only while quarantined;
  // anything there at a cleanup is reported by strayQuarantineCopy.
  '.runner-warden.quarantined',
];

/** A loaded install manifest. */
export interface InstallManifest extends TreeIndex {
  version: 1;
  root: string;
  takenAt: number;
}

function manifestFile(slot: Slot): string {
  return path.join(slot.stateDir, 'runner-install.json');
}

/** The manifest file of a slot (root-only, in its state directory). */
export const installManifestFile = manifestFile;

/**
 * Who hears of each manifest the agent writes, by file: the integrity guard pins the digest of the
 * bytes written, so that the agent's own rewrites pass and anyone else's does not
 * (src/integrity/agent-records.ts). One listener per file: the latest agent wired for it.
 */
const savedListeners = new Map<string, (sha256: string) => void>();

/** From now on, calls `fn` with the sha256 of every manifest written at `file`. */
export function onInstallManifestSaved(file: string, fn: (sha256: string) => void): void {
  savedListeners.set(file, fn);
}

/** The paths (byte strings, relative to the root) the manifest leaves out for this slot. */
export function installSkips(slot: Slot): { has(rel: string): boolean; isAncestor(rel: string): boolean } {
  const skip = [...INSTALL_EXCLUDED];
  for (const dir of [slot.workDir, slot.trashDir, slot.stateDir, slot.jobRoot]) {
    if (isInside(slot.runnerRoot, dir) && path.resolve(dir) !== path.resolve(slot.runnerRoot)) {
      skip.push(path.relative(slot.runnerRoot, dir));
    }
  }
  const rels = skip.map(fromText);
  return {
    has: (rel) => rels.some((s) => rel === s || rel.startsWith(`${s}/`)),
    isAncestor: (rel) => rels.some((s) => s.startsWith(`${rel}/`)),
  };
}

/** Records the runner installation of `slot` (hashing every file) and stores the manifest. */
export async function takeInstallManifest(slot: Slot, clock: Clock = systemClock): Promise<InstallManifest> {
  const rec = await recordTree(fromText(slot.runnerRoot), installSkips(slot), clock);
  const manifest: InstallManifest = { version: 1, root: slot.runnerRoot, takenAt: clock.now(), ...indexEntries(rec.entries) };
  await saveInstallManifest(slot, manifest);
  return manifest;
}

/** Writes the manifest atomically, root-only. */
export async function saveInstallManifest(slot: Slot, m: InstallManifest): Promise<void> {
  await fsp.mkdir(slot.stateDir, { recursive: true, mode: 0o700 });
  const data = JSON.stringify({ version: 1, root: m.root, takenAt: m.takenAt, entries: encodeEntries(m.entries.values()) });
  await writeFileAtomic(manifestFile(slot), data, 0o600);
  savedListeners.get(manifestFile(slot))?.(createHash('sha256').update(data).digest('hex'));
}

/** Loads the manifest; undefined when none was taken (or it belongs to another root). */
export async function loadInstallManifest(slot: Slot): Promise<InstallManifest | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(manifestFile(slot), 'utf8');
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
  const raw = JSON.parse(text) as { version: number; root: string; takenAt: number; entries: Row[] };
  if (raw.version !== 1 || raw.root !== slot.runnerRoot) return undefined;
  return { version: 1, root: raw.root, takenAt: raw.takenAt, ...indexEntries(decodeEntries(raw.entries)) };
}

/** Compares the runner root with its manifest. */
export function diffInstall(slot: Slot, m: InstallManifest, clock: Clock = systemClock): Promise<HomeDiff> {
  const skips = installSkips(slot);
  return diffTree(fromText(slot.runnerRoot), m, { has: (p: string) => skips.has(p), isAncestor: () => false }, clock);
}

/** One line per difference of the runner installation. */
export function describeInstallDiff(slot: Slot, d: HomeDiff): string[] {
  const p = (rel: string): string => (rel === '' ? slot.runnerRoot : path.join(slot.runnerRoot, shown(rel)));
  return [
    ...d.added.map((r) => `runner install: added ${p(r)}`),
    ...d.changed.map((c) => `runner install: changed ${p(c.rel)} (${c.what.join(', ')})`),
    ...d.missing.map((r) => `runner install: missing ${p(r)}`),
  ];
}

/** The name of writeRunnerEnv's fresh file before its rename (`.env.rw-<12 hex>`, `.path.rw-…`). */
const ENV_TEMP_NAME = /^\.(env|path)\.rw-[0-9a-f]{12}$/;

/**
 * Removes what a killed writeRunnerEnv left: a root-owned regular file with one link under its
 * temporary name. The agent made it, and a restart's verification would otherwise call it a job's
 * plant and quarantine the host. A file of that name the runner user owns is left for the diff.
 */
export async function removeStaleEnvTemps(slot: Slot): Promise<Removed> {
  const removed: Removed = { count: 0, bytes: 0 };
  const dir = await DirRef.open(fromText(slot.runnerRoot));
  try {
    for (const name of (await dir.list()).filter((n) => ENV_TEMP_NAME.test(n))) {
      const st = await dir.lstat(name);
      if (!st?.isFile() || st.uid !== 0 || st.nlink !== 1) continue;
      await fsp.unlink(dir.at(name));
      removed.count += 1;
      removed.bytes += st.size;
    }
  } finally {
    await dir.close();
  }
  return removed;
}

/** The name of the agent's quarantine copy in the runner root (agent/quarantine-store.ts). */
const QUARANTINE_COPY = '.runner-warden.quarantined';

/**
 * The manifest skips the quarantine copy's name (it comes and goes with a quarantine), so anything
 * there at a cleanup is named here: the agent writes its copy only after a verdict and removes it at
 * the release, before any cleanup, so an entry of that name is a job's (a place no check looks).
 */
export async function strayQuarantineCopy(slot: Slot): Promise<string | undefined> {
  const file = path.join(slot.runnerRoot, QUARANTINE_COPY);
  const st = await fsp.lstat(file).catch(() => undefined);
  if (!st) return undefined;
  const kind = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'special file';
  return `${file}: a ${kind} of uid ${st.uid} under the name of the agent's quarantine copy, outside a quarantine`;
}

/** PATH written to `.path` when the caller gives none. */
const DEFAULT_RUNNER_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Writes the runner's `.env` (one KEY=VALUE per line; the listener splits at the first '=' and
 * strips nothing: docs/runner-contract.md) and `.path` (`vars.PATH`, else a default), root-owned 0644, each
 * by a fresh file renamed over the old one (a job's symlink at `.env` is replaced, never followed),
 * then updates their manifest entries so the next check does not call them changed.
 */
export async function writeRunnerEnv(slot: Slot, vars: Record<string, string>, clock: Clock = systemClock): Promise<void> {
  for (const [k, v] of Object.entries(vars)) {
    if (k === '' || /[=\n\r\0]/.test(k) || /[\n\r\0]/.test(v)) {
      throw new Error(`runner .env variable ${JSON.stringify(k)} has a name or value that would split into other lines`);
    }
  }
  const files: Record<string, string> = {
    '.env': Object.entries(vars)
      .map(([k, v]) => `${k}=${v}\n`)
      .join(''),
    '.path': `${vars.PATH ?? DEFAULT_RUNNER_PATH}\n`,
  };
  const dir = await DirRef.open(fromText(slot.runnerRoot));
  const fresh: ManifestEntry[] = [];
  try {
    for (const [name, content] of Object.entries(files)) {
      const tmp = `.${name.slice(1)}.rw-${randomBytes(6).toString('hex')}`;
      const fh = await fsp.open(dir.at(tmp), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644);
      try {
        await fh.writeFile(content);
        await fh.chown(0, 0);
        await fh.chmod(0o644);
        await fh.sync();
      } finally {
        await fh.close();
      }
      const cur = await dir.lstat(name);
      if (cur?.isDirectory()) throw new Error(`${name} in the runner root is a directory`);
      await fsp.rename(dir.at(tmp), dir.at(name));
      const st = await fsp.lstat(dir.at(name));
      const e = entryFromStat(name, st, clock.now());
      e.sha256 = await hashFile(dir.at(name), st.ino, st.size);
      fresh.push(e);
    }
  } finally {
    await dir.close();
  }
  const m = await loadInstallManifest(slot);
  if (!m) return;
  const all = [...m.entries.values()].filter((e) => e.rel !== '.env' && e.rel !== '.path');
  await saveInstallManifest(slot, { ...m, ...indexEntries([...all, ...fresh]) });
}
