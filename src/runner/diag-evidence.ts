/**
 * What the runner's own `_diag` trace says about a job, read after the fact: the evidence that a
 * listener ran a job while no agent watched it (the agent was killed while its listener idled, and
 * the orphaned listener took a job). Read by recovery before cleanup moves `_diag` to the trash.
 *
 * The runner writes `_diag/Runner_<yyyyMMdd-HHmmss>-utc.log` (listener) and `Worker_…-utc.log`
 * (one worker per job), lines `[YYYY-MM-DD HH:MM:SSZ LEVEL Component] message`
 * (docs/runner-contract.md §7). The lines used here:
 * - Runner: `WRITE LINE: <time>: Running job: <name>` and `WRITE LINE: <time>: Job <name> completed
 *   with result: <R>` (the console mirrored by Terminal), `Job request <n> for plan <p> job <id>
 *   received.` (JobDispatcher);
 * - Worker: `Job message:` followed by the job request message as indented JSON (camelCase, the
 *   `github` context as `{"t":2,"d":[{"k":…,"v":…}]}`), `Job ID <id>`, and `Job result after all
 *   job steps finish: <R>`.
 *
 * The directory belongs to the runner user, and the job it describes ran as that user: every file
 * is opened without following links, only regular files, each read up to a bound, and what comes
 * out is metadata for a record, never a reason to trust or clean anything less.
 */
import { promises as fsp } from 'node:fs';
import { FILE_READ_FLAGS, openDirUnder } from '../lib/nofollow.js';

/** Files of `_diag` read at most: a listener of one registration writes a few (a restart, an update). */
export const MAX_DIAG_FILES = 32;
/** Bytes read of each file: the lines used come early or are short; a job's step output can be huge. */
export const MAX_DIAG_FILE_BYTES = 4 * 1024 * 1024;
/** Longest value kept from the trace (a job's name, a repository): the journal stays small. */
const MAX_VALUE_CHARS = 256;

/** One job as the runner's trace shows it. */
export interface DiagJob {
  /** The job's id (JobDispatcher, Worker), when a line named it. */
  jobId?: string;
  /** The job's display name (`Running job: <name>`). */
  displayName?: string;
  /** When the listener printed `Running job` (ms since the epoch; the trace has whole seconds). */
  startedAt?: number;
  /** When the listener printed the job's result (ms since the epoch). */
  endedAt?: number;
  /** The job's result (`Succeeded`, `Failed`, `Canceled`...), when the trace reached it. */
  result?: string;
  /** GITHUB_* names as the job hooks give them, from the worker's job message. */
  vars: Record<string, string>;
  /** The `_diag` files that named this job. */
  files: string[];
}

const LINE = /^\[(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})Z (\S+) ?([^\]]*)\] (.*)$/;
const RUNNING = /^WRITE LINE: \S+ \S+: Running job: (.+)$/;
const COMPLETED = /^WRITE LINE: \S+ \S+: Job (.+) completed with result: (\S+)$/;
const REQUEST = /^Job request \d+ for plan \S+ job (\S+) received\.$/;
const WORKER_JOB_ID = /^Job ID (\S+)$/;
const WORKER_RESULT = /^Job result after all job steps finish: (\S+)$/;
const FILE_NAME = /^(Runner|Worker)_\d{8}-\d{6}-utc\.log$/;

/** The `github` context keys kept, under the names of the job hooks' variables. */
const CONTEXT_VARS: Record<string, string> = {
  repository: 'GITHUB_REPOSITORY',
  workflow: 'GITHUB_WORKFLOW',
  job: 'GITHUB_JOB',
  run_id: 'GITHUB_RUN_ID',
  run_number: 'GITHUB_RUN_NUMBER',
  run_attempt: 'GITHUB_RUN_ATTEMPT',
  sha: 'GITHUB_SHA',
  ref: 'GITHUB_REF',
  event_name: 'GITHUB_EVENT_NAME',
  actor: 'GITHUB_ACTOR',
};

/**
 * The jobs `<runnerRoot>/_diag` names, oldest first; none when the directory is absent (or is a
 * link). Jobs are joined across files by their id, else a worker's job joins the listener's job
 * that has no worker yet (one job at a time per listener).
 */
export async function readDiagJobs(runnerRoot: string): Promise<DiagJob[]> {
  const dir = await openDirUnder(runnerRoot, '_diag');
  if (!dir) return [];
  try {
    const names = (await dir.list()).filter((n) => FILE_NAME.test(n)).sort(byStamp);
    const runner: DiagJob[] = [];
    const worker: DiagJob[] = [];
    for (const name of names.slice(-MAX_DIAG_FILES)) {
      const text = await readBounded(dir.at(name));
      if (text === undefined) continue;
      if (name.startsWith('Runner_')) runner.push(...parseRunnerTrace(text, name));
      else {
        const j = parseWorkerTrace(text, name);
        if (j) worker.push(j);
      }
    }
    return joinJobs(runner, worker);
  } finally {
    await dir.close();
  }
}

/** Orders `Runner_20240501-100000-utc.log` by its stamp, then by kind. */
function byStamp(a: string, b: string): number {
  const sa = a.slice(a.indexOf('_') + 1);
  const sb = b.slice(b.indexOf('_') + 1);
  return sa < sb ? -1 : sa > sb ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

/** The file's first MAX_DIAG_FILE_BYTES as text; undefined unless it is a regular file. */
async function readBounded(p: Buffer): Promise<string | undefined> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(p, FILE_READ_FLAGS);
  } catch {
    return undefined;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return undefined;
    const buf = Buffer.alloc(Math.min(st.size, MAX_DIAG_FILE_BYTES));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch {
    return undefined;
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** A trace line's time in ms, or undefined. */
function lineTime(date: string, time: string): number | undefined {
  const ms = Date.parse(`${date}T${time}Z`);
  return Number.isFinite(ms) ? ms : undefined;
}

function clip(s: string): string {
  return s.length > MAX_VALUE_CHARS ? s.slice(0, MAX_VALUE_CHARS) : s;
}

/** The jobs one listener trace names, in order. */
export function parseRunnerTrace(text: string, file: string): DiagJob[] {
  const jobs: DiagJob[] = [];
  let current: DiagJob | undefined;
  let requested: string | undefined;
  for (const raw of text.split('\n')) {
    const m = LINE.exec(raw.replace(/\r$/, ''));
    if (!m) continue;
    const at = lineTime(m[1] as string, m[2] as string);
    const msg = m[5] as string;
    const req = REQUEST.exec(msg);
    if (req) {
      requested = clip(req[1] as string);
      // The real listener logs the request before `Running job`, the simulator after it.
      if (current && current.jobId === undefined && current.result === undefined) {
        current.jobId = requested;
        requested = undefined;
      }
      continue;
    }
    const run = RUNNING.exec(msg);
    if (run) {
      current = { displayName: clip(run[1] as string), vars: {}, files: [file] };
      if (at !== undefined) current.startedAt = at;
      if (requested !== undefined) current.jobId = requested;
      requested = undefined;
      jobs.push(current);
      continue;
    }
    const done = COMPLETED.exec(msg);
    if (done) {
      let job = current && current.result === undefined ? current : undefined;
      if (!job) {
        job = { displayName: clip(done[1] as string), vars: {}, files: [file] };
        jobs.push(job);
      }
      job.result = clip(done[2] as string);
      if (at !== undefined) job.endedAt = at;
    }
  }
  return jobs;
}

/** The job one worker trace names, if any. */
export function parseWorkerTrace(text: string, file: string): DiagJob | undefined {
  const job: DiagJob = { vars: {}, files: [file] };
  let named = false;
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  for (let i = 0; i < lines.length; i++) {
    const m = LINE.exec(lines[i] as string);
    if (!m) continue;
    const msg = m[5] as string;
    if (msg === 'Job message:') {
      // The JSON follows on the next lines, up to the next trace line.
      let end = i + 1;
      while (end < lines.length && !LINE.test(lines[end] as string)) end++;
      const parsed = jobMessage(lines.slice(i + 1, end).join('\n'));
      if (parsed) {
        named = true;
        if (parsed.jobId) job.jobId = parsed.jobId;
        if (parsed.displayName) job.displayName = parsed.displayName;
        Object.assign(job.vars, parsed.vars);
      }
      i = end - 1;
      continue;
    }
    const id = WORKER_JOB_ID.exec(msg);
    if (id) {
      named = true;
      job.jobId ??= clip(id[1] as string);
      continue;
    }
    const r = WORKER_RESULT.exec(msg);
    if (r) job.result = clip(r[1] as string);
  }
  return named ? job : undefined;
}

/** The fields used of the worker's job message; undefined when it is not that JSON. */
function jobMessage(json: string): { jobId?: string; displayName?: string; vars: Record<string, string> } | undefined {
  let m: unknown;
  try {
    m = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!isObject(m)) return undefined;
  const out: { jobId?: string; displayName?: string; vars: Record<string, string> } = { vars: {} };
  if (typeof m.jobId === 'string') out.jobId = clip(m.jobId);
  if (typeof m.jobDisplayName === 'string') out.displayName = clip(m.jobDisplayName);
  const ctx = isObject(m.contextData) ? m.contextData.github : undefined;
  if (isObject(ctx) && Array.isArray(ctx.d)) {
    for (const pair of ctx.d as unknown[]) {
      if (!isObject(pair) || typeof pair.k !== 'string') continue;
      const name = CONTEXT_VARS[pair.k];
      const v = pair.v;
      if (name && (typeof v === 'string' || typeof v === 'number')) out.vars[name] = clip(String(v));
    }
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Joins the worker traces into the listener's jobs (by id, else the first job without a worker). */
function joinJobs(runner: DiagJob[], worker: DiagJob[]): DiagJob[] {
  const jobs = runner.map((j) => ({ ...j, vars: { ...j.vars }, files: [...j.files] }));
  const joined = new Set<DiagJob>();
  for (const w of worker) {
    const byId = w.jobId !== undefined ? jobs.find((j) => j.jobId === w.jobId) : undefined;
    const target = byId ?? jobs.find((j) => !joined.has(j) && (j.jobId === undefined || w.jobId === undefined));
    if (!target) {
      // A worker whose listener trace is gone (a truncated or removed file): still a job.
      jobs.push({ ...w, vars: { ...w.vars }, files: [...w.files] });
      continue;
    }
    joined.add(target);
    target.files.push(...w.files);
    Object.assign(target.vars, w.vars);
    target.jobId ??= w.jobId;
    target.displayName ??= w.displayName;
    target.result ??= w.result;
  }
  return jobs;
}
