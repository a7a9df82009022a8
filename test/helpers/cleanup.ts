/** Shared fixtures of the cleanup tests: a slot inside a lab, a cleanup context, a secret scan. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { createEngine } from '@secretlint/node';
import type { Lab } from './lab.js';
import { DEFAULT_POLICY, type Policy } from '../../src/policy/types.js';
import { ManualClock } from '../../src/lib/clock.js';
import { silentLogger } from '../../src/lib/log.js';
import type { CleanupContext, Slot } from '../../src/cleanup/types.js';

/** The slot of the lab's runner user for a runner root and state dir (trash and job dirs in the state dir). */
export function slotAt(lab: Lab, runnerRoot: string, stateDir: string): Slot {
  return {
    index: 0,
    runnerRoot,
    workDir: path.join(runnerRoot, '_work'),
    user: { name: lab.user.name, uid: lab.user.uid, gid: lab.user.gid, home: lab.user.home },
    stateDir,
    trashDir: path.join(stateDir, 'trash'),
    jobRoot: path.join(stateDir, 'jobs'),
  };
}

/** A slot whose runner root, state, trash and job dirs all live in the lab. */
export async function makeSlot(lab: Lab, opts: { chownRoot?: boolean } = {}): Promise<Slot> {
  const runnerRoot = path.join(lab.root, 'runner');
  const stateDir = path.join(lab.root, 'state');
  await fsp.mkdir(runnerRoot, { mode: 0o755 });
  if (opts.chownRoot) await fsp.chown(runnerRoot, lab.user.uid, lab.user.gid);
  await fsp.mkdir(stateDir, { mode: 0o700 });
  return slotAt(lab, runnerRoot, stateDir);
}

/** A slot whose paths do not exist: for steps that never touch the filesystem (engine, pipeline order). */
export const NOWHERE_SLOT: Slot = {
  index: 0,
  runnerRoot: '/nonexistent/runner',
  workDir: '/nonexistent/runner/_work',
  user: { name: 'nobody', uid: 65534, gid: 65534, home: '/nonexistent' },
  stateDir: '/nonexistent/state',
  trashDir: '/nonexistent/state/trash',
  jobRoot: '/nonexistent/state/jobs',
};

/**
 * A cleanup context over the default policy (no temp dirs: tests never sweep the real /tmp), edited
 * by `edit`; `extra` sets or replaces other fields (clock, signal, jobStartedAt).
 */
export function ctxFor(
  slot: Slot,
  edit: (p: Policy) => void = () => {},
  dryRun = false,
  extra: Partial<CleanupContext> = {},
): CleanupContext {
  const policy = structuredClone(DEFAULT_POLICY);
  policy.cleanup.temp.paths = [];
  edit(policy);
  return {
    slot,
    policy: policy.cleanup,
    fullPolicy: policy,
    log: silentLogger(),
    clock: new ManualClock(Date.now()),
    signal: AbortSignal.timeout(60_000),
    dryRun,
    protectedPids: new Set([process.pid]),
    ...extra,
  };
}

/**
 * secretlint over every regular file of `root` (the recommended preset with the AWS
 * id rule, plus patterns for what it misses: docker auths, kube tokens, netrc passwords). Returns
 * the flagged files, relative to `root`.
 */
export async function scanSecrets(root: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) files.push(p);
    }
  };
  await walk(root);
  if (files.length === 0) return [];
  const engine = await createEngine({
    formatter: 'json',
    color: false,
    configFileJSON: {
      rules: [
        {
          id: '@secretlint/secretlint-rule-preset-recommend',
          rules: [{ id: '@secretlint/secretlint-rule-aws', options: { enableIDScanRule: true } }],
        },
        {
          id: '@secretlint/secretlint-rule-pattern',
          options: {
            patterns: [
              { name: 'docker auths', patterns: ['/"auth"\\s*:\\s*"[A-Za-z0-9+/=]{8,}"/'] },
              { name: 'kube token', patterns: ['/^\\s*token:\\s*\\S{20,}/m'] },
              { name: 'netrc password', patterns: ['/password\\s+\\S{12,}/'] },
            ],
          },
        },
      ],
    },
  });
  const result = await engine.executeOnFiles({ filePathList: files });
  const parsed = JSON.parse(result.output) as { filePath: string; messages: unknown[] }[];
  return parsed.filter((f) => f.messages.length > 0).map((f) => path.relative(root, f.filePath));
}

/** Every entry of a tree: type, mode, owner and content hash (links by target, never followed). */
export async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(root, rel);
    const st = await fsp.lstat(abs);
    let what = `${st.mode.toString(8)} ${st.uid}:${st.gid}`;
    if (st.isFile())
      what += ` ${createHash('sha256')
        .update(await fsp.readFile(abs))
        .digest('hex')}`;
    if (st.isSymbolicLink()) what += ` -> ${await fsp.readlink(abs)}`;
    out.set(rel, what);
    if (st.isDirectory()) for (const n of await fsp.readdir(abs)) await walk(path.join(rel, n));
  };
  await walk('');
  return out;
}
