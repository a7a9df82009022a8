/**
 * Steps "commands-before" and "commands-after": the admin's own commands from the policy
 * (policy.cleanup.commands), run as root with `/bin/sh -c`, one at a time, each within its
 * `timeoutSeconds` (its whole process group is killed past it). They get a scrubbed environment:
 * nothing of the agent's (its token) and nothing of the job's, only what says which slot to act on.
 */
import { runCommand } from '../../lib/process.js';
import { capLines } from '../report.js';
import type { AdminCommand } from '../../policy/types.js';
import type { CleanupContext, CleanupStep, StepReport } from '../types.js';

/** PATH of admin commands: system directories only, never one the job could write. */
const ADMIN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The environment an admin command gets. */
export function adminEnv(ctx: CleanupContext, phase: 'before' | 'after'): Record<string, string> {
  return {
    PATH: ADMIN_PATH,
    LANG: 'C.UTF-8',
    RUNNER_WARDEN_PHASE: phase,
    RUNNER_WARDEN_SLOT: String(ctx.slot.index),
    RUNNER_WARDEN_RUNNER_USER: ctx.slot.user.name,
    RUNNER_WARDEN_RUNNER_HOME: ctx.slot.user.home,
    RUNNER_WARDEN_RUNNER_ROOT: ctx.slot.runnerRoot,
    RUNNER_WARDEN_WORK_DIR: ctx.slot.workDir,
  };
}

/** The step that runs the policy's `before` or `after` commands. */
export function adminCommandsStep(phase: 'before' | 'after'): CleanupStep {
  return {
    name: `commands-${phase}`,
    async run(ctx: CleanupContext): Promise<Omit<StepReport, 'name' | 'durationMs'>> {
      const cmds: AdminCommand[] = ctx.policy.commands[phase];
      if (cmds.length === 0) return { outcome: 'skipped', removed: {}, reason: 'no commands' };
      if (ctx.dryRun) return { outcome: 'ok', removed: {}, plan: capLines(cmds.map((c) => `run: ${c.run}`)) };
      const failures: string[] = [];
      for (const [i, c] of cmds.entries()) {
        const r = await runCommand('/bin/sh', ['-c', c.run], {
          timeoutMs: c.timeoutSeconds * 1000,
          signal: ctx.signal,
          env: adminEnv(ctx, phase),
          cwd: '/',
        });
        if (r.timedOut) failures.push(`command ${i + 1} timed out after ${c.timeoutSeconds} s`);
        else if (r.code !== 0) failures.push(`command ${i + 1} exited ${r.code ?? r.signal}`);
        if (r.code !== 0 || r.timedOut) {
          // The output stays in the agent's log (it may be long); the report gets one line.
          ctx.log.warn({ phase, command: i + 1, code: r.code, stderr: r.stderr.slice(-2000) }, 'admin command failed');
        }
      }
      if (failures.length > 0) return { outcome: 'failed', removed: {}, reason: failures.join('; ') };
      return { outcome: 'ok', removed: {} };
    },
  };
}
