/**
 * Quarantine as a persisted fact, kept apart from the transient lifecycle state: once a host is
 * quarantined, `<stateDir>/quarantine.json` says so (reason, time, evidence) until an operator runs
 * `runner-warden unquarantine --reason TEXT` or the host is replaced. No restart, crash or
 * recovery path clears it (ARCHITECTURE.md, "Quarantine").
 *
 * An operator's release while an agent runs goes through a request file the quarantined agent
 * polls (`unquarantine-request.json`); both files are root-only in the root-only state directory.
 */
import { lstat, rm } from 'node:fs/promises';
import path from 'node:path';
import { readIfExists, writeFileAtomic } from '../lib/fs.js';

/** Why and since when a host is quarantined. */
export interface QuarantineFact {
  v: 1;
  reason: string;
  /** ISO time it was first quarantined. */
  at: string;
  /** Up to MAX_EVIDENCE lines of what made it dirty (verification problems, failed steps). */
  evidence: string[];
}

/** An operator's release of a quarantine, with who asked and why. */
export interface UnquarantineRequest {
  v: 1;
  reason: string;
  /** Who asked (the login name behind sudo, and the uid). */
  by: string;
  at: string;
}

/** Evidence lines kept with the fact: enough to start an investigation, small enough to read. */
export const MAX_EVIDENCE = 20;

/** Characters kept of one evidence line or reason (a path or a process command line). */
const MAX_LINE_CHARS = 500;

export const QUARANTINE_FILE = 'quarantine.json';
/**
 * The copy of the fact kept in the runner root: a state dir deleted or changed (an operator's
 * "reset") must not end the quarantine of the installation it describes, nor let a fresh start
 * record that installation as the baseline. Root-owned (the runner user cannot make a root-owned
 * file, so a copy it writes is ignored; deleting it needs the state dir's fact gone too).
 */
export const RUNNER_ROOT_QUARANTINE_FILE = '.runner-warden.quarantined';
export const UNQUARANTINE_REQUEST_FILE = 'unquarantine-request.json';

/** Builds a fact, bounding the reason and evidence. */
export function quarantineFact(reason: string, at: Date, evidence: readonly string[] = []): QuarantineFact {
  return {
    v: 1,
    reason: reason.slice(0, MAX_LINE_CHARS),
    at: at.toISOString(),
    evidence: evidence.slice(0, MAX_EVIDENCE).map((l) => l.slice(0, MAX_LINE_CHARS)),
  };
}

/** Reads and writes the quarantine fact and the release request of one state directory. */
export class QuarantineStore {
  readonly file: string;
  readonly requestFile: string;
  /** The copy in the runner root (absent: the state dir's fact alone). */
  readonly rootCopy: string | undefined;
  constructor(
    private readonly stateDir: string,
    runnerRoot?: string,
  ) {
    this.file = path.join(stateDir, QUARANTINE_FILE);
    this.requestFile = path.join(stateDir, UNQUARANTINE_REQUEST_FILE);
    this.rootCopy = runnerRoot === undefined ? undefined : path.join(runnerRoot, RUNNER_ROOT_QUARANTINE_FILE);
  }

  /**
   * The stored fact, or undefined. A file that exists but cannot be parsed still means
   * quarantined: when in doubt the host is dirty.
   */
  async load(): Promise<QuarantineFact | undefined> {
    const text = await readIfExists(this.file);
    if (text === undefined) return this.loadRootCopy();
    return parseFact(text) ?? { v: 1, reason: `unreadable ${QUARANTINE_FILE}`, at: new Date(0).toISOString(), evidence: [] };
  }

  /** The runner root's copy when the state dir has no fact (it was deleted, or is another one). */
  private async loadRootCopy(): Promise<QuarantineFact | undefined> {
    if (this.rootCopy === undefined) return undefined;
    const st = await lstat(this.rootCopy).catch(() => undefined);
    if (!st || !st.isFile() || st.uid !== 0) return undefined;
    const text = await readIfExists(this.rootCopy);
    if (text === undefined) return undefined;
    const f = parseFact(text);
    let where: unknown;
    try {
      where = (JSON.parse(text) as { stateDir?: unknown }).stateDir;
    } catch {
      where = undefined;
    }
    const under = typeof where === 'string' && where !== this.stateDir ? `state dir ${where}` : `a state dir since removed`;
    return {
      v: 1,
      reason: `quarantined under ${under} (runner root's ${RUNNER_ROOT_QUARANTINE_FILE}): ${f?.reason ?? 'unreadable'}`.slice(
        0,
        MAX_LINE_CHARS,
      ),
      at: f?.at ?? new Date(0).toISOString(),
      evidence: f?.evidence ?? [],
    };
  }

  async save(f: QuarantineFact): Promise<void> {
    await writeFileAtomic(this.file, `${JSON.stringify(f, null, 2)}\n`, 0o600);
    // World-readable like the installation; written through a fresh O_EXCL|O_NOFOLLOW temp file and a
    // rename, so a link the runner user planted there is replaced, never followed.
    if (this.rootCopy) await writeFileAtomic(this.rootCopy, `${JSON.stringify({ ...f, stateDir: this.stateDir })}\n`, 0o644);
  }

  /** Removes the fact and its copy (only the operator's release does this). */
  async clear(): Promise<void> {
    await rm(this.file, { force: true });
    if (this.rootCopy) await rm(this.rootCopy, { force: true });
  }

  /** The pending release request, if an operator wrote one. */
  async takeRequest(): Promise<UnquarantineRequest | undefined> {
    const text = await readIfExists(this.requestFile);
    if (text === undefined) return undefined;
    await rm(this.requestFile, { force: true });
    try {
      const r = JSON.parse(text) as Partial<UnquarantineRequest>;
      if (typeof r.reason !== 'string' || r.reason.trim() === '' || typeof r.by !== 'string') return undefined;
      return {
        v: 1,
        reason: r.reason.slice(0, MAX_LINE_CHARS),
        by: r.by.slice(0, 200),
        at: typeof r.at === 'string' ? r.at : new Date().toISOString(),
      };
    } catch {
      return undefined;
    }
  }

  async writeRequest(r: UnquarantineRequest): Promise<void> {
    await writeFileAtomic(this.requestFile, `${JSON.stringify(r)}\n`, 0o600);
  }

  async withdrawRequest(): Promise<void> {
    await rm(this.requestFile, { force: true });
  }
}

function parseFact(text: string): QuarantineFact | undefined {
  try {
    const f = JSON.parse(text) as Partial<QuarantineFact>;
    if (typeof f.reason !== 'string' || typeof f.at !== 'string') return undefined;
    return { v: 1, reason: f.reason, at: f.at, evidence: Array.isArray(f.evidence) ? f.evidence.filter((e) => typeof e === 'string') : [] };
  } catch {
    return undefined;
  }
}
