/**
 * `runner-warden cleanup [--dry-run] [--json]`: one cleanup pass by hand, with the same steps and
 * verification as after a job. `--dry-run` prints what each step would remove and removes nothing
 * (the verification, which only reads, still runs and says what is left). The caller (the CLI main)
 * loads the config and policy and passes the slot, policy and logger in.
 */
import type { Logger } from '../lib/log.js';
import { systemClock, type Clock } from '../lib/clock.js';
import type { Policy } from '../policy/types.js';
import type { CleanupContext, CleanupReport, CleanupStep, Slot, VerifyReport } from '../cleanup/types.js';
import { defaultSteps, runCleanup } from '../cleanup/pipeline.js';
import { verify as defaultVerify } from '../cleanup/verify.js';
import { EXIT, commandOptions, type CliIO } from './io.js';
import { CLEANUP_USAGE as USAGE } from './usage.js';

/**
 * The bound of a manual pass (docs/decisions.md, "One bounded signal for cleanup"): a normal pass takes seconds; a quarter of an hour
 * covers deleting millions of files on a slow disk and still ends a pass that hangs.
 */
export const MANUAL_CLEANUP_TIMEOUT_MS = 15 * 60_000;

/** What cleanupCommand needs from the composition root. */
export interface CleanupDeps {
  slot: Slot;
  policy: Policy;
  log: Logger;
  clock?: Clock;
  /** Default: defaultSteps(). */
  steps?: CleanupStep[];
  /** Default: verify(). */
  verify?: (ctx: CleanupContext) => Promise<VerifyReport>;
  /** Pids never signalled; the command's own pid is always added. */
  protectedPids?: Iterable<number>;
  /** Start of the job being cleaned, when known (containers created after it are the job's). */
  jobStartedAt?: number;
  timeoutMs?: number;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** The report as lines for a person. */
export function formatReport(r: CleanupReport, dryRun: boolean): string {
  const lines: string[] = [];
  for (const s of r.steps) {
    const removed = Object.entries(s.removed)
      .map(([kind, v]) => `${kind} ${v.count}${v.bytes > 0 ? ` (${formatBytes(v.bytes)})` : ''}`)
      .join(', ');
    let line = `step ${s.name}: ${s.outcome} (${s.durationMs} ms)`;
    if (removed) line += ` removed ${removed}`;
    if (s.reason) line += ` - ${s.reason}`;
    lines.push(line);
    for (const p of s.plan ?? []) lines.push(`  ${dryRun ? 'would: ' : ''}${p}`);
  }
  const v = r.verify;
  lines.push(`verify: ${v.clean ? 'clean' : `${v.problems.length} problem(s)`} (${v.durationMs} ms)`);
  for (const p of v.problems) lines.push(`  - ${p}`);
  if (v.disk) lines.push(`disk: ${v.disk.freePercent}% free, ${v.disk.freeInodesPercent}% inodes free`);
  lines.push(dryRun ? 'dry run: nothing was removed' : `result: ${r.clean ? 'clean' : 'NOT clean'} in ${r.readyMs} ms`);
  return `${lines.join('\n')}\n`;
}

/** Runs the command; returns 0 when clean (or after a dry run), 1 when not clean, 64 on usage errors. */
export async function cleanupCommand(args: readonly string[], io: CliIO, deps: CleanupDeps): Promise<number> {
  const opts = commandOptions(args, { flags: ['dry-run', 'json'] }, USAGE, io);
  if (typeof opts === 'number') return opts;
  const dryRun = opts['dry-run'] === true;
  const ctx: CleanupContext = {
    slot: deps.slot,
    policy: deps.policy.cleanup,
    fullPolicy: deps.policy,
    log: deps.log.child({ component: 'cleanup' }),
    clock: deps.clock ?? systemClock,
    signal: AbortSignal.timeout(deps.timeoutMs ?? MANUAL_CLEANUP_TIMEOUT_MS),
    dryRun,
    protectedPids: new Set([process.pid, ...(deps.protectedPids ?? [])]),
    ...(deps.jobStartedAt !== undefined ? { jobStartedAt: deps.jobStartedAt } : {}),
  };
  const report = await runCleanup(ctx, deps.steps ?? defaultSteps(), deps.verify ?? defaultVerify);
  io.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report, dryRun));
  if (dryRun) return EXIT.ok;
  return report.clean ? EXIT.ok : 1;
}
