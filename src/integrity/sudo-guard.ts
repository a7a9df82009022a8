/**
 * Policy `runner.sudo`: `deny` (default) proves the runner user has no sudo rights; `allow` writes a
 * sudoers drop-in before the listener starts and removes it after (the integrity check then decides
 * whether the host may serve again); `recycle` grants the same and the decision recycles the host
 * after the job (it reads `runner.sudo` from the policy it already has).
 */
import { lstat, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { readTextSync } from './proc-table.js';
import { writeFileAtomic } from '../lib/fs.js';
import {
  GuardUnfitError,
  type GuardContext,
  type GuardFinding,
  type GuardJob,
  type GuardPrepared,
  type GuardReleased,
  type JobGuard,
} from '../lib/job-guard.js';
import type { Policy } from '../policy/types.js';
import { groupsOf, sudoRights } from './sudoers.js';

/** The grant files' common prefix (host view); a name without a dot, or sudo ignores it. */
export const SUDO_DROP_IN = '/etc/sudoers.d/runner-warden-job';

/**
 * The grant of one runner user: its own file, so that the agent of another slot (or another
 * agent on the same machine) removing its grant at the end of its job never removes this one.
 */
export function sudoDropIn(userName: string): string {
  return `${SUDO_DROP_IN}-${userName}`;
}

/** True when a job under this policy runs with sudo. */
export function sudoGranted(policy: Policy): boolean {
  return policy.runner.sudo !== 'deny';
}

/** Options of the sudo guard; `root` prefixes every path (tests build their own tree). */
export interface SudoGuardOptions {
  root?: string;
  /** The runner user, checked at preflight (when there is no job). */
  user?: { name: string; uid: number; gid: number };
}

/** The temporary sudo grant and the proof that none is left. */
export class SudoGuard implements JobGuard<Policy> {
  readonly name = 'sudo';
  private readonly root: string;
  private readonly user: SudoGuardOptions['user'];
  constructor(o: SudoGuardOptions = {}) {
    this.root = o.root ?? '/';
    this.user = o.user;
  }

  private dropIn(userName: string): string {
    return path.join(this.root, sudoDropIn(userName));
  }

  /** The single shared grant file of earlier versions, when it grants this user. */
  private async legacyGrant(userName: string): Promise<string | undefined> {
    const file = path.join(this.root, SUDO_DROP_IN);
    const text = readTextSync(file);
    return new RegExp(`^${userName.replace(/\$/g, '\\$')}\\s`, 'm').test(text) ? file : undefined;
  }

  async prepare(job: GuardJob, policy: Policy, _ctx: GuardContext): Promise<GuardPrepared> {
    if (!sudoGranted(policy)) return {};
    if (!/^[a-z_][a-z0-9_-]*\$?$/i.test(job.user.name)) {
      throw new GuardUnfitError(
        this.name,
        `runner user name "${job.user.name}" cannot be written into sudoers safely`,
        'use a plain user name for runner.user',
      );
    }
    await mkdir(path.dirname(this.dropIn(job.user.name)), { recursive: true, mode: 0o750 }).catch((err: unknown) => {
      throw new GuardUnfitError(this.name, `cannot create ${path.dirname(SUDO_DROP_IN)}`, 'install sudo on the image', { cause: err });
    });
    await writeFileAtomic(
      this.dropIn(job.user.name),
      `# written by runner-warden for one job; removed when the job ends\n${job.user.name} ALL=(ALL:ALL) NOPASSWD: ALL\n`,
      0o440,
    );
    const notes = [`sudo granted to ${job.user.name} for this job (${sudoDropIn(job.user.name)})`];
    if (policy.runner.sudo === 'recycle') notes.push('runner.sudo is recycle: the host is recycled after this job');
    return { notes };
  }

  async release(job: GuardJob, policy: Policy, _ctx: GuardContext): Promise<GuardReleased> {
    // Removed whatever the policy says now: it may have changed during the job. Only this user's.
    const files = [this.dropIn(job.user.name), ...[await this.legacyGrant(job.user.name)].filter((f) => f !== undefined)];
    const exists = (f: string): Promise<boolean> =>
      lstat(f).then(
        () => true,
        () => false,
      );
    let had = 0;
    for (const f of files) {
      if (await exists(f)) had++;
      await rm(f, { force: true });
      if (await exists(f)) return { outcome: 'dirty', reason: `/${path.relative(this.root, f)} could not be removed` };
    }
    return had
      ? { outcome: 'ok', removed: { 'sudo-grant': { count: had, bytes: 0 } } }
      : { outcome: sudoGranted(policy) ? 'ok' : 'skipped' };
  }

  /** After every job and at preflight: the runner user must have no sudo rights, whatever the mode. */
  async verify(job: GuardJob | undefined, _policy: Policy, _ctx: GuardContext): Promise<GuardFinding[]> {
    const user = job?.user ?? this.user;
    if (!user) return [];
    const groups = await groupsOf(this.root, user);
    const rules = await sudoRights(this.root, { name: user.name, uid: user.uid, groups });
    return rules.map((r) => ({
      problem: `runner user ${user.name} has sudo rights outside a job: ${r}`,
      detail: { surface: 'sudo', object: r.split(':')[0], user: user.name, rule: r },
    }));
  }
}
