import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { readIfExists, writeFileAtomic } from '../lib/fs.js';
import type { EngineInventory } from '../cleanup/engine-inventory.js';
import type { GuardJob } from '../lib/job-guard.js';
import type { AgentState } from './states.js';

/** What survives a crash: enough to clean up and to delete every registration we created. */
export interface PersistedState {
  v: 1;
  state: AgentState;
  /** ISO time of the last transition. */
  since: string;
  /** ISO time the host first booted the agent (host lifetime). */
  hostStartedAt: string;
  /** Jobs served on this host since it was last fresh. */
  jobsServed: number;
  /** Next registration sequence number (for the {seq} name template). */
  seq: number;
  /** The registration in use, if any. */
  runner?: { id: number; name: string; registeredAt: string };
  /** A name about to be registered: after a crash here, look it up and delete it. */
  pendingName?: string;
  /**
   * Names whose registration request may still be completed by the service (sent before a crash,
   * timed out, answered slowly, or given up on): each is looked up at the following job boundaries
   * and whatever runner carries it is deleted, until `settleAt` has passed (a late completion is no
   * longer possible) and a lookup then answered; `until` caps the lookups when they keep failing.
   * An entry without `settleAt` (older versions), or with `untilFound` (a name sent before a
   * crash, at a time not known), is also kept while its lookups find nothing.
   */
  recheckNames?: { name: string; until: string; settleAt?: string; untilFound?: boolean }[];
  /** Registrations created and not yet known to be gone (deleted after a crash; no ghosts). */
  registrations: { id: number; name: string }[];
  /** True from the moment a listener starts until a verified cleanup: a crash then means "clean first". */
  dirty: boolean;
  /** The job in progress, for the journal record written after a crash. */
  job?: {
    /** Written into the job's record; a recovery that finds it in the journal does not write again. */
    key?: string;
    startedAt: string;
    listenerStartedAt: string;
    vars?: Record<string, string>;
    name?: string;
    runner?: { id: number; name: string };
    /** Set once the listener exited: what the job's record will say. */
    endedAt?: string;
    result?: string;
    exitCode?: number | null;
    exitSignal?: string | null;
    /** jobsServed already includes this job (so a recovery does not count it twice). */
    counted?: boolean;
    /** A job no agent watched, kept before recovery's cleanup removes what showed it (its record's evidence). */
    evidence?: string[];
  };
  /** Mirror of the quarantine fact's reason (quarantine.json is the record; see quarantine-store.ts). */
  quarantineReason?: string;
  /** The job the guards prepared for, until they released it (a restarted agent releases it). */
  guardJob?: GuardJob;
  /** The container engine's objects before the current job (see cleanup/engine-inventory.ts). */
  engineBefore?: EngineInventory;
  /** Listener failures in a row (crash loop detection). */
  consecutiveFailures: number;
}

/** The state before the first boot. */
export function initialState(now: Date): PersistedState {
  return {
    v: 1,
    state: 'boot',
    since: now.toISOString(),
    hostStartedAt: now.toISOString(),
    jobsServed: 0,
    seq: 1,
    registrations: [],
    dirty: false,
    consecutiveFailures: 0,
  };
}

/** Reads and writes `<stateDir>/state.json` atomically (root-only, 0600). */
export class StateStore {
  readonly file: string;
  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'state.json');
  }

  /** The persisted state, or undefined on the first boot. A corrupt file counts as dirty. */
  async load(): Promise<PersistedState | undefined> {
    const text = await readIfExists(this.file);
    if (text === undefined) return undefined;
    try {
      const parsed = JSON.parse(text) as PersistedState;
      if (parsed.v !== 1 || typeof parsed.state !== 'string') throw new Error('unknown state version');
      parsed.registrations ??= [];
      parsed.consecutiveFailures ??= 0;
      return parsed;
    } catch {
      // Cannot know what was happening: assume the worst (when in doubt the host is dirty).
      const s = initialState(new Date());
      s.dirty = true;
      return s;
    }
  }

  /** Writes atomically; on failure (ENOSPC...) removes the half-written temp files, keeping the old state. */
  async save(s: PersistedState): Promise<void> {
    try {
      await writeFileAtomic(this.file, `${JSON.stringify(s, null, 2)}\n`, 0o600);
    } catch (err) {
      const dir = path.dirname(this.file);
      const prefix = `.${path.basename(this.file)}.`;
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (name.startsWith(prefix) && name.endsWith('.tmp')) await rm(path.join(dir, name), { force: true }).catch(() => {});
      }
      throw err;
    }
  }
}
