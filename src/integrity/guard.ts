/**
 * The whole-host integrity check as a JobGuard: `prepare` notes when the job started, `release`
 * removes what the runner user's subordinate ids left, `verify` compares the host with the system
 * baseline (after every job, and at preflight with the image identity too). Any drift is a finding
 * carrying the drift entry; the changed files are copied to the root-only forensics directory.
 */
import type { GuardContext, GuardFinding, GuardJob, GuardPrepared, GuardReleased, JobGuard } from '../lib/job-guard.js';
import type { Policy } from '../policy/types.js';
import { integrityPaths, identityDifferences, loadBaseline, type LoadedBaseline } from './baseline-store.js';
import { copyForensics } from './forensics.js';
import { GlobSet } from './glob.js';
import { exceptionPatterns } from './surfaces.js';
import { checkHost } from './snapshot.js';
import { inRanges } from './accounts.js';
import { findLeftovers, jobIdRanges, removeLeftovers } from './subids.js';
import { sudoGranted } from './sudo-guard.js';
import { IntegrityBaselineError, type DriftEntry, type SystemBaseline } from './types.js';
import { ByStat } from './stat-cache.js';
import type { PackageSet } from './accounts.js';
import { NetfilterShell } from './netfilter.js';
import { ToolShell } from './tool-shell.js';
import { readProcTable } from './proc-table.js';
import type { AgentRecords } from './agent-records.js';
import { BPF_WATERMARK_KEY, BPFTOOL_MISSING, bpfWatermark, checkSince, type BpfWatermark } from './bpf-state.js';

/** Where the guard reads and what it leaves out; every path is host view. */
export interface IntegrityGuardOptions {
  /** Prefix of the file surfaces (default '/'). */
  root?: string;
  /** procfs for kernel state (default '/proc'). */
  proc?: string;
  /** The agent's state directory: the baseline and forensics live there. */
  stateDir: string;
  /** Directories left out of every walk: the runner root, the agent's state, job and trash dirs. */
  excluded: readonly string[];
  /**
   * Directories the agent is deleting in the background at the time of a check (the temp step's
   * holding directories): root-only, made by the agent after a job, holding that job's moved
   * trees, which cleanup already judged. Read at each check: the set changes as they drain.
   */
  transientExcluded?: () => readonly string[];
  /** The runner user: its (and its subordinate ids') processes are cleanup's, not drift. */
  user: { name: string; uid: number };
  /** Pids never reported (the agent's own). */
  skipPids?: readonly number[];
  /** Read netfilter with iptables-save / nft (default true). */
  netfilter?: boolean;
  /** The bpftool binary (tests); default: PATH, then /usr/sbin/bpftool. */
  bpftool?: string;
  /** The agent's own records (home baseline, runner install manifest), pinned by digest (agent-records.ts). */
  records?: AgentRecords;
  now?: () => number;
}

/** Process start times are known to a tick after a boot time known to the second: that much earlier counts. */
const PROCESS_START_SLACK_MS = 2_000;

/** The host compared with its system baseline. */
export class IntegrityGuard implements JobGuard<Policy> {
  readonly name = 'integrity';
  private readonly started = new Map<string, number>();
  private readonly now: () => number;
  /** The stored baseline, parsed and its digest checked, while its file is unchanged. */
  private readonly baselines = new ByStat<LoadedBaseline>();
  /**
   * The digest of the first baseline this agent loaded. The file lives on the host a job with
   * root can write, digest included: a baseline that changes under a running agent (rewritten to
   * take a plant in) is refused, whatever its own digest says. A new baseline needs the agent
   * stopped (docs/integrity.md).
   */
  private pinned: string | undefined;
  private readonly packages = new ByStat<PackageSet>();
  /** Runs iptables-save and nft for every check: no child of the agent per check. */
  private readonly netfilterShell = new NetfilterShell();
  /** Runs getcap for every check, beside the netfilter tools' shell. */
  private readonly toolShell = new ToolShell();
  /** The highest eBPF ids when each job started: what is above them after the job is the job's. */
  private readonly bpfAtStart = new Map<string, BpfWatermark>();
  /** The eBPF watermark of the last check that found no eBPF drift (bpf-state.ts checkSince). */
  private bpfLastClean: BpfWatermark | undefined;
  /** What this agent has warned about once (a surface not checked). */
  private readonly warned = new Set<string>();
  constructor(private readonly o: IntegrityGuardOptions) {
    this.now = o.now ?? Date.now;
  }

  async prepare(job: GuardJob, policy: Policy, ctx: GuardContext): Promise<GuardPrepared> {
    this.started.set(job.key, this.now());
    // A first job before any verification: the records as the agent left them before the listener.
    if (policy.host.integrity.enabled) this.o.records?.pinUnpinned();
    if (policy.host.integrity.enabled && policy.host.integrity.surfaces.includes('bpf')) {
      // The last clean check's ids (nothing ran in between but the agent); read now without one.
      const mark = this.bpfLastClean ?? (await bpfWatermark(this.proc, this.toolShell, this.o.bpftool, ctx.signal));
      if (mark) this.bpfAtStart.set(job.key, mark);
    }
    return {};
  }

  async release(job: GuardJob, policy: Policy, _ctx: GuardContext): Promise<GuardReleased> {
    const ranges = await jobIdRanges(this.root, job.user);
    if (ranges.uids.length === 0 && ranges.gids.length === 0) return { outcome: 'skipped' };
    const r = await removeLeftovers(ranges, { root: this.root, proc: this.proc, tempDirs: policy.cleanup.temp.paths });
    if (r.left.length > 0) {
      return {
        outcome: 'dirty',
        removed: r.removed,
        reason: `${r.left.length} object(s) of the runner user's subordinate ids survive: ${r.left
          .slice(0, 3)
          .map((l) => `${l.kind} ${l.id}`)
          .join(', ')}`,
      };
    }
    return { outcome: 'ok', removed: r.removed };
  }

  async verify(job: GuardJob | undefined, policy: Policy, ctx: GuardContext): Promise<GuardFinding[]> {
    const p = policy.host.integrity;
    const findings: GuardFinding[] = [];
    // The job's subordinate ids are verified whatever the integrity switch says: they are the job's.
    const ranges = await jobIdRanges(this.root, job?.user ?? this.o.user);
    // One read of /proc for the subordinate ids and the process surface.
    const procTable = p.enabled || ranges.uids.length > 0 ? readProcTable(this.proc) : [];
    for (const l of await findLeftovers(ranges, {
      root: this.root,
      proc: this.proc,
      tempDirs: policy.cleanup.temp.paths,
      table: procTable,
    })) {
      findings.push({
        problem: `${l.kind} ${l.id} of subordinate uid ${l.uid} (the runner user's user namespace) is left`,
        detail: { surface: 'subids', ...l },
      });
    }
    if (!p.enabled) return findings;
    for (const problem of (await this.o.records?.check()) ?? []) findings.push({ problem, detail: { kind: 'record' } });
    let base: SystemBaseline;
    try {
      const file = integrityPaths(this.o.stateDir).baseline;
      const loaded = await this.baselines.get(file, () => loadBaseline(this.o.stateDir));
      this.pinned ??= loaded.digest;
      if (loaded.digest !== this.pinned) {
        throw new IntegrityBaselineError(
          'replaced',
          file,
          `${file}: digest: ${loaded.digest.slice(0, 12)}, but this agent loaded ${this.pinned.slice(0, 12)}; a baseline is replaced only with the agent stopped (rewritten during a job?)`,
        );
      }
      base = loaded.baseline;
    } catch (err) {
      if (err instanceof IntegrityBaselineError)
        return [...findings, { problem: `system baseline ${err.kind}: ${err.message}`, detail: { kind: err.kind, file: err.file } }];
      throw err;
    }
    const surfaces = p.surfaces.filter((s) => base.surfaces.includes(s));
    const notRecorded = p.surfaces.filter((s) => !base.surfaces.includes(s));
    if (notRecorded.length > 0)
      this.warnOnce(
        ctx,
        `surfaces ${notRecorded.join(', ')}`,
        { surfaces: notRecorded },
        'integrity surfaces not in the system baseline are not checked: retake the baseline with the agent stopped',
      );
    const exceptions = new GlobSet(exceptionPatterns(p));
    const started = job ? this.started.get(job.key) : undefined;
    const subUids = [...ranges.uids, { start: (job?.user ?? this.o.user).uid, count: 1 }];
    const t0 = performance.now();
    const {
      drift,
      unreadable,
      identity,
      entries,
      bpfWatermark: bpfNow,
    } = await checkHost(
      {
        root: this.root,
        proc: this.proc,
        surfaces,
        excluded: [...this.o.excluded, ...(this.o.transientExcluded?.() ?? [])],
        exceptions,
        packageCache: this.packages,
        netfilterShell: this.netfilterShell,
        toolShell: this.toolShell,
        procTable,
        jobUser: job?.user ?? this.o.user,
        // /proc/stat's boot time is in whole seconds: a process started just before the job may count as the job's.
        ...(started !== undefined ? { newProcessesSinceMs: started - PROCESS_START_SLACK_MS } : {}),
        ...(this.o.skipPids ? { skipPids: this.o.skipPids } : {}),
        ...(this.o.netfilter !== undefined ? { netfilter: this.o.netfilter } : {}),
        ...(this.o.bpftool ? { bpftool: this.o.bpftool } : {}),
        bpfSince: checkSince({
          proc: this.proc,
          job: job !== undefined,
          baseline: base.snapshot.objects[BPF_WATERMARK_KEY],
          ...(job && this.bpfAtStart.has(job.key) ? { atJobStart: this.bpfAtStart.get(job.key) } : {}),
          ...(this.bpfLastClean ? { lastClean: this.bpfLastClean } : {}),
        }),
        signal: ctx.signal,
      },
      base.snapshot,
      {
        root: this.root,
        exceptions,
        ...(job ? { job: { jobUid: (uid: number) => inRanges(uid, subUids), startedAtMs: started ?? 0, sudo: sudoGranted(policy) } } : {}),
      },
    );
    ctx.log.info({ durationMs: Math.round(performance.now() - t0), entries, drift: drift.length }, 'integrity checked');
    // The package set identifies the image only at preflight; after a job a changed package is drift.
    for (const d of identityDifferences(base.identity, identity, !job && !p.allowPackages)) {
      findings.push({ problem: `system baseline is from another image: ${d}`, detail: { kind: 'other-image', difference: d } });
    }
    if (bpfNow && !drift.some((d) => d.surface === 'bpf')) this.bpfLastClean = bpfNow;
    if (unreadable.includes(BPFTOOL_MISSING))
      this.warnOnce(
        ctx,
        'bpftool',
        {},
        'eBPF programs, links and maps are not checked: bpftool is not installed (apt-get install bpftool)',
      );
    const baseUnreadable = new Set(base.snapshot.unreadable);
    for (const u of unreadable) {
      if (!baseUnreadable.has(u)) findings.push({ problem: `integrity surface unreadable: ${u}`, detail: { kind: 'unreadable', what: u } });
    }
    for (const d of drift) findings.push({ problem: driftLine(d), detail: { ...d } });
    if (job) {
      this.started.delete(job.key);
      this.bpfAtStart.delete(job.key);
    }
    if (drift.length > 0) {
      const copy = await copyForensics(
        integrityPaths(this.o.stateDir).forensics,
        `${new Date(this.now()).toISOString()}-${job?.key ?? 'preflight'}`,
        drift,
        this.root,
        p.forensicsMaxMiB * 1024 * 1024,
      ).catch((err: unknown) => {
        ctx.log.warn({ err: String(err) }, 'forensics copy failed');
        return undefined;
      });
      if (copy)
        ctx.log.warn(
          { drift: drift.length, forensics: copy.dir, files: copy.files, bytes: copy.bytes, skipped: copy.skipped },
          'host drift: evidence kept',
        );
    }
    return findings;
  }

  /** A warning logged once per agent: the preflight names what is not checked, later checks do not repeat it. */
  private warnOnce(ctx: GuardContext, what: string, fields: Record<string, unknown>, message: string): void {
    if (this.warned.has(what)) return;
    this.warned.add(what);
    ctx.log.warn(fields, message);
  }

  private get root(): string {
    return this.o.root ?? '/';
  }

  private get proc(): string {
    return this.o.proc ?? '/proc';
  }
}

/**
 * One line of the drift report: "etc: /etc/cron.d/x added (the job through sudo ...)". A planted
 * name's control characters are escaped: a newline in a file name cannot forge another line.
 */
export function driftLine(d: DriftEntry): string {
  // eslint-disable-next-line no-control-regex -- the control characters are what it escapes
  const object = d.object.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return `${d.surface}: ${object} ${d.change} (${d.likely})`;
}
