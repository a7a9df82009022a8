/**
 * `runner-warden status [--json] [--url URL]`: reads a running agent's /status and prints it for a
 * person: state and since when, runner, current job, last job with its cleanup counts, policy
 * (with the last reload error), disk.
 */
import type { StatusSnapshot } from '../health/snapshot.js';
import { readTokenFile } from '../health/token.js';
import { describeError } from '../lib/errors.js';
import { systemClock, type Clock } from '../lib/clock.js';
import type { CliIO } from './io.js';
import { STATUS_USAGE as USAGE } from './usage.js';

/**
 * How long to wait for the agent's answer. The endpoint only reads a snapshot and answers in
 * about a millisecond; 5 s covers a host under heavy load and still fails fast when the agent is
 * wedged or the address is wrong.
 */
export const STATUS_TIMEOUT_MS = 5_000;

/** Largest /status body accepted; a real one is a few KiB. */
export const STATUS_MAX_BYTES = 1024 * 1024;

/** Dependencies of statusCommand; defaults: system clock, global fetch. */
export interface StatusDeps {
  /** Base URL of the health server, e.g. `http://127.0.0.1:9469`. */
  url: string;
  tokenFile?: string;
  clock?: Clock;
}

/** Runs the command; returns 0 when the agent answered, 1 when it could not be read, 2 on usage errors. */
export async function statusCommand(args: readonly string[], io: CliIO, deps: StatusDeps): Promise<number> {
  let json = false;
  let base = deps.url;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--json') json = true;
    else if (a === '--url') {
      const v = args[++i];
      if (v === undefined) {
        io.stderr.write(`runner-warden status: --url needs a value\n${USAGE}`);
        return 2;
      }
      base = v;
    } else if (a.startsWith('--url=')) base = a.slice('--url='.length);
    else if (a === '-h' || a === '--help') {
      io.stdout.write(USAGE);
      return 0;
    } else {
      io.stderr.write(`runner-warden status: unknown argument ${JSON.stringify(a)}\n${USAGE}`);
      return 2;
    }
  }

  let url: URL;
  try {
    url = new URL('/status', base.includes('://') ? base : `http://${base}`);
  } catch {
    io.stderr.write(`runner-warden status: not a URL: ${JSON.stringify(base)}\n`);
    return 2;
  }
  const headers: Record<string, string> = { accept: 'application/json' };
  if (deps.tokenFile !== undefined) {
    try {
      headers.authorization = `Bearer ${await readTokenFile(deps.tokenFile)}`;
    } catch (err) {
      io.stderr.write(`runner-warden status: ${describeError(err)}\n`);
      return 1;
    }
  }

  let body: string;
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
    body = await res.text();
    if (!res.ok) {
      const hint = res.status === 401 ? ' (wrong or missing token: see health.tokenFile)' : '';
      io.stderr.write(`runner-warden status: ${url.href} answered ${res.status}${hint}\n`);
      return 1;
    }
    if (body.length > STATUS_MAX_BYTES) throw new Error(`body larger than ${STATUS_MAX_BYTES} bytes`);
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    io.stderr.write(`runner-warden status: cannot read ${url.href}: ${cause ?? describeError(err)} (is the agent running?)\n`);
    return 1;
  }

  let snap: StatusSnapshot;
  try {
    snap = JSON.parse(body) as StatusSnapshot;
    if (typeof snap !== 'object' || snap === null || typeof snap.state !== 'string') throw new Error('no state');
  } catch {
    io.stderr.write(`runner-warden status: ${url.href} did not return a status document\n`);
    return 1;
  }
  io.stdout.write(json ? `${JSON.stringify(snap, null, 2)}\n` : formatStatus(snap, (deps.clock ?? systemClock).now()));
  return 0;
}

/** Renders a snapshot for a person; `now` (epoch ms) makes the relative times. */
export function formatStatus(s: StatusSnapshot, now: number): string {
  const out: string[] = [];
  const row = (k: string, v: string): void => {
    out.push(`${`${k}:`.padEnd(14)}${v}`);
  };
  const a = s.agent;
  if (a) row('agent', `runner-warden ${p(a.version)}, pid ${a.pid}, up ${duration(a.uptimeSeconds * 1000)}`);
  row('state', `${p(s.state)} since ${when(s.stateSince, now)}`);
  const health = [s.loopAlive ? 'loop alive' : 'LOOP STALLED'];
  if (s.quarantined) health.push(`QUARANTINED${s.quarantineReason ? `: ${p(s.quarantineReason)}` : ''}`);
  row('health', health.join(', '));
  if (s.runner) {
    const id = s.runner.id !== undefined ? ` (id ${s.runner.id})` : '';
    const labels = s.runner.labels.length > 0 ? `, labels ${s.runner.labels.map(p).join(',')}` : '';
    row('runner', `${p(s.runner.name)}${id}${labels}`);
  } else row('runner', 'none registered');
  row('current job', s.currentJob ? jobLine(s.currentJob, now) : 'none');
  row('jobs served', String(s.jobsServed));
  if (s.lastJob) {
    const j = s.lastJob;
    row('last job', `${jobLine(j, now)}${j.result ? ` → ${p(j.result)}` : ''}`);
    if (j.cleanup) {
      const c = j.cleanup;
      const removed = Object.entries(c.removed)
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${n} ${p(k)}`)
        .join(', ');
      row('  cleanup', `${c.clean ? 'clean' : 'NOT CLEAN'}, ready in ${Math.round(c.readyMs)} ms, removed ${removed || 'nothing'}`);
      for (const problem of c.problems.slice(0, 10)) row('  problem', p(problem));
      if (c.problems.length > 10) row('  problem', `... and ${c.problems.length - 10} more`);
    }
    if (j.decision) row('  decision', p(j.decision));
  } else row('last job', 'none yet');
  const pol = s.policy;
  const polBits = [`team ${p(pol.team)}`];
  if (pol.file) polBits.push(p(pol.file));
  if (pol.version) polBits.push(`version ${p(pol.version)}`);
  if (pol.loadedAt) polBits.push(`loaded ${when(pol.loadedAt, now)}`);
  row('policy', polBits.join(', '));
  if (pol.lastReloadError) row('  reload err', p(pol.lastReloadError));
  const h = s.host;
  if (h) {
    const disk: string[] = [];
    if (h.workFsFreePercent !== undefined) disk.push(`${h.workFsFreePercent.toFixed(1)}% free`);
    if (h.workFsFreeBytes !== undefined) disk.push(bytes(h.workFsFreeBytes));
    if (h.workFsFreeInodes !== undefined) disk.push(`${h.workFsFreeInodes} inodes free`);
    row('disk', disk.length > 0 ? `work fs ${disk.join(', ')}` : 'unknown');
    const load: string[] = [];
    if (h.cpuLoadPercent !== undefined) load.push(`cpu ${h.cpuLoadPercent.toFixed(0)}%`);
    if (h.memUsedPercent !== undefined) load.push(`memory ${h.memUsedPercent.toFixed(0)}% used`);
    if (load.length > 0) row('host', `${load.join(', ')}${h.updatedAt ? ` (sampled ${when(h.updatedAt, now)})` : ''}`);
    const e = h.containerEngine;
    if (e) row('containers', e.up ? `engine up${e.version ? ` (${p(e.version)})` : ''}` : `ENGINE DOWN: ${p(e.error ?? 'no answer')}`);
    const dm = h.dockerMode;
    if (dm)
      row(
        'docker mode',
        `${p(dm.mode)}${dm.jobsCanActAsRoot ? ' (JOBS CAN ACT AS ROOT through the host engine)' : ', jobs cannot act as root through an engine'}`,
      );
    const ic = h.imageCache;
    if (ic) {
      const size = ic.bytes !== undefined && ic.capBytes !== undefined ? `, ${bytes(ic.bytes)} of ${bytes(ic.capBytes)} cap` : '';
      row(
        'image cache',
        ic.up
          ? `up (${p(ic.url)})${size}${ic.full ? '; FULL: every cached blob is in use, new images are not cached (raise docker.mirrorCapGiB)' : ''}`
          : `DOWN (${p(ic.url)}): ${p(ic.error ?? 'no answer')}; engines pull from the upstream directly`,
      );
    }
  } else row('disk', 'not sampled yet');
  return `${out.join('\n')}\n`;
}

function jobLine(j: NonNullable<StatusSnapshot['currentJob']>, now: number): string {
  const what = [j.repository, j.workflow, j.job]
    .filter(Boolean)
    .map((x) => p(x as string))
    .join(' · ');
  const run = j.runId ? ` run ${p(j.runId)}` : '';
  const time = j.endedAt ? `, ended ${when(j.endedAt, now)}` : j.startedAt ? `, started ${when(j.startedAt, now)}` : '';
  return `${what || 'unknown job'}${run}${time}`;
}

/** `2026-01-01T00:00:00Z (5m ago)`. */
function when(iso: string, now: number): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return p(iso);
  const ago = now - t;
  const rel = ago >= 0 ? `${duration(ago)} ago` : `in ${duration(-ago)}`;
  return `${new Date(t).toISOString().slice(0, 19)}Z (${rel})`;
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/**
 * Printable: the snapshot carries names a hostile job chose (workflow, job, repository); control
 * characters become `?` so they cannot move the cursor or rewrite the operator's terminal.
 */
function p(s: string): string {
  // eslint-disable-next-line no-control-regex
  return String(s).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}
