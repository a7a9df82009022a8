/** The journal as the agent writes it: nothing is lost when the state filesystem refuses writes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger, type Logger } from '../../../src/lib/log.js';
import { BufferedJournal } from '../../../src/agent/journal-buffer.js';
import type { NewJournalRecord } from '../../../src/agent/journal.js';
import type { JournalPort } from '../../../src/agent/records.js';

function sinkLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { log, lines };
}

function flakyDisk(failures: number): JournalPort & { written: NewJournalRecord[] } {
  let left = failures;
  const written: NewJournalRecord[] = [];
  return {
    written,
    append: (r: NewJournalRecord) => {
      if (left-- > 0) return Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
      written.push(r);
      return Promise.resolve();
    },
  };
}

const event = (n: number): NewJournalRecord => ({ type: 'event', event: 'boot', at: new Date(n).toISOString(), detail: { n } });

test('at exit, records a full disk refused are written once the disk takes writes again, in order', async () => {
  const disk = flakyDisk(3);
  const { log } = sinkLogger();
  const j = new BufferedJournal(disk, log);
  await j.append(event(1));
  await j.append(event(2));
  assert.equal(j.backlog, 2, 'a refused append must stay in memory');
  const slept: number[] = [];
  await j.close(async (ms) => void slept.push(ms));
  assert.equal(j.backlog, 0);
  assert.deepEqual(
    disk.written.map((r) => (r.type === 'event' ? r.detail?.n : undefined)),
    [1, 2],
  );
  assert.ok(slept.length >= 1, 'close must wait between rounds instead of giving up at once');
});

test('at exit, records that can never be written are logged whole instead of vanishing with the process', async () => {
  const disk = flakyDisk(Number.POSITIVE_INFINITY);
  const { log, lines } = sinkLogger();
  const j = new BufferedJournal(disk, log);
  await j.append(event(7));
  await j.close(() => Promise.resolve(), 3);
  const kept = lines.filter((l) => l.msg === 'journal record not written; kept here');
  assert.equal(kept.length, 1, 'the unwritten record must reach the service log');
  assert.deepEqual((kept[0]?.record as { detail: unknown }).detail, { n: 7 });
  assert.equal(j.backlog, 0);
});
