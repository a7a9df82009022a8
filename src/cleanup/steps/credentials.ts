/**
 * Step "credentials": removes every catalogue file (catalogue.ts) and the policy's extra paths
 * and globs, reporting each removal by kind, never by content. A file identical to its home
 * baseline entry is the image's own and stays; a changed one is removed here and the home step
 * puts the baseline copy back (that is how `~/.gitconfig` credential helpers, tokens in
 * `url.*.insteadOf` and `core.hooksPath` go away).
 *
 * A symlinked parent (`~/.docker -> /etc`) is never followed: the symlink itself is removed and
 * reported as `<kind>-symlink`.
 */
import { describeError } from '../../lib/errors.js';
import { catalogueRoots, catalogueWithExtras, findCredentials, removeCredential, type FoundCredential } from '../catalogue.js';
import { bytes, shown } from '../../lib/nofollow.js';
import { loadBaseline, type HomeBaseline } from '../baseline.js';
import { matchesRecord } from '../home-diff.js';
import { addRemoved, capLines } from '../report.js';
import { readMountInfo } from '../mounts.js';
import type { CleanupContext, CleanupStep, Removed, StepReport } from '../types.js';

/** True when a found credential is the image's own: equal to its home baseline entry. */
export async function isBaselineCredential(f: FoundCredential, baseline: HomeBaseline | undefined): Promise<boolean> {
  if (!baseline || f.base !== 'home') return false;
  const rec = baseline.entries.get(f.rel);
  if (!rec) return false;
  return matchesRecord(rec, f.stat, bytes(`${f.root}/${f.rel}`));
}

/** Finds the catalogue files that are not the image's own (shared with verify). */
export async function leftoverCredentials(
  ctx: Pick<CleanupContext, 'slot' | 'policy'>,
  baseline: HomeBaseline | undefined,
): Promise<{ found: FoundCredential[]; rejected: string[] }> {
  const { entries, rejected } = catalogueWithExtras(ctx.policy.credentials.extraPaths, ctx.policy.credentials.extraGlobs);
  // Each entry is looked up on its own and all of them at once: one after the other, the
  // catalogue's few dozen no-follow walks (an open and a stat per path component, each a trip
  // through the thread pool) took 0.1-0.6 s of the ready path on a loaded host. Same order, and
  // a path two entries name is reported once (the first entry's kind), as in one call.
  const roots = catalogueRoots(ctx.slot);
  const each = await Promise.all(entries.map((e) => findCredentials(roots, [e])));
  const seen = new Set<string>();
  const all = each.flat().filter((f) => {
    const key = `${f.root}\0${f.rel}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const found: FoundCredential[] = [];
  for (const f of all) if (!(await isBaselineCredential(f, baseline))) found.push(f);
  return { found, rejected };
}

/** True when `p` is `dir` or below it (byte strings). */
function isAtOrBelow(p: Buffer, dir: Buffer): boolean {
  return p.equals(dir) || (p.length > dir.length && p[dir.length] === 0x2f && p.subarray(0, dir.length).equals(dir));
}

/** How a found credential is shown in plans and problems: its kind and its path. */
export function describeCredential(f: FoundCredential): string {
  const where = f.base === 'home' ? `~/${shown(f.rel)}` : `${shown(f.root)}/${shown(f.rel)}`;
  return f.linkInPath ? `${f.kind} ${where} (symlink in path, not followed)` : `${f.kind} ${where}`;
}

/** The credentials step. */
export function credentialsStep(): CleanupStep {
  return {
    name: 'credentials',
    async run(ctx: CleanupContext): Promise<Omit<StepReport, 'name' | 'durationMs'>> {
      if (!ctx.policy.credentials.enabled) return { outcome: 'skipped', removed: {}, reason: 'disabled by policy' };
      const baseline = await loadBaseline(ctx.slot);
      const { found, rejected } = await leftoverCredentials(ctx, baseline);
      const rejectedNote = rejected.length > 0 ? `policy paths refused (absolute or "..": ${rejected.join(', ')})` : undefined;
      if (ctx.dryRun) {
        return {
          outcome: rejectedNote ? 'failed' : 'ok',
          removed: {},
          plan: capLines(found.map(describeCredential)),
          ...(rejectedNote ? { reason: rejectedNote } : {}),
        };
      }
      const removed: Record<string, Removed> = {};
      const problems: string[] = [];
      // Mount points below a catalogue root: a directory mounted there is someone else's (a
      // privileged job's bind mount of root's ~/.ssh over the runner's), never swept through.
      const mounts = (await readMountInfo()).map((m) => m.mountPoint);
      const throughMount = (f: FoundCredential): boolean => {
        const root = bytes(f.root);
        const abs = bytes(`${f.root}/${f.rel}`);
        return mounts.some((m) => m.length > root.length + 1 && isAtOrBelow(m, root) && isAtOrBelow(abs, m));
      };
      for (const f of found) {
        ctx.signal.throwIfAborted();
        if (throughMount(f)) {
          problems.push(`${describeCredential(f)}: inside a mount point; not removed through it`);
          continue;
        }
        try {
          const r = await removeCredential(f);
          addRemoved(removed, f.linkInPath || f.stat.isSymbolicLink() ? `${f.kind}-symlink` : f.kind, r);
          if (f.linkInPath) ctx.log.warn({ kind: f.kind }, 'symlinked credential path removed, not followed');
        } catch (err) {
          problems.push(`${describeCredential(f)}: ${describeError(err)}`);
        }
      }
      // Trust nothing: look again after removing (a first look that found nothing removed nothing;
      // the verification looks once more either way).
      const again = found.length > 0 ? await leftoverCredentials(ctx, baseline) : { found: [] };
      for (const f of again.found) problems.push(`${describeCredential(f)} still present`);
      if (problems.length > 0) {
        return { outcome: 'dirty', removed, reason: capLines(problems, 5).join('; ') };
      }
      if (rejectedNote) return { outcome: 'failed', removed, reason: rejectedNote };
      return { outcome: 'ok', removed };
    },
  };
}
