/**
 * `runner-warden journal [--json] [--all] [-n N]`: the last jobs from the journal in the state
 * directory, as a table for a person or as JSON for a script.
 */
import type { CliIO } from './io.js';
import { JOURNAL_DEFAULT_COUNT, JOURNAL_USAGE as USAGE } from './usage.js';
import { Journal, type JobRecord, type JournalRecord } from '../agent/journal.js';

/** Runs the command; returns the exit code (0 ok, 2 usage, 1 journal unreadable). */
export async function journalCommand(args: readonly string[], io: CliIO, deps: { stateDir: string }): Promise<number> {
  let json = false;
  let all = false;
  let count = JOURNAL_DEFAULT_COUNT;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const inline = /^(?:-n|--limit)=(.*)$/.exec(a);
    if (a === '--json') json = true;
    else if (a === '--all') all = true;
    else if (a === '-h' || a === '--help') {
      io.stdout.write(USAGE);
      return 0;
    } else if (a === '-n' || a === '--limit' || inline) {
      const v = inline ? inline[1] : args[++i];
      if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1) {
        io.stderr.write(`runner-warden journal: -n needs a positive number\n${USAGE}`);
        return 2;
      }
      count = Number(v);
    } else {
      io.stderr.write(`runner-warden journal: unknown argument ${JSON.stringify(a)}\n${USAGE}`);
      return 2;
    }
  }

  const journal = new Journal({ dir: deps.stateDir });
  let read;
  try {
    read = all ? await journal.readLast(count) : await journal.readLastJobs(count);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    io.stderr.write(`runner-warden journal: cannot read ${journal.file}: ${code}\n`);
    return 1;
  }
  for (const s of read.skipped) {
    io.stderr.write(`runner-warden journal: skipped ${s.reason} line ${s.file}:${s.line}\n`);
  }
  if (json) {
    io.stdout.write(`${JSON.stringify(read.records, null, 2)}\n`);
    return 0;
  }
  if (read.records.length === 0) {
    io.stdout.write(`no jobs recorded yet in ${journal.file}\n`);
    return 0;
  }
  io.stdout.write(formatTable(read.records));
  return 0;
}

const HEADERS = ['TIME', 'REPOSITORY', 'JOB', 'RESULT', 'CLEAN', 'REMOVED', 'DECISION', 'READY MS'];

/** Renders records as an aligned table, one line per record; events span the job columns. */
export function formatTable(records: readonly JournalRecord[]): string {
  const rows = records.map((r) => (r.type === 'job' ? jobRow(r) : eventRow(r)));
  const widths = HEADERS.map((h, c) => Math.max(h.length, ...rows.map((row) => (row[c] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    `${cells
      .map((cell, c) => cell.padEnd(widths[c] ?? 0))
      .join('  ')
      .trimEnd()}\n`;
  return [line(HEADERS), ...rows.map(line)].join('');
}

function jobRow(r: JobRecord): string[] {
  const removed = countRemoved(r);
  const ready = r.timeToReadyMs ?? r.cleanup.readyMs;
  return [
    shortTime(r.endedAt),
    cell(r.job.repository ?? '-', 40),
    cell([r.job.workflow, r.job.job].filter(Boolean).join(' / ') || '-', 40),
    cell(r.result, 12),
    r.cleanup.clean ? 'yes' : 'NO',
    String(removed),
    r.decision,
    Number.isFinite(ready) ? String(Math.round(ready)) : '-',
  ];
}

function eventRow(r: Extract<JournalRecord, { type: 'event' }>): string[] {
  const detail = r.detail
    ? Object.entries(r.detail)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(' ')
    : '';
  return [shortTime(r.at), cell(`(${r.event})`, 40), cell(detail, 40), '', '', '', '', ''];
}

/** Items removed across every step and kind of the job's cleanup. */
export function countRemoved(r: JobRecord): number {
  let n = 0;
  for (const step of r.cleanup.steps) for (const k of Object.values(step.removed)) n += k.count;
  return n;
}

/** `2026-01-01 12:00:00Z` from an ISO 8601 string; the input unchanged if it does not parse. */
function shortTime(iso: string | undefined): string {
  if (!iso) return '-';
  const t = Date.parse(iso);
  return Number.isNaN(t) ? cell(iso, 20) : `${new Date(t).toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/**
 * One table cell: control characters (a hostile job can name its workflow with a newline or an
 * escape sequence) become `?`, and long values are cut with an ellipsis.
 */
function cell(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

export { JOURNAL_DEFAULT_COUNT };
