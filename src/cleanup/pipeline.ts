/**
 * The cleanup pipeline (docs/decisions.md, "Cleanup is a pipeline of named steps"): an ordered list of named steps with one interface, each
 * timed and recorded in the job's report (name, outcome, duration, what it removed by kind, why),
 * then the independent verification. A step that throws is recorded `failed` and the pipeline goes
 * on: the later steps still remove what they can, and the host is not clean either way.
 *
 *   commands-before → system → processes → containers → workdir → credentials → home → temp
 *     → runner-install → commands-after → verify
 *
 * The system step (crontab, at jobs, IPC) goes before the process sweep so that nothing can start a
 * new process once the sweep is done; processes then go before the file steps so nothing the job
 * left running can race them; credentials go
 * before home so that a changed `~/.gitconfig` is removed and then restored from the baseline.
 */
import { describeError, isAbort } from '../lib/errors.js';
import type { CleanupContext, CleanupReport, CleanupStep, StepReport, VerifyReport } from './types.js';
import { adminCommandsStep } from './steps/admin-commands.js';
import { processesStep } from './steps/processes.js';
import { containersStep } from './steps/containers.js';
import { createWorkdirStep } from './steps/workdir.js';
import { credentialsStep } from './steps/credentials.js';
import { homeStep } from './steps/home.js';
import { createTempStep } from './steps/temp.js';
import type { TempTrash } from './steps/temp-trash.js';
import { systemStep } from './steps/system.js';
import { runnerInstallStep } from './steps/runner-install.js';
import type { Trash } from './trash.js';

/** Options of defaultSteps. */
export interface DefaultStepsOptions {
  /**
   * The slot's trash, drained in the background by its owner: the workdir step renames `_work`
   * into it and the home step a job's new directories (without it, both delete in place).
   */
  trash?: Trash;
  /**
   * The slot trash's follower for the temp step: a directory a job left in a temp dir is renamed
   * into it and deleted in the background (without it, in place).
   */
  tempTrash?: TempTrash;
}

/** The steps in their order (see the module header). */
export function defaultSteps(opts: DefaultStepsOptions = {}): CleanupStep[] {
  return [
    adminCommandsStep('before'),
    // Crontab and at jobs go first, so nothing can start a new process after the process sweep.
    systemStep,
    processesStep,
    containersStep(),
    createWorkdirStep(opts.trash ? { trash: opts.trash } : {}),
    credentialsStep(),
    homeStep(opts.trash ? { trash: opts.trash } : {}),
    createTempStep(opts.tempTrash ? { trash: opts.tempTrash } : {}),
    runnerInstallStep(),
    adminCommandsStep('after'),
  ];
}

/** Runs one step, timing it and turning a throw into a `failed` entry. */
async function runStep(ctx: CleanupContext, step: CleanupStep): Promise<StepReport> {
  const started = ctx.clock.now();
  const entry = (r: Omit<StepReport, 'name' | 'durationMs'>): StepReport => ({
    name: step.name,
    durationMs: ctx.clock.now() - started,
    ...r,
  });
  if (ctx.signal.aborted) {
    return entry({ outcome: 'failed', removed: {}, reason: 'not run: the cleanup time limit was reached' });
  }
  try {
    return entry(await step.run(ctx));
  } catch (err) {
    const reason = isAbort(err) || ctx.signal.aborted ? 'aborted: the cleanup time limit was reached' : describeError(err);
    ctx.log.warn({ step: step.name, err: describeError(err) }, 'cleanup step failed');
    return entry({ outcome: 'failed', removed: {}, reason });
  }
}

/** A step that failed for want of room (the job filled the disk, and its files still sit in the trash). */
function failedForRoom(r: StepReport): boolean {
  return r.outcome !== 'ok' && r.outcome !== 'skipped' && /\b(ENOSPC|EDQUOT)\b/.test(r.reason ?? '');
}

/** Options of runCleanup. */
export interface RunCleanupOptions {
  /**
   * Frees the room the job took (empties the trash, where `_work` was renamed). A step that fails
   * for want of room gets one more try after it: a job that filled the disk must not leave the host
   * quarantined only because its own files had not been deleted yet.
   */
  freeSpace?: (signal: AbortSignal) => Promise<void>;
}

/**
 * Runs `steps` in order, then `verify`. `clean` is true only when every step is ok or skipped and
 * the verification found nothing. `readyMs` spans the steps and the verification.
 */
export async function runCleanup(
  ctx: CleanupContext,
  steps: CleanupStep[],
  verify: (ctx: CleanupContext) => Promise<VerifyReport>,
  opts: RunCleanupOptions = {},
): Promise<CleanupReport> {
  const started = ctx.clock.now();
  const reports: StepReport[] = [];
  let freed = false;
  for (const step of steps) {
    let r = await runStep(ctx, step);
    if (failedForRoom(r) && opts.freeSpace && !freed && !ctx.signal.aborted) {
      freed = true;
      ctx.log.info({ step: r.name, reason: r.reason }, 'no room left; emptying the trash and trying the step again');
      try {
        await opts.freeSpace(ctx.signal);
        r = await runStep(ctx, step);
      } catch (err) {
        ctx.log.warn({ step: r.name, err: describeError(err) }, 'the trash could not be emptied');
      }
    }
    ctx.log.info(
      { step: r.name, outcome: r.outcome, durationMs: r.durationMs, removed: r.removed, ...(r.reason ? { reason: r.reason } : {}) },
      'cleanup step done',
    );
    reports.push(r);
  }
  const vStarted = ctx.clock.now();
  let v: VerifyReport;
  try {
    v = await verify(ctx);
  } catch (err) {
    v = { clean: false, durationMs: ctx.clock.now() - vStarted, problems: [`verify failed: ${describeError(err)}`] };
  }
  const stepsOk = reports.every((r) => r.outcome === 'ok' || r.outcome === 'skipped');
  const report: CleanupReport = {
    steps: reports,
    verify: v,
    clean: stepsOk && v.clean,
    readyMs: ctx.clock.now() - started,
  };
  ctx.log.info({ clean: report.clean, readyMs: report.readyMs, problems: v.problems.length }, 'cleanup done');
  return report;
}
