import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm, readdir, stat, appendFile, rename, readFile } from 'node:fs/promises';
import { Journal, JOURNAL_FILE, type JobRecord, type NewJournalRecord } from '../../../src/agent/journal.js';
import { journalCommand } from '../../../src/cli/journal.js';
import { captureIo } from '../../helpers/io.js';

type NewJob = Extract<NewJournalRecord, { type: 'job' }>;

function job(i: number, over: Partial<NewJob> = {}): NewJob {
  return {
    type: 'job',
    runnerName: `rw-host-1-${String(i).padStart(4, '0')}`,
    runnerId: 1000 + i,
    job: { repository: 'octo/app', workflow: 'ci', job: 'build', runId: String(5000 + i) },
    startedAt: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(),
    endedAt: new Date(Date.UTC(2026, 0, 1, 0, i, 30)).toISOString(),
    listenerExitCode: 0,
    listenerSignal: null,
    result: 'succeeded',
    source: 'hook',
    cleanup: {
      steps: [
        { name: 'processes', outcome: 'ok', durationMs: 12, removed: { process: { count: 2, bytes: 0 } } },
        { name: 'workdir', outcome: 'ok', durationMs: 300, removed: { file: { count: 100 + i, bytes: 1 << 20 } } },
      ],
      verify: { clean: true, durationMs: 40, problems: [] },
      clean: true,
      readyMs: 400,
    },
    decision: 'reuse',
    decisionReason: 'clean and under max jobs',
    timeToReadyMs: 2500,
    ...over,
  };
}

const io = captureIo;

describe('journal', () => {
  let dir: string;
  beforeEach(async () => {
    dir = path.join(await mkdtemp(path.join(os.tmpdir(), 'rw-journal-')), 'state');
  });
  afterEach(async () => {
    await rm(path.dirname(dir), { recursive: true, force: true });
  });

  test('append stamps version and seq, fsyncs into a root-only file, and reads back in order', async () => {
    const j = new Journal({ dir });
    const a = await j.append(job(1));
    const b = await j.append({ type: 'event', at: '2026-01-01T00:00:00Z', event: 'boot', detail: { version: '0.1.0' } });
    assert.equal(a.v, 1);
    assert.deepEqual([a.seq, b.seq], [1, 2]);
    const { records, skipped } = await j.readAll();
    assert.deepEqual(records, [a, b]);
    assert.deepEqual(skipped, []);
    assert.equal((await stat(j.file)).mode & 0o777, 0o600, 'journal must not be readable by the runner user');
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    const first = (await readFile(j.file, 'utf8')).split('\n')[0] ?? '';
    assert.match(first, /^\{"v":1,"seq":1,"type":"job",/, 'v, seq and type should lead each line');
  });

  test('rotation keeps every one of 1,000 records, in order, across many files', async () => {
    const j = new Journal({ dir, maxBytes: 16 * 1024, keep: 1000 });
    for (let i = 1; i <= 1000; i++) await j.append(job(i));
    const files = await j.files();
    assert.ok(files.length > 10, `expected many rotated files, got ${files.length}`);
    for (const f of files) {
      assert.ok((await stat(f)).size <= 16 * 1024, `${path.basename(f)} grew past maxBytes`);
    }
    const { records, skipped } = await j.readAll();
    assert.deepEqual(skipped, []);
    assert.deepEqual(
      records.map((r) => r.seq),
      Array.from({ length: 1000 }, (_, i) => i + 1),
      'records lost or out of order',
    );
    assert.equal((records[999] as JobRecord).runnerName, 'rw-host-1-1000');
  });

  test('keep 0 never drops a rotated file (journal.keep: 0 in the host config)', async () => {
    const j = new Journal({ dir, maxBytes: 4 * 1024, keep: 0 });
    for (let i = 1; i <= 200; i++) await j.append(job(i));
    const files = await j.files();
    assert.ok(files.length > 20, `expected many rotated files, got ${files.length}`);
    assert.deepEqual(
      (await j.readAll()).records.map((r) => r.seq),
      Array.from({ length: 200 }, (_, i) => i + 1),
      'a record was dropped',
    );
  });

  test('rotation drops only files beyond keep, oldest first', async () => {
    const j = new Journal({ dir, maxBytes: 4 * 1024, keep: 2 });
    for (let i = 1; i <= 60; i++) await j.append(job(i));
    const names = (await readdir(dir)).sort();
    assert.deepEqual(names, [JOURNAL_FILE, `${JOURNAL_FILE}.1`, `${JOURNAL_FILE}.2`]);
    const seqs = (await j.readAll()).records.map((r) => r.seq);
    assert.equal(seqs.at(-1), 60);
    assert.deepEqual(
      seqs,
      Array.from({ length: seqs.length }, (_, i) => 61 - seqs.length + i),
      'kept records should be the newest, contiguous',
    );
  });

  test('an agent killed mid-rotation loses no record and keeps numbering after restart', async () => {
    const j = new Journal({ dir, maxBytes: 4 * 1024, keep: 20 });
    for (let i = 1; i <= 40; i++) await j.append(job(i));
    assert.ok((await j.files()).length >= 4, 'the scenario needs at least three rotated files');
    const before = (await j.readAll()).records.length;
    // A crash after shifting .2 → .3 but before .1 → .2 and live → .1: a gap in the numbering.
    const f = (n: number): string => path.join(dir, `${JOURNAL_FILE}.${n}`);
    for (let n = 9; n >= 2; n--) {
      await rename(f(n), f(n + 1)).catch(() => undefined);
    }
    const gapped = (await readdir(dir)).sort();
    assert.ok(!gapped.includes(`${JOURNAL_FILE}.2`), `the simulated crash should leave a gap: ${gapped.join(' ')}`);
    const restarted = new Journal({ dir, maxBytes: 4 * 1024, keep: 20 });
    assert.equal((await restarted.readAll()).records.length, before, 'records lost while files are mid-rotation');
    for (let i = 41; i <= 80; i++) await restarted.append(job(i));
    const names = (await readdir(dir)).filter((n) => n !== JOURNAL_FILE);
    const numbers = names.map((n) => Number(n.split('.').pop())).sort((a, b) => a - b);
    assert.deepEqual(
      numbers,
      Array.from({ length: numbers.length }, (_, i) => i + 1),
      'restart should close the gap',
    );
    assert.ok(numbers.length <= 20, 'keep is still honoured');
    const { records, skipped } = await restarted.readAll();
    assert.deepEqual(skipped, []);
    assert.deepEqual(
      records.map((r) => r.seq),
      Array.from({ length: 80 }, (_, i) => i + 1),
    );
  });

  test('a torn last line from a crash is skipped, reported, and does not glue onto the next record', async () => {
    const j = new Journal({ dir });
    for (let i = 1; i <= 3; i++) await j.append(job(i));
    const torn = JSON.stringify({ v: 1, seq: 4, type: 'job', runnerName: 'rw-torn' }).slice(0, 30);
    await appendFile(j.file, torn);
    let read = await new Journal({ dir }).readAll();
    assert.deepEqual(
      read.records.map((r) => r.seq),
      [1, 2, 3],
    );
    assert.deepEqual(read.skipped, [{ file: j.file, line: 4, reason: 'torn' }]);

    const restarted = new Journal({ dir });
    const next = await restarted.append(job(4));
    assert.equal(next.seq, 4, 'seq continues after the last intact record');
    read = await restarted.readAll();
    assert.deepEqual(
      read.records.map((r) => r.seq),
      [1, 2, 3, 4],
      'the record after the torn line must be intact',
    );
    assert.deepEqual(read.skipped, [{ file: j.file, line: 4, reason: 'invalid json' }]);
  });

  test('concurrent appends get distinct seqs and whole lines', async () => {
    const j = new Journal({ dir, maxBytes: 8 * 1024 });
    const got = await Promise.all(Array.from({ length: 50 }, (_, i) => j.append(job(i))));
    assert.deepEqual(
      got.map((r) => r.seq).sort((a, b) => a - b),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    const { records, skipped } = await j.readAll();
    assert.equal(records.length, 50);
    assert.deepEqual(skipped, []);
  });

  test('readLast and readLastJobs read back only as far as needed', async () => {
    const j = new Journal({ dir, maxBytes: 4 * 1024, keep: 50 });
    for (let i = 1; i <= 30; i++) {
      await j.append(job(i));
      if (i % 10 === 0) await j.append({ type: 'event', at: '2026-01-01T00:00:00Z', event: 'drain' });
    }
    const last5 = await j.readLast(5);
    assert.deepEqual(
      last5.records.map((r) => r.type),
      ['job', 'job', 'job', 'job', 'event'],
    );
    const jobs = await j.readLastJobs(25);
    assert.equal(jobs.records.length, 25);
    assert.deepEqual(
      jobs.records.map((r) => r.runnerId),
      Array.from({ length: 25 }, (_, i) => 1006 + i),
    );
    assert.deepEqual((await j.readLast(1000)).records.length, 33);
    assert.deepEqual((await new Journal({ dir: path.join(dir, 'none') }).readAll()).records, []);
  });

  test('lines that are not records (other version, unknown type) are skipped and reported', async () => {
    const j = new Journal({ dir });
    await j.append(job(1));
    await appendFile(j.file, '{"v":2,"seq":9,"type":"job"}\n{"v":1,"seq":10,"type":"future"}\n[1,2]\n');
    await j.append(job(2));
    const { records, skipped } = await new Journal({ dir }).readAll();
    assert.deepEqual(
      records.map((r) => r.seq),
      [1, 2],
    );
    assert.deepEqual(
      skipped.map((s) => [s.line, s.reason]),
      [
        [2, 'not a record'],
        [3, 'not a record'],
        [4, 'not a record'],
      ],
    );
  });

  describe('runner-warden journal', () => {
    test('prints the last jobs as a table with time, repo, job, result, cleanup, decision and ready ms', async () => {
      const j = new Journal({ dir });
      await j.append(job(1));
      await j.append(
        job(2, {
          result: 'failed',
          decision: 'recycle',
          cleanup: { steps: [], verify: { clean: false, durationMs: 1, problems: ['x'] }, clean: false, readyMs: 900 },
          timeToReadyMs: undefined,
        }),
      );
      const c = io();
      assert.equal(await journalCommand([], c.io, { stateDir: dir }), 0);
      const lines = c.out().trimEnd().split('\n');
      assert.match(lines[0] ?? '', /^TIME\s+REPOSITORY\s+JOB\s+RESULT\s+CLEAN\s+REMOVED\s+DECISION\s+READY MS$/);
      assert.match(lines[1] ?? '', /^2026-01-01 00:01:30Z\s+octo\/app\s+ci \/ build\s+succeeded\s+yes\s+103\s+reuse\s+2500$/);
      assert.match(lines[2] ?? '', /^2026-01-01 00:02:30Z\s+octo\/app\s+ci \/ build\s+failed\s+NO\s+0\s+recycle\s+900$/);
      assert.equal(c.err(), '');
    });

    test('--json prints the records, -n limits them, --all adds events', async () => {
      const j = new Journal({ dir });
      for (let i = 1; i <= 5; i++) await j.append(job(i));
      await j.append({ type: 'event', at: '2026-01-02T00:00:00Z', event: 'drain', detail: { reason: 'spot' } });
      let c = io();
      assert.equal(await journalCommand(['--json', '-n', '2'], c.io, { stateDir: dir }), 0);
      const got = JSON.parse(c.out()) as JobRecord[];
      assert.deepEqual(
        got.map((r) => r.seq),
        [4, 5],
      );
      c = io();
      assert.equal(await journalCommand(['--all', '-n=2'], c.io, { stateDir: dir }), 0);
      assert.match(c.out(), /\(drain\)\s+reason=spot/);
    });

    test('hostile job names cannot put control characters on the terminal', async () => {
      const j = new Journal({ dir });
      await j.append(job(1, { job: { repository: 'octo/app\u001b[2J', workflow: 'ci\nfake row', job: 'b' } }));
      const c = io();
      await journalCommand([], c.io, { stateDir: dir });
      assert.ok(!c.out().includes('\u001b'), 'escape sequence reached the terminal');
      assert.equal(c.out().trimEnd().split('\n').length, 2, 'a newline in a name must not add a row');
    });

    test('an empty journal, torn lines and bad arguments are reported plainly', async () => {
      let c = io();
      assert.equal(await journalCommand([], c.io, { stateDir: dir }), 0);
      assert.match(c.out(), /no jobs recorded yet/);
      const j = new Journal({ dir });
      await j.append(job(1));
      await appendFile(j.file, '{"v":1,"seq":2,');
      c = io();
      assert.equal(await journalCommand([], c.io, { stateDir: dir }), 0);
      assert.match(c.err(), /skipped torn line .*journal\.jsonl:2/);
      for (const bad of [['-n'], ['-n', '0'], ['-n', 'x'], ['--bogus']]) {
        c = io();
        assert.equal(await journalCommand(bad, c.io, { stateDir: dir }), 2, `args ${bad.join(' ')}`);
        assert.match(c.err(), /usage: runner-warden journal/);
      }
    });
  });
});
