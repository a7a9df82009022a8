/**
 * The soak's invariants, computed from what it kept: the journal against the fake's jobs (lost
 * records), the fake's runner list (ghosts), what each job found of the one before (dirty hosts
 * reused), the quarantine against later service, /healthz answers and forged reports.
 */
import type { EventRecord, JobRecord, JournalRecord } from '../../src/agent/journal.js';
import type { JobRecord as FakeJob } from '../../src/sim/github/types.js';
import { median } from './prng.js';
import type { ForgeOutcome, HealthPoller } from './soak-faults.js';

/** What checkInvariants reads. */
export interface CheckInput {
  records: JournalRecord[];
  torn: string[];
  fakeJobs: readonly FakeJob[];
  ghosts: readonly { id: number; name: string; status: string; busy: boolean }[];
  /** Per run id: what the job found of earlier jobs (empty: nothing). */
  found: Map<number, string>;
  /** Journal record counts at each host replacement. */
  generations: number[];
  /** When quarantine.json existed (ms since the epoch). */
  quarantinedSpans: [number, number][];
  health: HealthPoller;
  forges: ForgeOutcome[];
  statusLeaks: string[];
  forgedRepo: string;
}

/** The figures, report lines and broken invariants of one soak. */
export interface Invariants {
  lost: number;
  /** Jobs whose one record names no job (recovery knew only that the registration was used up): not lost. */
  unnamed: number;
  /** Records of an unknown job for a runner that ran none (an over-count: reported, not a lost record). */
  unknownWithoutJob: number;
  ghosts: number;
  dirtyReused: number;
  quarantineLost: number;
  /** /healthz failures while the agent served (its loop running). */
  healthFailures: number;
  /** /healthz failures of an agent process still starting (health server up, loop not yet running). */
  healthStartupFailures: number;
  forgedAccepted: number;
  lines: string[];
  broken: string[];
  timing(chaosFrom: number): string[];
}

export function checkInvariants(c: CheckInput): Invariants {
  const jobRecs = c.records.filter((r): r is JobRecord => r.type === 'job');
  const ran = c.fakeJobs.filter((j) => j.startedAt !== null);
  const claims = new Map<string, JobRecord[]>();
  let unattributed = 0;
  // A record of a job recovery could not name (its registration gone, nothing left to show which
  // job): it accounts for the job its runner ran, if that runner ran one; otherwise it stands for
  // no job (an operator's removal, or the agent's own deletion cut short by a kill).
  const unknownNoJob: JobRecord[] = [];
  for (const r of jobRecs) {
    const unknown = isUnknownJob(r);
    const fj =
      r.runnerId !== undefined
        ? c.fakeJobs.find((j) => j.runnerId === r.runnerId && (!unknown || j.startedAt !== null))
        : r.job.runId !== undefined
          ? c.fakeJobs.find((j) => j.job.runId === r.job.runId)
          : undefined;
    if (fj) claims.set(fj.id, [...(claims.get(fj.id) ?? []), r]);
    else if (unknown) unknownNoJob.push(r);
    else unattributed += 1;
  }
  const lost = ran.filter((j) => (claims.get(j.id) ?? []).length === 0);
  const dup = ran.filter((j) => (claims.get(j.id) ?? []).length > 1);
  // Jobs whose only record names no job: not lost (the host counted and cleaned after them), but
  // what ran is known only to the fake, so they are shown apart from the jobs recorded in full.
  const creditedUnknown = ran.filter((j) => {
    const rs = claims.get(j.id) ?? [];
    return rs.length === 1 && isUnknownJob(rs[0] as JobRecord);
  });

  // Dirty hosts reused: a job found an earlier job's marker or process, or a record reused a host it found unclean.
  const foundDirty = [...c.found.entries()].filter(([, t]) => t !== '');
  const reusedUnclean = jobRecs.filter((r) => r.decision === 'reuse' && r.cleanup && r.cleanup.clean === false);

  // Quarantine lost: within one host's part of the journal, service after a quarantine without a release;
  // and (independently of the journal) a job started on the fake while the quarantine fact existed.
  const bounds = [0, ...c.generations, c.records.length];
  const qLost: string[] = [];
  let quarantines = 0;
  for (let g = 0; g + 1 < bounds.length; g++) {
    let held: string | undefined;
    for (const r of c.records.slice(bounds[g], bounds[g + 1])) {
      if (r.type === 'event' && (r.event === 'quarantine' || r.event === 'quarantine-kept')) {
        if (r.event === 'quarantine') quarantines += 1;
        held = `seq ${r.seq}`;
      } else if (r.type === 'event' && r.event === 'unquarantine') held = undefined;
      else if (held && (r.type === 'job' || (r.type === 'event' && r.event === 'listener-started'))) {
        qLost.push(
          `after the quarantine at ${held}: ${r.type === 'job' ? `job record seq ${r.seq} (${r.runnerName})` : `listener started, seq ${r.seq}`}`,
        );
      }
    }
  }
  for (const j of ran) {
    const at = j.startedAt as number;
    const span = c.quarantinedSpans.find(([a, b]) => at > a && at < b);
    if (span)
      qLost.push(`run ${j.job.runId} started on the fake while the host was quarantined (since ${new Date(span[0]).toISOString()})`);
  }

  // Forged reports: any path that took the write, a /status naming the forged repository, a record of it.
  const reached = c.forges.filter((f) => f.reached);
  const forgedRecords = jobRecs.filter((r) => JSON.stringify(r.job).includes(c.forgedRepo));
  const forgeTries: Record<string, number> = {};
  for (const f of c.forges) for (const [k, v] of Object.entries(f.tries)) forgeTries[`${k}:${v}`] = (forgeTries[`${k}:${v}`] ?? 0) + 1;

  const hf = c.health.failures;
  const events: Record<string, number> = {};
  for (const r of c.records) if (r.type === 'event') events[r.event] = (events[r.event] ?? 0) + 1;
  const results: Record<string, number> = {};
  for (const j of c.fakeJobs) results[j.result ?? j.status] = (results[j.result ?? j.status] ?? 0) + 1;

  const inv: Invariants = {
    // A torn line is the fragment a refused write (ENOSPC) left; the journal terminates it and writes
    // the whole record again, so only a job without an intact record (above) is lost.
    lost: lost.length + dup.length,
    unnamed: creditedUnknown.length,
    unknownWithoutJob: unknownNoJob.length,
    ghosts: c.ghosts.length,
    dirtyReused: foundDirty.length + reusedUnclean.length,
    quarantineLost: qLost.length,
    healthFailures: hf.filter((h) => !h.startup).length,
    healthStartupFailures: hf.filter((h) => h.startup).length,
    forgedAccepted: reached.length + c.statusLeaks.length + forgedRecords.length,
    lines: [],
    broken: [],
    timing(chaosFrom: number): string[] {
      const starts = c.records.filter((r): r is EventRecord => r.type === 'event' && r.event === 'listener-started');
      const ms = (rs: EventRecord[]): number[] => rs.map((r) => Number(r.detail?.sinceLastJobEndMs)).filter((x) => Number.isFinite(x));
      const b = median(ms(starts.filter((r) => Date.parse(r.at) < chaosFrom)));
      const f = median(ms(starts.filter((r) => Date.parse(r.at) >= chaosFrom)));
      return [
        `  job end -> next listener, median: ${(f / 1000).toFixed(2)} s with faults vs ${(b / 1000).toFixed(2)} s baseline (same run) = ${(f / b).toFixed(2)}x`,
      ];
    },
  };
  inv.lines.push(
    `  lost journal records:    ${inv.lost}  (jobs run ${ran.length}, job records ${jobRecs.length}, no record ${lost.length}, several ${dup.length}, torn lines ${c.torn.length}, records naming no job ${unattributed})`,
    `  unknown-job records:     ${creditedUnknown.length + unknownNoJob.length}  (a job's only record, the job unnamed: ${creditedUnknown.length}; for a runner that ran no job: ${unknownNoJob.length})`,
    `  ghost registrations:     ${inv.ghosts}`,
    `  dirty hosts reused:      ${inv.dirtyReused}  (jobs that found an earlier job's marker or process ${foundDirty.length} of ${c.found.size} that looked; records reusing an unclean host ${reusedUnclean.length})`,
    `  quarantine lost:         ${inv.quarantineLost}  (quarantines ${quarantines}, hosts replaced ${c.generations.length})`,
    `  /healthz failures:       ${inv.healthFailures + inv.healthStartupFailures}  (${inv.healthStartupFailures} of them before the agent's first state; polls ${c.health.polls}: ${Object.entries(
      c.health.answers,
    )
      .map(([k, v]) => `${k} x${v}`)
      .join(', ')})`,
    `  forged reports accepted: ${inv.forgedAccepted}  (attempts ${c.forges.length}; ${
      Object.entries(forgeTries)
        .map(([k, v]) => `${k} x${v}`)
        .join(', ') || 'none'
    })`,
    `  fake job results: ${Object.entries(results)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `  journal events: ${Object.entries(events)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  for (const j of lost) inv.lines.push(`  LOST: run ${j.job.runId} on ${j.runnerName} #${j.runnerId}: ${j.status}/${j.result}`);
  for (const j of dup)
    inv.lines.push(`  DUPLICATE: run ${j.job.runId}: ${(claims.get(j.id) ?? []).map((r) => `${r.seq} ${r.result}`).join(', ')}`);
  for (const j of creditedUnknown)
    inv.lines.push(`  UNNAMED: run ${j.job.runId} on ${j.runnerName} #${j.runnerId}: recorded as a job of unknown name`);
  for (const r of unknownNoJob)
    inv.lines.push(`  UNKNOWN WITHOUT A JOB: record seq ${r.seq} for runner #${r.runnerId ?? '?'}, which ran no job`);
  for (const t of c.torn) inv.lines.push(`  TORN: ${t}`);
  for (const g of c.ghosts) inv.lines.push(`  GHOST: ${g.id} ${g.name} ${g.status} busy=${g.busy}`);
  for (const [i, t] of foundDirty) inv.lines.push(`  DIRTY: run ${i} found: ${t.slice(0, 200)}`);
  for (const r of reusedUnclean) inv.lines.push(`  DIRTY: record seq ${r.seq} reused an unclean host: ${r.decisionReason}`);
  for (const q of qLost) inv.lines.push(`  QUARANTINE LOST: ${q}`);
  for (const h of hf.slice(0, 20)) inv.lines.push(`  HEALTHZ${h.startup ? ' (start-up)' : ''}: ${h.at} ${h.what.slice(0, 320)}`);
  for (const f of reached) inv.lines.push(`  FORGED: ${JSON.stringify(f.tries)}`);
  for (const s of c.statusLeaks) inv.lines.push(`  FORGED in /status: ${s}`);
  for (const r of forgedRecords) inv.lines.push(`  FORGED in the journal: seq ${r.seq}`);

  if (inv.lost > 0) inv.broken.push(`${inv.lost} lost journal records`);
  if (inv.ghosts > 0) inv.broken.push(`${inv.ghosts} ghost registrations`);
  if (inv.dirtyReused > 0) inv.broken.push(`${inv.dirtyReused} dirty hosts reused`);
  if (inv.quarantineLost > 0) inv.broken.push(`${inv.quarantineLost} quarantines lost`);
  if (inv.healthFailures > 0) inv.broken.push(`${inv.healthFailures} /healthz failures`);
  if (inv.healthStartupFailures > 0) inv.broken.push(`${inv.healthStartupFailures} /healthz failures at agent start-up`);
  if (inv.forgedAccepted > 0) inv.broken.push(`${inv.forgedAccepted} forged reports got through`);
  if (ran.length > 0 && c.health.polls === 0) inv.broken.push('/healthz was never polled');
  return inv;
}

/** A record of a job recovery could not name: seen after the fact, with no job metadata at all. */
export function isUnknownJob(r: JobRecord): boolean {
  return r.source === 'after-the-fact' && Object.keys(r.job).length === 0;
}
