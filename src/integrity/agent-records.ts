/**
 * The agent's own records in its state directory, pinned like the system baseline: the runner
 * user's home baseline (`home-baseline/manifest.json`) and the runner installation's manifest
 * (`runner-install.json`). Cleanup compares the home and the runner root with them, so a job with
 * root (sudo, an engine in host mode, an exploit) that rewrites one to describe what it planted
 * (its `~/.bashrc`, a patched `run.sh`) would pass every cleanup check. The running agent keeps
 * the digest of each record and accepts a new one only when:
 * - the agent announced it: the manifest is written through one function
 *   (src/cleanup/install-manifest.ts `saveInstallManifest`: `.env` before each listener, the new
 *   installation after a runner self-update), which hands this the sha256 of the bytes it wrote;
 * - or it changes nothing but the stat cache, and promises nothing false: the same entries with
 *   the same type, mode, owner, size and content hash or link target, and every entry whose cache
 *   now vouches for a live file ("unchanged, do not hash") is hashed here and must match. Cleanup's
 *   home step rewrites the home baseline so after restoring files; a job that forges a cache entry
 *   for its own file is found by that hash.
 * Anything else is a finding. The first pin is what this agent first reads (the baseline of the
 * image, or of the first boot); a record is retaken with the agent stopped, as the system baseline.
 */
import { lstatSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { decodeEntries, hashFile, type ManifestEntry, type Row } from '../cleanup/baseline.js';
import { statUnchanged } from '../cleanup/home-diff.js';
import { readProcFile } from './proc-table.js';
import { bytes, fromText, shown } from '../lib/nofollow.js';

/** One record: what it is called in a finding, its file, and the tree its entries are relative to. */
export interface AgentRecord {
  label: string;
  file: string;
  /** The home or the runner root (host path) the record's entries describe. */
  tree: string;
}

/** A record as pinned: its digest (null: absent), its header, each entry's promise and stat cache. */
interface Pin {
  digest: string | null;
  header: string;
  entries: Map<string, { promise: string; cache: string }>;
}

/** Entries named in a finding at most: a whole rewritten record is one line, not thousands. */
const SHOWN_ENTRIES = 3;

/** The pinned digests of the agent's records; see the module comment. */
export class AgentRecords {
  private readonly pins = new Map<string, Pin>();
  /** The latest digest the agent announced per file (a write of its own). */
  private readonly announced = new Map<string, string>();

  constructor(readonly records: readonly AgentRecord[]) {}

  /** The agent wrote `file` with these bytes' digest: a record with that digest is its own. */
  announce(file: string, digest: string): void {
    this.announced.set(file, digest);
  }

  /** Pins every record not pinned yet (the first prepare or verification of this agent). */
  pinUnpinned(): void {
    for (const r of this.records) if (!this.pins.has(r.file)) this.pins.set(r.file, pinOf(readRecord(r.file)));
  }

  /** One line per record changed by something other than the agent; accepted changes become the pin. */
  async check(): Promise<string[]> {
    this.pinUnpinned();
    const problems: string[] = [];
    for (const r of this.records) {
      const pinned = this.pins.get(r.file) as Pin;
      const text = readRecord(r.file);
      const digest = digestOf(text);
      if (digest === pinned.digest) continue;
      const why = digest !== null && this.announced.get(r.file) === digest ? undefined : await falsePromises(pinned, text, r.tree);
      if (why === undefined) {
        this.pins.set(r.file, pinOf(text));
        continue;
      }
      problems.push(
        `agent record rewritten: ${r.label} ${r.file}: ${why} (not written by the agent: a job with root hiding a change from cleanup?)`,
      );
    }
    return problems;
  }
}

/** A record's text; null when absent or not a regular file (a FIFO a job put there must not block the agent). */
function readRecord(file: string): string | null {
  return readProcFile(file) ?? null;
}

function digestOf(text: string | null): string | null {
  return text === null ? null : createHash('sha256').update(text).digest('hex');
}

interface Parsed {
  header: string;
  entries: ManifestEntry[];
}

function parse(text: string | null): Parsed | undefined {
  if (text === null) return { header: 'absent', entries: [] };
  try {
    const raw = JSON.parse(text) as { version?: unknown; root?: unknown; home?: unknown; entries?: Row[] };
    if (!Array.isArray(raw.entries)) return undefined;
    return { header: JSON.stringify([raw.version, raw.root, raw.home]), entries: decodeEntries(raw.entries) };
  } catch {
    return undefined;
  }
}

/** What an entry promises about the tree, without its stat cache (a directory's size follows its entries). */
function promise(e: ManifestEntry): string {
  return JSON.stringify([e.type, e.mode, e.uid, e.gid, e.type === 'dir' ? 0 : e.size, e.sha256 ?? e.target ?? null]);
}

/** An entry's stat cache: what lets cleanup skip hashing the file. */
function cacheOf(e: ManifestEntry): string {
  return `${e.ino}:${e.mtimeMs}:${e.ctimeMs}:${e.seenAt}`;
}

function pinOf(text: string | null): Pin {
  const p = parse(text);
  return {
    digest: digestOf(text),
    header: p?.header ?? 'unparsable',
    entries: new Map((p?.entries ?? []).map((e) => [e.rel, { promise: promise(e), cache: cacheOf(e) }])),
  };
}

/**
 * Why a record that differs from its pin cannot be the stat-cache refresh cleanup makes; undefined
 * when it is one (same promises, and every cache entry that vouches for a live file tells the truth).
 */
async function falsePromises(pinned: Pin, text: string | null, tree: string): Promise<string | undefined> {
  const now = parse(text);
  if (!now) return 'unparsable';
  if (now.header !== pinned.header) return text === null ? 'removed' : `header changed (${now.header})`;
  const changed: string[] = [];
  const seen = new Set<string>();
  const vouching: ManifestEntry[] = [];
  for (const e of now.entries) {
    seen.add(e.rel);
    const was = pinned.entries.get(e.rel);
    if (was === undefined) changed.push(`${shown(e.rel) || '.'} added`);
    else if (was.promise !== promise(e)) changed.push(`${shown(e.rel) || '.'} changed`);
    // Only a refreshed cache entry is checked: the pinned ones are trusted as pinned.
    else if (e.type === 'file' && was.cache !== cacheOf(e)) vouching.push(e);
  }
  for (const rel of pinned.entries.keys()) if (!seen.has(rel)) changed.push(`${shown(rel) || '.'} removed`);
  if (changed.length > 0)
    return `entries ${changed.slice(0, SHOWN_ENTRIES).join(', ')}${changed.length > SHOWN_ENTRIES ? ` and ${changed.length - SHOWN_ENTRIES} more` : ''}`;
  for (const e of vouching) {
    const abs = Buffer.concat([bytes(fromText(tree)), Buffer.from('/'), bytes(e.rel)]);
    let st;
    try {
      st = lstatSync(abs);
    } catch {
      continue;
    }
    // A cache entry that does not match the live file makes cleanup hash it: it promises nothing.
    if (!st.isFile() || !statUnchanged(e, st)) continue;
    const sha = await hashFile(abs, st.ino, e.size);
    if (sha !== e.sha256) return `${shown(e.rel)}: its stat cache vouches for content that is not there (${path.join(tree, shown(e.rel))})`;
  }
  return undefined;
}
