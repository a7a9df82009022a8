/**
 * The job journal: append-only JSON lines in the state directory, one record
 * per job (and a few lifecycle events), fsynced before append() returns so that an acknowledged
 * record survives a crash.
 *
 * Files, newest last when read:  journal.jsonl.<keep> ... journal.jsonl.2  journal.jsonl.1  journal.jsonl
 *
 * Rotation is by size and only renames: shift each rotated file up by one (the one beyond `keep`
 * is replaced, which is the retention limit), then rename the live file to `.1`; the next append
 * creates a fresh live file. Nothing is ever truncated or rewritten, so an agent killed at any
 * point of a rotation leaves every record in some file (at worst with a gap in the numbering,
 * which reading tolerates). A torn last line from a crash mid-write is closed with a newline
 * before the next append, so it cannot glue onto the next record; readers skip and report it.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { CleanupReport } from '../cleanup/types.js';
import { appendLineDurable, ensureDir, fsyncDir } from '../lib/fs.js';

/** Name of the live journal file inside the state directory. */
export const JOURNAL_FILE = 'journal.jsonl';

/**
 * Size at which the live file is rotated. A job record is a few KiB (its cleanup report lists
 * each step), so 16 MiB holds thousands of jobs: months on a busy reused host, while one file
 * stays small enough to read whole for `runner-warden journal`.
 */
export const JOURNAL_MAX_BYTES = 16 * 1024 * 1024;

/** Rotated files kept besides the live one; with the default size that bounds the journal at ~80 MiB. */
export const JOURNAL_KEEP = 4;

/** Record format version; bump it when a field changes meaning. */
export const JOURNAL_VERSION = 1;

/** Job metadata as far as the hook (or the listener's output) told it; all optional. */
export interface JobMeta {
  repository?: string;
  workflow?: string;
  job?: string;
  runId?: string;
  runNumber?: string;
  sha?: string;
  ref?: string;
  eventName?: string;
  actor?: string;
}

/** Fields every record has. */
interface RecordBase {
  v: typeof JOURNAL_VERSION;
  /** Monotonic across the journal's files, assigned by append(). */
  seq: number;
  notes?: string[];
}

/** One job, from registration of its runner to the decision about the host. */
export interface JobRecord extends RecordBase {
  type: 'job';
  runnerName: string;
  runnerId?: number;
  job: JobMeta;
  /** ISO 8601. */
  startedAt?: string;
  endedAt: string;
  listenerExitCode: number | null;
  listenerSignal: string | null;
  /** The job's result as known (succeeded, failed, cancelled, unknown...). */
  result: string;
  /**
   * What told the agent the job ended: a hook, the listener's console, or only its exit; or
   * `after-the-fact`: a job no agent watched (its listener ran it while the agent was down), seen
   * only at the next recovery in `evidence`.
   */
  source: 'hook' | 'console' | 'exit' | 'after-the-fact';
  /** Where an after-the-fact record comes from: the runner's `_diag` files, a hook report, the service's answer. */
  evidence?: string[];
  cleanup: CleanupReport;
  decision: 'reuse' | 'recycle' | 'quarantine' | 'stop';
  decisionReason: string;
  timeToReadyMs?: number;
  /** Identifies the job across an agent restart, so a recovery never writes its record twice. */
  key?: string;
  /** What the job guards found in verification, with their structured evidence. */
  guardFindings?: GuardFindingRecord[];
}

/** One job guard's verification finding, as journaled. */
export interface GuardFindingRecord {
  guard: string;
  problem: string;
  detail?: Record<string, unknown>;
}

/** A lifecycle event worth keeping beside the jobs (boot, recovery after a crash, drain...). */
export interface EventRecord extends RecordBase {
  type: 'event';
  /** ISO 8601. */
  at: string;
  event: 'boot' | 'recovery' | 'drain' | 'quarantine' | 'recycle' | 'stop' | (string & {});
  /** Small structured detail; never a secret. */
  detail?: Record<string, string | number | boolean | null>;
  /** What the job guards found (preflight verification), with their structured evidence. */
  guardFindings?: GuardFindingRecord[];
}

/**
 * Any journal record: a union on `type`. To add a kind, declare an interface extending RecordBase
 * with its own `type` literal and add it here and to RECORD_TYPES.
 */
export type JournalRecord = JobRecord | EventRecord;

/** The `type` values readers accept; lines of other types are skipped and reported. */
export const RECORD_TYPES: ReadonlySet<JournalRecord['type']> = new Set(['job', 'event']);

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** What callers pass to append(): a record without `v` and `seq`, which the journal assigns. */
export type NewJournalRecord = DistributiveOmit<JournalRecord, 'v' | 'seq'>;

/** A line readers could not use: where it is and why. */
export interface SkippedLine {
  file: string;
  /** 1-based line number within the file. */
  line: number;
  reason: 'torn' | 'invalid json' | 'not a record';
}

/** The result of reading the journal. */
export interface JournalRead<R extends JournalRecord = JournalRecord> {
  records: R[];
  skipped: SkippedLine[];
}

/** Options of Journal; defaults: 16 MiB files, 4 rotated files kept. */
export interface JournalOptions {
  dir: string;
  maxBytes?: number;
  /** Rotated files kept besides the live one; 0 keeps them all. */
  keep?: number;
}

/** The append-only, size-rotated job journal in one directory. */
export class Journal {
  readonly dir: string;
  readonly file: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private size = 0;
  private nextSeq = 1;
  private opened = false;
  /** Serialises appends so that two callers never rotate or number at once. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(opts: JournalOptions) {
    this.dir = opts.dir;
    this.file = path.join(opts.dir, JOURNAL_FILE);
    this.maxBytes = opts.maxBytes ?? JOURNAL_MAX_BYTES;
    this.keep = opts.keep === 0 ? 0 : Math.max(1, opts.keep ?? JOURNAL_KEEP);
  }

  /** Appends one record (stamping `v` and `seq`), fsynced before the promise resolves. */
  append(record: NewJournalRecord): Promise<JournalRecord> {
    const run = this.tail.then(() => this.appendNow(record));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async appendNow(input: NewJournalRecord): Promise<JournalRecord> {
    if (!this.opened) await this.open();
    const stamp = { v: JOURNAL_VERSION, seq: this.nextSeq };
    // v, type and seq first in the line for a person reading it; the stamp wins over the input.
    const record = Object.assign({ ...stamp, type: input.type }, input, stamp) as JournalRecord;
    const line = `${JSON.stringify(record)}\n`;
    const bytes = Buffer.byteLength(line);
    if (this.size > 0 && this.size + bytes > this.maxBytes) await this.rotate();
    try {
      await appendLineDurable(this.file, line);
    } catch (err) {
      // A short write (ENOSPC) may leave part of the line: open() again before the next append,
      // which terminates it so the retried record starts on a line of its own. Never truncated.
      this.opened = false;
      throw err;
    }
    this.size += bytes;
    this.nextSeq += 1;
    return record;
  }

  /** Finds the live file's size and the next seq; closes a torn last line left by a crash. */
  private async open(): Promise<void> {
    await ensureDir(this.dir);
    const live = await readLines(this.file);
    if (live !== undefined && live.text.length > 0 && !live.text.endsWith('\n')) {
      // Terminate the torn line so the next record starts on its own line; never truncate.
      await appendLineDurable(this.file, '');
    }
    await this.closeGaps();
    this.size = (await statSize(this.file)) ?? 0;
    const last = (await this.readLast(1)).records[0];
    this.nextSeq = (last?.seq ?? 0) + 1;
    this.opened = true;
  }

  /**
   * Renumbers rotated files to 1..k after a crash mid-rotation left a gap (e.g. .1 and .3), so the
   * gap does not cost a file of retention forever. Ascending order only ever renames a file onto
   * a free lower number, so this is as crash-safe as rotation itself.
   */
  private async closeGaps(): Promise<void> {
    const rotated = (await this.files()).filter((f) => f !== this.file).reverse();
    let changed = false;
    for (const [i, from] of rotated.entries()) {
      const to = `${this.file}.${i + 1}`;
      if (from !== to) {
        await fsp.rename(from, to);
        changed = true;
      }
    }
    if (changed) await fsyncDir(this.dir);
  }

  private async rotate(): Promise<void> {
    // Shift .1..top up by one; with a limit, .keep is overwritten (the retention), without, none is.
    const top = this.keep > 0 ? this.keep - 1 : (await this.files()).length - 1;
    for (let i = top; i >= 1; i--) {
      await renameIfExists(`${this.file}.${i}`, `${this.file}.${i + 1}`);
    }
    await fsp.rename(this.file, `${this.file}.1`);
    await fsyncDir(this.dir);
    this.size = 0;
  }

  /** The journal's files, oldest first (rotated by descending number, then the live file). */
  async files(): Promise<string[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const rotated = names
      .map((n) => ({ n, m: /^journal\.jsonl\.(\d+)$/.exec(n) }))
      .filter((x): x is { n: string; m: RegExpExecArray } => x.m !== null)
      .sort((a, b) => Number(b.m[1]) - Number(a.m[1]))
      .map((x) => path.join(this.dir, x.n));
    return names.includes(JOURNAL_FILE) ? [...rotated, this.file] : rotated;
  }

  /** Every record in every file, oldest first; unusable lines are skipped and listed. */
  async readAll(): Promise<JournalRead> {
    const out: JournalRead = { records: [], skipped: [] };
    for (const file of await this.files()) {
      const parsed = await readFileRecords(file);
      out.records.push(...parsed.records);
      out.skipped.push(...parsed.skipped);
    }
    return out;
  }

  /** The last `n` records of any type (oldest first), reading back only as many files as needed. */
  async readLast(n: number): Promise<JournalRead> {
    return this.readLastWhere(n, (_r): _r is JournalRecord => true);
  }

  /** The last `n` job records (oldest first). */
  async readLastJobs(n: number): Promise<JournalRead<JobRecord>> {
    return this.readLastWhere(n, (r): r is JobRecord => r.type === 'job');
  }

  private async readLastWhere<R extends JournalRecord>(n: number, keep: (r: JournalRecord) => r is R): Promise<JournalRead<R>> {
    const files = await this.files();
    const out: JournalRead<R> = { records: [], skipped: [] };
    for (let i = files.length - 1; i >= 0 && out.records.length < n; i--) {
      const parsed = await readFileRecords(files[i] as string);
      const wanted = parsed.records.filter(keep);
      out.records.unshift(...wanted.slice(Math.max(0, wanted.length - (n - out.records.length))));
      out.skipped.unshift(...parsed.skipped);
    }
    return out;
  }
}

async function readLines(file: string): Promise<{ text: string } | undefined> {
  try {
    return { text: await fsp.readFile(file, 'utf8') };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Parses one journal file. A file that vanished (rotated meanwhile) reads as empty. */
async function readFileRecords(file: string): Promise<JournalRead> {
  const out: JournalRead = { records: [], skipped: [] };
  const got = await readLines(file);
  if (!got || got.text === '') return out;
  const lines = got.text.split('\n');
  const endsClean = got.text.endsWith('\n');
  if (endsClean) lines.pop();
  lines.forEach((text, i) => {
    if (text === '') return;
    const last = i === lines.length - 1;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      // A line cut by a crash: unterminated at the end, or terminated later by open().
      out.skipped.push({ file, line: i + 1, reason: last && !endsClean ? 'torn' : 'invalid json' });
      return;
    }
    if (isRecord(value)) out.records.push(value);
    else out.skipped.push({ file, line: i + 1, reason: 'not a record' });
  });
  return out;
}

function isRecord(v: unknown): v is JournalRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Partial<JournalRecord>;
  return r.v === JOURNAL_VERSION && typeof r.seq === 'number' && typeof r.type === 'string' && RECORD_TYPES.has(r.type);
}

async function statSize(file: string): Promise<number | undefined> {
  try {
    return (await fsp.stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function renameIfExists(from: string, to: string): Promise<void> {
  try {
    await fsp.rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
