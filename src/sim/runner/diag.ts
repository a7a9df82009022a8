/**
 * The simulated runner's `_diag` trace and its console (docs/runner-contract.md §3, §7):
 * - trace lines `[YYYY-MM-DD HH:MM:SSZ INFO|WARN|ERR |VERB Component] message`, in
 *   `_diag/<Prefix>_YYYYMMDD-HHMMSS-utc.log`;
 * - console lines mirrored into the trace as `[... INFO Terminal] WRITE LINE: <text>` (errors as
 *   `WRITE ERROR:`); `√` success lines go to stdout only;
 * - `ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT=1` mirrors every trace line to stdout too;
 * - the worker's `Job message:` event carries the job request message as JSON (traceJobMessage):
 *   a restarted agent reads it to account for a job no agent watched.
 * Writes are synchronous so that the order on disk is the order of events, also when the process
 * exits right after.
 */
import { appendFileSync, mkdirSync, openSync, closeSync } from 'node:fs';
import path from 'node:path';
import type { BrokerJob } from '../protocol.js';

/** `2024-05-01 10:00:00Z`: .NET's `u` format, UTC. */
export function formatU(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d{3}Z$/, 'Z');
}

/** `20240501-100000`: the stamp in `_diag` file names, UTC. */
export function fileStamp(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

/** The trace levels the runner writes, padded to four characters as on disk. */
export type TraceLevel = 'INFO' | 'WARN' | 'ERR ' | 'VERB';

/** Options of a trace; defaults: no stdout mirror, no secrets. */
export interface TraceOptions {
  /** Also write every trace line to stdout (ACTIONS_RUNNER_PRINT_LOG_TO_STDOUT). */
  mirrorToStdout?: boolean;
  now?: () => number;
}

/** One `_diag` log file. A trace whose file cannot be created drops its lines (the console still works). */
export class Trace {
  readonly file: string | undefined;
  private readonly secrets: string[] = [];
  private readonly mirror: boolean;
  private readonly now: () => number;

  constructor(diagDir: string | undefined, prefix: 'Runner' | 'Worker', opts: TraceOptions = {}) {
    this.mirror = opts.mirrorToStdout ?? false;
    this.now = opts.now ?? Date.now;
    let file: string | undefined;
    if (diagDir !== undefined) {
      try {
        mkdirSync(diagDir, { recursive: true, mode: 0o755 });
        file = path.join(diagDir, `${prefix}_${fileStamp(this.now())}-utc.log`);
        closeSync(openSync(file, 'a', 0o644));
      } catch {
        file = undefined;
      }
    }
    this.file = file;
  }

  /** Values replaced by `***` in every later line (the runner's secret masker). */
  addSecret(value: string): void {
    if (value.length > 0 && !this.secrets.includes(value)) this.secrets.push(value);
  }

  /** Masks the registered secrets in a text. */
  mask(text: string): string {
    let out = text;
    for (const s of this.secrets) out = out.split(s).join('***');
    return out;
  }

  info(component: string, message: string): void {
    this.write('INFO', component, message);
  }

  warn(component: string, message: string): void {
    this.write('WARN', component, message);
  }

  error(component: string, message: string): void {
    this.write('ERR ', component, message);
  }

  /** One event whose first line has the prefix and whose `body` lines follow bare (a multi-line .NET trace message). */
  writeBlock(level: TraceLevel, component: string, first: string, body: string): void {
    this.append(`[${formatU(this.now())} ${level} ${component}] ${this.mask(first)}\n${this.mask(body)}`);
  }

  /** Appends one line per line of `message`, each with its own prefix. */
  write(level: TraceLevel, component: string, message: string): void {
    const prefix = `[${formatU(this.now())} ${level} ${component}] `;
    const text = this.mask(message)
      .split(/\r?\n/)
      .map((l) => prefix + l)
      .join('\n');
    this.append(text);
  }

  private append(text: string): void {
    if (this.file !== undefined) {
      try {
        appendFileSync(this.file, `${text}\n`);
      } catch {
        // a full disk or a removed _diag must not take the runner down
      }
    }
    if (this.mirror) process.stdout.write(`${text}\n`);
  }
}

/** The console: stdout/stderr plus the `WRITE LINE:` mirror in the trace. */
export class Terminal {
  constructor(private readonly trace: Trace) {}

  /** A console line (also in the trace as `WRITE LINE:`). */
  writeLine(text = ''): void {
    const masked = this.trace.mask(text);
    for (const line of masked.split('\n')) this.trace.info('Terminal', `WRITE LINE: ${line}`);
    process.stdout.write(`${masked}\n`);
  }

  /** An error line on stderr (also in the trace as `WRITE ERROR:`). */
  writeError(text: string): void {
    const masked = this.trace.mask(text);
    for (const line of masked.split('\n')) this.trace.error('Terminal', `WRITE ERROR: ${line}`);
    process.stderr.write(`${masked}\n`);
  }

  /** `√ <text>` on stdout only, never in the trace. */
  writeSuccess(text: string): void {
    process.stdout.write(`√ ${this.trace.mask(text)}\n`);
  }

  /** `# <title>` section header with blank lines around it, as in config output. */
  writeSection(title: string): void {
    this.writeLine();
    this.writeLine(`# ${title}`);
    this.writeLine();
  }
}

/** The `github` context of a job as the job request message carries it (a DictionaryContextData). */
function githubContext(job: BrokerJob): { t: 2; d: { k: string; v: string }[] } {
  const pairs: [string, string][] = [
    ['repository', job.repository],
    ['workflow', job.workflow],
    ['job', job.displayName],
    ['run_id', job.runId],
    ['run_number', job.runNumber],
    ['run_attempt', job.runAttempt],
    ['sha', job.sha],
    ['ref', job.ref],
    ['event_name', job.eventName],
    ['actor', job.actor],
  ];
  return { t: 2, d: pairs.map(([k, v]) => ({ k, v: String(v) })) };
}

/**
 * The worker's `Job message:` trace event (Worker.cs): one header line, then the job request
 * message as indented camelCase JSON on the following lines without a prefix, as .NET's trace
 * listener writes a multi-line message. Only the fields the simulator has are written.
 */
export function traceJobMessage(trace: Trace, job: BrokerJob): void {
  const message = {
    messageType: 'PipelineAgentJobRequest',
    plan: { planId: job.planId },
    jobId: job.jobId,
    jobDisplayName: job.displayName,
    jobName: '__default',
    requestId: job.requestId,
    contextData: { github: githubContext(job) },
  };
  trace.writeBlock('INFO', 'Worker', 'Job message:', ` ${JSON.stringify(message, null, 2)}`);
}
