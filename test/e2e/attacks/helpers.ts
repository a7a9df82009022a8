/**
 * The hostile-job harness (docs/hostile-jobs.md): a world with the real agent and a reused
 * host (runner.maxJobs 2), a canary tree outside every policy path, the hostile job, then a second
 * job that looks for every trace of the first (probe.ts) and drops what it found, then checks from
 * outside as root. `attack()` runs it; `assertNoTrace()` / `assertNotReused()` state the outcome.
 */
import assert from 'node:assert/strict';
import { promises as fsp, type Stats } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import http from 'node:http';
import type { TestContext } from 'node:test';
import { stringify } from 'yaml';
import { createWorld, jobRecords, testPolicy, type World, type WorldOptions } from '../../helpers/world.js';
import type { Lab } from '../../helpers/lab.js';
import type { Runtime } from '../../../src/cli/wire.js';
import type { JobStep } from '../../../src/sim/github/types.js';
import type { JournalRecord } from '../../../src/agent/journal.js';
import { processesOfUid } from '../../../src/cleanup/proc.js';
import { PROBE_PY } from './probe.js';

/** A job record of the journal. */
export type JobRec = Extract<JournalRecord, { type: 'job' }>;

/**
 * How long one attack's agent may run: a hang bound, not a target. Two jobs and two cleanups take
 * 3-6 s on a quiet host, but a job that runs a slow tool several times (the aws CLI six times) took
 * 90 s with the machine's load at 27 on two cores.
 */
export const AGENT_RUN_LIMIT_MS = 240_000;

/** How often the harness looks whether the agent quarantined the host (then it stops the agent). */
const QUARANTINE_POLL_MS = 100;

/** How long a hostile job waits for the test to act mid-job (handshake) before going on without it. */
const HANDSHAKE_WAIT_S = 30;

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A random token of `n` characters of `alphabet` (realistic formats make secretlint's rules fire). */
export function token(n: number, alphabet = ALNUM): string {
  return [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** What a hostile job and the test share: paths and the job's unique marker. */
export interface AttackCtx {
  w: World;
  /** A unique string the hostile job writes into everything it leaves (names, contents, argv). */
  marker: string;
  realHome: string;
  canary: string;
  sys: { tmp: string; varTmp: string; shm: string };
  work: string;
  /** The health server's address (set once the runtime exists). */
  health: { host: string; port: number };
  /** Canary directories whose mtime the hostile job itself changes (never their contents). */
  jobTouches: string[];
}

/** The bash lines every hostile step starts with: the variables of AttackCtx, and the job's dirs. */
function preamble(c: AttackCtx): string {
  return [
    `DROP=${c.w.dropDir}`,
    `MARK=${c.marker}`,
    'REAL_HOME=$(getent passwd "$(id -un)" | cut -d: -f6)',
    `CANARY=${c.canary}`,
    `SYS_TMP=${c.sys.tmp}`,
    `SYS_VARTMP=${c.sys.varTmp}`,
    `SYS_SHM=${c.sys.shm}`,
    `WORK=${c.work}`,
    `RUNNER_ROOT=${c.w.runnerRoot}`,
    `HEALTH=${c.health.host}:${c.health.port}`,
    'export DROP MARK REAL_HOME CANARY SYS_TMP SYS_VARTMP SYS_SHM WORK RUNNER_ROOT HEALTH',
    // The per-job dirs are not secret; the probe checks they are gone.
    'printf "%s\\n" "$HOME" "$TMPDIR" "$DOCKER_CONFIG" >> "$DROP/job1-dirs"',
    // Lets the test act while the job runs (mounts, chattr): ready-<tag>, then wait for go-<tag>.
    `handshake() { : > "$DROP/ready-$1"; for i in $(seq 1 ${HANDSHAKE_WAIT_S * 10}); do [ -e "$DROP/go-$1" ] && return 0; sleep 0.1; done; return 0; }`,
    '',
  ].join('\n');
}

/** One snapshot line per entry: type, mode, owner, size, content hash or link target (mtime optional). */
export async function treeSnapshot(root: string, o: { mtimes?: boolean } = {}): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const rootB = Buffer.from(root);
  const stack: Buffer[] = [Buffer.alloc(0)];
  while (stack.length > 0) {
    const rel = stack.pop() as Buffer;
    const abs = rel.length === 0 ? rootB : Buffer.concat([rootB, Buffer.from('/'), rel]);
    let st: Stats;
    try {
      st = await fsp.lstat(abs);
    } catch (err) {
      out.set(rel.toString('latin1'), `unreadable ${(err as NodeJS.ErrnoException).code}`);
      continue;
    }
    let line = `${typeOf(st)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    if (st.isFile())
      line += ` ${st.size} ${createHash('sha256')
        .update(await fsp.readFile(abs))
        .digest('hex')}`;
    if (st.isSymbolicLink()) line += ` -> ${(await fsp.readlink(abs, { encoding: 'buffer' })).toString('latin1')}`;
    if (o.mtimes && !st.isSymbolicLink()) line += ` m${st.mtimeMs}`;
    out.set(rel.toString('latin1'), line);
    if (st.isDirectory()) {
      let names: Buffer[] = [];
      try {
        names = await fsp.readdir(abs, { encoding: 'buffer' });
      } catch (err) {
        out.set(rel.toString('latin1'), `${line} unlistable ${(err as NodeJS.ErrnoException).code}`);
      }
      for (const n of names) stack.push(rel.length === 0 ? n : Buffer.concat([rel, Buffer.from('/'), n]));
    }
  }
  return out;
}

function typeOf(st: Stats): string {
  if (st.isDirectory()) return 'd';
  if (st.isFile()) return 'f';
  if (st.isSymbolicLink()) return 'l';
  if (st.isFIFO()) return 'p';
  if (st.isSocket()) return 's';
  return 'o';
}

/** Lines that differ between two snapshots (`+` new, `-` gone, `~` changed). */
export function diffSnapshots(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of before) {
    const a = after.get(k);
    if (a === undefined) out.push(`- ${JSON.stringify(k)} (${v})`);
    else if (a !== v) out.push(`~ ${JSON.stringify(k)}: ${v} => ${a}`);
  }
  for (const [k, v] of after) if (!before.has(k)) out.push(`+ ${JSON.stringify(k)} (${v})`);
  return out;
}

/**
 * The canary: `<lab>/canary`, outside every policy path, with root-owned and runner-owned files
 * and directories of many modes (000 included), a symlink, a sticky dir. Hostile jobs point
 * symlinks and hard links at it; the agent must leave every byte, mode and mtime as it was.
 */
export async function makeCanary(lab: Lab): Promise<string> {
  const c = path.join(lab.root, 'canary');
  const { uid, gid } = lab.user;
  const file = async (rel: string, mode: number, data: string | Buffer, owner?: boolean): Promise<void> => {
    await fsp.writeFile(path.join(c, rel), data);
    if (owner) await fsp.chown(path.join(c, rel), uid, gid);
    await fsp.chmod(path.join(c, rel), mode);
  };
  const dir = async (rel: string, mode: number, owner?: boolean): Promise<void> => {
    await fsp.mkdir(path.join(c, rel));
    if (owner) await fsp.chown(path.join(c, rel), uid, gid);
  };
  await fsp.mkdir(c, { mode: 0o755 });
  await file('plain.txt', 0o644, 'canary: plain\n');
  await file('secret.key', 0o600, randomBytes(64));
  await file('exec.sh', 0o755, '#!/bin/sh\necho canary\n');
  await file('ro.txt', 0o444, 'canary: read-only\n');
  await dir('dir', 0o755);
  await dir('dir/nested', 0o700);
  await file('dir/nested/deep.txt', 0o640, 'canary: deep\n');
  await file('dir/one.txt', 0o644, 'canary: one\n');
  await dir('locked', 0o755);
  await file('locked/inside.txt', 0o644, 'canary: locked\n');
  await fsp.symlink('plain.txt', path.join(c, 'link'));
  // Runner-owned entries: a cleaner that deletes "files of the runner user" anywhere removes these.
  await dir('user', 0o755, true);
  await file('user/user.txt', 0o644, 'canary: runner-owned\n', true);
  await file('user/ro.txt', 0o444, 'canary: runner-owned read-only\n', true);
  await dir('user/sub', 0o755, true);
  await file('user/sub/f', 0o600, 'canary: runner-owned nested\n', true);
  // A runner-owned stand-in for _work (attack 12 swaps _work for a symlink to it): what the worker
  // needs in a workspace, and a file of the canary's own.
  await dir('user-work', 0o755, true);
  await dir('user-work/app', 0o755, true);
  await dir('user-work/app/app', 0o755, true);
  await file('user-work/app/app/keep.txt', 0o644, 'canary: inside the fake _work\n', true);
  // The worker of the swapping job itself empties (and first creates) _work/_temp at its end.
  await dir('user-work/_temp', 0o755, true);
  await dir('sticky', 0o755);
  await file('sticky/user-file', 0o644, 'canary: runner-owned in sticky\n', true);
  // Modes last: a 000 directory and a 1777 sticky one.
  await fsp.chmod(path.join(c, 'dir'), 0o755);
  await fsp.chmod(path.join(c, 'dir', 'nested'), 0o700);
  await fsp.chmod(path.join(c, 'sticky'), 0o1777);
  await fsp.chmod(path.join(c, 'locked'), 0o000);
  return c;
}

/** The real home as the probe describes it (type, mode, sha256 or link target), keyed by latin1 path. */
async function probeBaseline(home: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const snap = await treeSnapshot(home);
  for (const [rel] of snap) {
    if (rel === '') continue;
    const abs = Buffer.concat([Buffer.from(home), Buffer.from('/'), Buffer.from(rel, 'latin1')]);
    const st = await fsp.lstat(abs);
    let extra = '';
    if (st.isFile())
      extra = createHash('sha256')
        .update(await fsp.readFile(abs))
        .digest('hex');
    if (st.isSymbolicLink()) extra = (await fsp.readlink(abs, { encoding: 'buffer' })).toString('utf8');
    out[rel] = `${typeOf(st)} ${(st.mode & 0o7777).toString(8)} ${extra}`;
  }
  return out;
}

import { scanSecrets } from '../../helpers/cleanup.js';

export { scanSecrets };

/** Waits (polling, real time: the job is a real process) for the hostile job's `handshake <tag>`. */
export async function whenJobReady(c: AttackCtx, tag: string, signal: AbortSignal): Promise<boolean> {
  const ready = path.join(c.w.dropDir, `ready-${tag}`);
  while (!signal.aborted) {
    try {
      await fsp.access(ready);
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return false;
}

/** Lets the hostile job go on after `handshake <tag>`. */
export async function releaseJob(c: AttackCtx, tag: string): Promise<void> {
  await fsp.writeFile(path.join(c.w.dropDir, `go-${tag}`), '');
}

/** Mount points under `root` in the test's own mount namespace, deepest first. */
export function mountsUnder(root: string): string[] {
  const text = execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'latin1' });
  return text
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .map((mp) => mp.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((mp) => mp.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
}

/** `over` merged into `base`, objects key by key (arrays and scalars replace). */
function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    const plain = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
    out[k] = plain(b) && plain(v) ? deepMerge(b, v) : v;
  }
  return out;
}

/** Options of attack(). */
export interface AttackOptions {
  /** The hostile job's steps (each gets the preamble). */
  hostile: (c: AttackCtx) => JobStep[];
  /** Extra bash for the second job: print one line per trace found (stdout only). */
  probeExtra?: (c: AttackCtx) => string;
  /** Strings the second job must not find anywhere (the marker is always one). */
  needles?: string[];
  /** Paths that must not exist when the second job runs. */
  absent?: (c: AttackCtx) => string[];
  /** More directories for the second job to search for needles. */
  extraRoots?: (c: AttackCtx) => string[];
  /** Policy fields merged over testPolicy(lab); may read the lab. */
  policy?: (c: AttackCtx) => Record<string, unknown>;
  world?: WorldOptions;
  /** Runs before the runtime is built (dockerd, registries, root files in temp dirs). */
  setup?: (c: AttackCtx) => Promise<void>;
  /** Runs while the agent runs (mid-job actions as root, health polling); aborted when it stops. */
  during?: (c: AttackCtx, signal: AbortSignal) => Promise<void>;
  /** The second job's steps instead of the probe (attack 19). */
  secondJob?: (c: AttackCtx) => JobStep[];
  /** Also run the probe at the end of the hostile job itself (probe-self.json): the harness's self-check. */
  selfCheck?: boolean;
  runLimitMs?: number;
}

/** What an attack left for the assertions. */
export interface AttackResult {
  c: AttackCtx;
  rt: Runtime;
  exit: { code: number; reason: string };
  records: JournalRecord[];
  jobs: JobRec[];
  /** The second job's findings (undefined when it never ran). */
  probe?: Record<string, string[]>;
  /** With selfCheck: what the probe found at the end of the hostile job itself. */
  selfProbe?: Record<string, string[]>;
  extra: string;
  canaryBefore: Map<string, string>;
  homeBefore: Map<string, string>;
  tempBefore: Map<string, string>[];
  needles: string[];
}

/** Runs the hostile job and the probe job through the real agent on one reused host. */
export async function attack(t: TestContext, o: AttackOptions): Promise<AttackResult> {
  const w = await createWorld({ ...o.world, runner: { maxJobs: 2, ...o.world?.runner } });
  t.after(async () => {
    // A mount left under the lab (a failed test) must go before the lab is deleted through it.
    for (const mp of mountsUnder(w.lab.root)) {
      try {
        execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    await w.dispose();
  });
  const c: AttackCtx = {
    w,
    marker: `rwmark${randomBytes(6).toString('hex')}`,
    realHome: w.lab.user.home,
    canary: '',
    sys: {
      tmp: path.join(w.lab.root, 'sys', 'tmp'),
      varTmp: path.join(w.lab.root, 'sys', 'var-tmp'),
      shm: path.join(w.lab.root, 'sys', 'shm'),
    },
    work: path.join(w.runnerRoot, '_work'),
    health: { host: '127.0.0.1', port: 0 },
    jobTouches: [],
  };
  c.canary = await makeCanary(w.lab);
  await fsp.writeFile(path.join(w.policyDir, 'test.yaml'), stringify(deepMerge(testPolicy(w.lab), o.policy?.(c) ?? {})));
  await o.setup?.(c);
  const rt = await w.runtime();
  if (rt.health) c.health = rt.health.address;
  const canaryBefore = await treeSnapshot(c.canary, { mtimes: true });
  const homeBefore = await treeSnapshot(c.realHome);
  const tempBefore = await Promise.all([c.sys.tmp, c.sys.varTmp, c.sys.shm].map((d) => treeSnapshot(d, { mtimes: false })));
  const needles = [c.marker, ...(o.needles ?? [])];

  const cfg = {
    needles,
    out: path.join(w.dropDir, 'probe.json'),
    realHome: c.realHome,
    home: await probeBaseline(c.realHome),
    work: c.work,
    workAllow: [
      '_temp',
      '_temp/_runner_file_commands',
      '_temp/_runner_file_commands/[a-z_]+_[0-9a-f-]{36}',
      '_temp/_github_workflow',
      '_temp/_github_workflow/event\\.json',
      '_temp/_github_home',
      '_temp/_runner_hook_responses(/.*)?',
      '_PipelineMapping',
      '_PipelineMapping/octo',
      '_PipelineMapping/octo/app',
      '_PipelineMapping/octo/app/PipelineFolder\\.json',
      'app',
      'app/app',
    ],
    temp: [c.sys.tmp, c.sys.varTmp, c.sys.shm],
    runnerRoot: w.runnerRoot,
    // _work is walked on its own; _diag holds the runner's own logs (a test of its own covers it).
    runnerSkip: [c.work, path.join(w.runnerRoot, '_diag')],
    extraRoots: o.extraRoots?.(c) ?? [],
    absent: o.absent?.(c) ?? [],
    job1Dirs: path.join(w.dropDir, 'job1-dirs'),
  };
  const probeStep = (out: string): JobStep => {
    const b64 = Buffer.from(JSON.stringify({ ...cfg, out })).toString('base64');
    return { name: 'look for traces', run: `python3 - "$0" <<'PY'\nCFG = '${b64}'\n${PROBE_PY}\nPY\n` };
  };
  w.fake.enqueueJob({
    repository: 'octo/app',
    runId: 1,
    job: 'hostile',
    steps: [
      ...o.hostile(c).map((s) => ({ name: s.name, run: preamble(c) + s.run })),
      ...(o.selfCheck ? [probeStep(path.join(w.dropDir, 'probe-self.json'))] : []),
    ],
  });
  const probe: JobStep[] = o.secondJob?.(c) ?? [
    probeStep(cfg.out),
    ...(o.probeExtra
      ? [
          {
            name: 'look for more traces',
            run: `DROP=${w.dropDir}\nREAL_HOME=${c.realHome}\n{\n${o.probeExtra(c)}\n} > ${w.dropDir}/extra.txt 2>/dev/null || true\n`,
          },
        ]
      : []),
  ];
  w.fake.enqueueJob({ repository: 'octo/app', runId: 2, job: 'probe', steps: probe });

  const stopDuring = new AbortController();
  const during = o.during?.(c, stopDuring.signal);
  // Without a recycle provider a quarantined agent waits (health 503) until it is stopped: stop it
  // once it says so, as an operator would; the decision is already in the journal then.
  const stopAgent = new AbortController();
  const watch = (async () => {
    while (!stopAgent.signal.aborted && !stopDuring.signal.aborted) {
      if (rt.agent.snapshot().quarantined) {
        stopAgent.abort();
        return;
      }
      await new Promise((res) => setTimeout(res, QUARANTINE_POLL_MS));
    }
  })();
  let exit: { code: number; reason: string };
  try {
    exit = await rt.agent.run(AbortSignal.any([AbortSignal.timeout(o.runLimitMs ?? AGENT_RUN_LIMIT_MS), stopAgent.signal]));
  } finally {
    stopDuring.abort();
    await during;
    await watch;
    await rt.close();
  }
  const records = await w.journal();
  let probeOut: Record<string, string[]> | undefined;
  try {
    probeOut = JSON.parse(await fsp.readFile(cfg.out, 'utf8')) as Record<string, string[]>;
  } catch {
    probeOut = undefined;
  }
  const extra = await fsp.readFile(path.join(w.dropDir, 'extra.txt'), 'utf8').catch(() => '');
  const self = await fsp.readFile(path.join(w.dropDir, 'probe-self.json'), 'utf8').catch(() => undefined);
  return {
    c,
    rt,
    exit,
    records,
    jobs: jobRecords(records),
    ...(probeOut ? { probe: probeOut } : {}),
    ...(self ? { selfProbe: JSON.parse(self) as Record<string, string[]> } : {}),
    extra,
    canaryBefore,
    homeBefore,
    tempBefore,
    needles,
  };
}

/** The last lines of the runner's worker logs (the jobs' output), for failure messages. */
export async function diagTail(r: AttackResult, lines = 40): Promise<string> {
  const dir = path.join(r.c.w.runnerRoot, '_diag');
  const names = (await fsp.readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith('Worker_')).sort();
  let text = '';
  for (const n of names) text += await fsp.readFile(path.join(dir, n), 'utf8');
  return text.split('\n').slice(-lines).join('\n');
}

function why(j: JobRec | undefined): string {
  if (!j) return 'no job record';
  const bad = j.cleanup.steps
    .filter((s) => s.outcome !== 'ok' && s.outcome !== 'skipped')
    .map((s) => `${s.name}: ${s.outcome} ${s.reason ?? ''}`);
  return `decision ${j.decision} (${j.decisionReason}); steps: ${bad.join('; ') || 'all ok'}; verify: ${j.cleanup.verify.problems.slice(0, 12).join(' | ')}`;
}

/** The canary is byte for byte, mode for mode, mtime for mtime what it was. */
export async function assertCanary(r: AttackResult): Promise<void> {
  const after = await treeSnapshot(r.c.canary, { mtimes: true });
  // The one directory a hostile job changes by itself (attack 12, the worker empties _work/_temp
  // through the job's own symlink): its mtime may move, its (empty) contents may not.
  for (const rel of r.c.jobTouches) {
    const a = after.get(rel);
    const b = r.canaryBefore.get(rel);
    if (a && b && a.replace(/ m[0-9.]+$/, '') === b.replace(/ m[0-9.]+$/, '')) after.set(rel, b);
  }
  const d = diffSnapshots(r.canaryBefore, after);
  assert.deepEqual(d, [], `the agent touched the canary outside every policy path:\n${d.join('\n')}`);
}

/**
 * The attack was defeated on a reused host: the first job planted what it meant to (its result),
 * the agent called the host clean and reused it, the second job found no trace, and from outside
 * nothing of either job is left while the canary is untouched.
 */
export async function assertNoTrace(r: AttackResult, o: { firstResult?: string } = {}): Promise<void> {
  const [j1, j2] = r.jobs;
  assert.equal(r.jobs.length, 2, `both jobs should have run on the reused host (exit: ${r.exit.reason}); first job: ${why(j1)}`);
  assert.equal(
    j1?.result,
    o.firstResult ?? 'Succeeded',
    `the hostile job did not plant what it meant to (result ${j1?.result}):\n${await diagTail(r)}`,
  );
  assert.equal(j1?.cleanup.clean, true, `cleanup after the hostile job is not clean: ${why(j1)}`);
  assert.equal(j1?.decision, 'reuse', `the host should be reused after a clean cleanup: ${why(j1)}`);
  assert.equal(j2?.result, 'Succeeded', 'the probe job failed (probe script broken?)');
  assert.equal(j2?.cleanup.clean, true, `cleanup after the probe job is not clean: ${why(j2)}`);
  assert.ok(r.probe, 'the probe job wrote no findings');
  const found = Object.entries(r.probe).filter(([, v]) => v.length > 0);
  assert.deepEqual(
    found.map(([k, v]) => `${k}: ${v.slice(0, 10).join(' || ')}`),
    [],
    'the second job found traces of the first',
  );
  assert.equal(r.extra.trim(), '', `the second job's own checks found traces:\n${r.extra}`);
  await assertHostClean(r);
}

/** From outside, as root: nothing of the runner user runs or remains, home is baseline, canary untouched. */
export async function assertHostClean(r: AttackResult): Promise<void> {
  const { c } = r;
  const procs = await processesOfUid(c.w.lab.user.uid);
  assert.deepEqual(
    procs.map((p) => `${p.pid} ${p.comm}`),
    [],
    'processes of the runner user survived the agent',
  );
  const home = diffSnapshots(r.homeBefore, await treeSnapshot(c.realHome));
  assert.deepEqual(home, [], 'the real home differs from its state before the jobs');
  const work = await fsp.readdir(c.work).catch(() => [] as string[]);
  assert.deepEqual(work, [], '_work is not empty after the last cleanup');
  const temps = [c.sys.tmp, c.sys.varTmp, c.sys.shm];
  for (let i = 0; i < temps.length; i++) {
    const d = diffSnapshots(r.tempBefore[i] as Map<string, string>, await treeSnapshot(temps[i] as string));
    assert.deepEqual(d, [], `temp dir ${temps[i]} differs from before the jobs (leftover, or someone else's file removed)`);
  }
  await assert.rejects(fsp.lstat(path.join('/var/spool/cron/crontabs', c.w.lab.user.name)), 'the runner user still has a crontab');
  assert.deepEqual(mountsUnder(c.w.lab.root), [], 'a mount is left under the lab');
  assert.deepEqual(await scanSecrets(c.realHome), [], 'secretlint finds credentials in the real home');
  await assertCanary(r);
}

/**
 * The host was not reused: the first job's cleanup ended in quarantine or recycle, no second job
 * ran (it is still queued), and the canary is untouched.
 */
export async function assertNotReused(r: AttackResult): Promise<void> {
  const [j1] = r.jobs;
  assert.equal(
    r.jobs.length,
    1,
    `exactly one job may run on this host; records: ${r.jobs.map((j) => `${j.job.job}: ${j.decision}`).join(', ')}`,
  );
  assert.ok(
    j1?.decision === 'quarantine' || j1?.decision === 'recycle',
    `the host must be quarantined or recycled, not ${j1?.decision}: ${why(j1)}`,
  );
  const second = r.c.w.fake.jobs().find((j) => j.job.runId === '2');
  assert.equal(second?.status, 'queued', 'the second job must stay queued: the host may not take it');
  assert.equal(r.probe, undefined, 'the probe job ran on a host that should not be reused');
  await assertCanary(r);
}

/**
 * Either outcome defeats a trap: the host is cleaned and reused (then nothing may be left), or
 * the agent calls it dirty and does not reuse it. The canary is untouched in both.
 */
export async function assertDefeated(t: TestContext, r: AttackResult): Promise<void> {
  t.diagnostic(`decision after the hostile job: ${r.jobs[0]?.decision} (${r.jobs[0]?.decisionReason})`);
  if (r.jobs.length === 2) await assertNoTrace(r);
  else await assertNotReused(r);
}

/** Runs `cmd` as root for a mid-job action (the test plays a privileged job); false, said why, when the host refuses. */
export function asRoot(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'pipe' });
    return true;
  } catch (err) {
    process.stderr.write(`# ${cmd} ${args.join(' ')} failed: ${String(err)}\n`);
    return false;
  }
}
/**
 * GET a health path on a connection of its own; resolves with status and latency, or an error
 * string (no throw). A fresh connection per poll: a pooled keep-alive socket that the server's idle
 * deadline closes just as the next poll reuses it fails on the client's side, which says nothing
 * of whether the endpoint answers.
 */
export function healthGet(c: AttackCtx, p: string, timeoutMs: number): Promise<{ status?: number; ms: number; error?: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.get({ host: c.health.host, port: c.health.port, path: p, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ ...(res.statusCode !== undefined ? { status: res.statusCode } : {}), ms: performance.now() - started }),
      );
      res.on('error', (err) => resolve({ ms: performance.now() - started, error: String(err) }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ms: performance.now() - started, error: String(err) }));
  });
}
