/**
 * The journal as the agent writes it: an append that fails (ENOSPC on the state filesystem, EIO)
 * never throws into the lifecycle and never loses the record. Failed records wait in memory, in
 * order, and are written before any newer one once the disk takes writes again; `problem` tells
 * the loop that records are waiting, so it stops taking jobs until they are safe.
 */
import type { Logger } from '../lib/log.js';
import { describeError } from '../lib/errors.js';
import type { NewJournalRecord } from './journal.js';
import type { JournalPort } from './records.js';

/**
 * Records kept in memory while the journal cannot be written. A job adds two or three; a thousand
 * covers hours of a host that cannot write, at a few MiB. Past it, lifecycle events are dropped
 * (counted, and reported in the first record written) before any job record is.
 */
export const MAX_PENDING_RECORDS = 1_000;

/** Rounds of writing at exit: with {@link CLOSE_RETRY_MS}, up to 20 s for a filling disk to free up. */
export const CLOSE_ATTEMPTS = 20;
/** Pause between the exit's write rounds. */
export const CLOSE_RETRY_MS = 1_000;

/** A JournalPort that keeps what it could not write. */
export class BufferedJournal implements JournalPort {
  private readonly pending: NewJournalRecord[] = [];
  private droppedEvents = 0;
  private failure: string | undefined;
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly inner: JournalPort,
    private readonly log: Logger,
    private readonly maxPending = MAX_PENDING_RECORDS,
  ) {}

  /** Why the last write failed, while records are waiting; undefined when all are written. */
  get problem(): string | undefined {
    return this.pending.length > 0 ? (this.failure ?? 'journal records waiting') : undefined;
  }

  /** Records waiting in memory. */
  get backlog(): number {
    return this.pending.length;
  }

  /** Queues `record` and writes everything waiting, in order; never rejects. */
  append(record: NewJournalRecord): Promise<void> {
    this.pending.push(record);
    this.bound();
    return this.flush();
  }

  /** Writes what is waiting (called again at job boundaries); never rejects. */
  flush(): Promise<void> {
    const run = this.tail.then(() => this.writePending());
    this.tail = run;
    return run;
  }

  /**
   * At exit: keeps trying to write what is waiting (`attempts` rounds, `sleep` between them, since
   * the disk may be freed by the trash's deletion or an operator), then logs every record still
   * unwritten whole, at error level, so the service's log keeps what the journal could not.
   */
  async close(sleep: (ms: number) => Promise<void>, attempts = CLOSE_ATTEMPTS): Promise<void> {
    for (let i = 0; i < attempts && this.pending.length > 0; i++) {
      await this.flush();
      if (this.pending.length > 0) await sleep(CLOSE_RETRY_MS).catch(() => undefined);
    }
    for (const record of this.pending.splice(0)) this.log.error({ record, reason: this.failure }, 'journal record not written; kept here');
  }

  /** The last job records, the ones still in memory included (recovery's duplicate check). */
  async readLastJobs(n: number): Promise<{ records: { key?: string }[] }> {
    const written = this.inner.readLastJobs ? (await this.inner.readLastJobs(n).catch(() => ({ records: [] }))).records : [];
    const waiting = this.pending.filter((r) => r.type === 'job') as { key?: string }[];
    return { records: [...written, ...waiting] };
  }

  private async writePending(): Promise<void> {
    while (this.pending.length > 0) {
      const next = this.pending[0] as NewJournalRecord;
      const record: NewJournalRecord =
        this.droppedEvents > 0 && next.type === 'event'
          ? { ...next, detail: { ...next.detail, journalEventsDropped: this.droppedEvents } }
          : next;
      try {
        await this.inner.append(record);
      } catch (err) {
        if (this.failure === undefined)
          this.log.error({ err: describeError(err), waiting: this.pending.length }, 'journal append failed; keeping the record in memory');
        this.failure = describeError(err);
        return;
      }
      if (record !== next) this.droppedEvents = 0;
      this.pending.shift();
    }
    if (this.failure !== undefined) this.log.info({}, 'journal writes work again; every waiting record written');
    this.failure = undefined;
  }

  private bound(): void {
    while (this.pending.length > this.maxPending) {
      const i = this.pending.findIndex((r) => r.type === 'event');
      if (i < 0) return;
      this.pending.splice(i, 1);
      this.droppedEvents += 1;
    }
  }
}
