import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { createProcessesStep } from '../../../src/cleanup/steps/processes.js';
import { processesOfUid } from '../../../src/cleanup/proc.js';
import { createProcessContainer, detectCgroupSupport, containedSpawnArgs } from '../../../src/lib/cgroup.js';
import { makeSlot, makeCtx, disposeLab, removeCgroupParents } from './safe-delete-canary.js';

let lab: Lab;
let other: Lab;

before(async () => {
  lab = await createLab('rw-procs-');
  other = await createLab('rw-procs-other-');
});

after(async () => {
  await disposeLab(lab);
  await disposeLab(other);
});

/**
 * A hostile job's persistence: a `setsid nohup` daemon with RUNNER_TRACKING_ID cleared, an
 * `exec -a` renamed respawner, a SIGTERM-ignoring loop, and a fork loop whose pid never stays.
 */
const PERSIST = `
export RUNNER_TRACKING_ID=
setsid nohup sleep 1000 >/dev/null 2>&1 &
setsid nohup bash -c 'while :; do (exec -a "[kworker/u8:2]" sleep 1000); done' >/dev/null 2>&1 &
setsid nohup bash -c 'trap "" TERM HUP; while :; do sleep 1; done' >/dev/null 2>&1 &
setsid nohup python3 -c '
import os, time
while True:
    time.sleep(0.002)
    if os.fork(): os._exit(0)
' >/dev/null 2>&1 &
`;

/** Real-time wait until the uid runs at least `n` live processes (setup only). */
async function waitForProcs(uid: number, n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await processesOfUid(uid)).length >= n) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`the job's processes did not start (uid ${uid})`);
}

test('a dry run lists the pids and names of the job processes and kills nothing', async () => {
  runAs(lab.user, 'setsid nohup sleep 1000 >/dev/null 2>&1 &');
  await waitForProcs(lab.user.uid, 1);
  const slot = await makeSlot(lab);
  const r = await createProcessesStep().run(makeCtx(slot, { dryRun: true }));
  assert.equal(r.outcome, 'ok');
  assert.ok(
    r.plan?.some((l) => /^process \d+ sleep$/.test(l)),
    `plan lacks the sleep: ${JSON.stringify(r.plan)}`,
  );
  assert.ok((await processesOfUid(lab.user.uid)).length >= 1, 'a dry run killed something');
});

test('daemons, renamed respawners, TERM-ignoring loops and fork loops of the runner user all die; other users survive', async () => {
  runAs(lab.user, PERSIST);
  runAs(other.user, 'setsid nohup sleep 1000 >/dev/null 2>&1 &');
  await waitForProcs(lab.user.uid, 5);
  await waitForProcs(other.user.uid, 1);
  const slot = await makeSlot(lab);
  const r = await createProcessesStep().run(makeCtx(slot));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.ok((r.removed.process?.count ?? 0) >= 5, `counted ${r.removed.process?.count} processes`);
  assert.deepEqual(await processesOfUid(lab.user.uid), [], 'a process of the runner user survived');
  assert.equal((await processesOfUid(other.user.uid)).length, 1, "another user's process was touched");
});

test('without kill(-1) (a protected process shares the uid) the stop-the-world sweep still wins, and the protected pid survives', async () => {
  const keeper = spawn('sleep', ['1000'], { uid: lab.user.uid, gid: lab.user.gid, stdio: 'ignore' });
  assert.ok(keeper.pid);
  runAs(lab.user, PERSIST);
  await waitForProcs(lab.user.uid, 6);
  const slot = await makeSlot(lab);
  const protectedPids = new Set([process.pid, keeper.pid]);
  const r = await createProcessesStep().run(makeCtx(slot, { protectedPids }));
  const left = await processesOfUid(lab.user.uid);
  assert.deepEqual(
    left.map((p) => p.pid),
    [keeper.pid],
    'only the protected process may remain',
  );
  assert.equal(r.outcome, 'ok', r.reason);
  keeper.kill('SIGKILL');
});

test('when the cleanup signal has already fired the step stops at once and reports the survivors as dirty', async () => {
  // The loop says when its trap is set: a sweep that comes sooner kills it with SIGTERM (the scan
  // that finds it takes a few ms), and there would be no survivor to report.
  const ready = path.join(lab.user.home, 'trap-set');
  runAs(lab.user, `setsid nohup bash -c 'trap "" TERM; touch ${ready}; while :; do sleep 1; done' >/dev/null 2>&1 &`);
  for (let i = 0; i < 500 && !existsSync(ready); i++) await new Promise((r) => setTimeout(r, 10));
  await waitForProcs(lab.user.uid, 1);
  const slot = await makeSlot(lab);
  const r = await createProcessesStep().run(makeCtx(slot, { signal: AbortSignal.abort() }));
  assert.equal(r.outcome, 'dirty', 'an aborted sweep with survivors must not say ok');
  assert.match(r.reason ?? '', /survive/);
  await createProcessesStep().run(makeCtx(slot));
});

for (const kind of ['v2', 'v1-freezer'] as const) {
  test(`the slot's ${kind} cgroup is emptied through the cgroup and its members are counted`, async (t) => {
    const support = await detectCgroupSupport();
    if ((kind === 'v2' ? support.v2 : support.v1Freezer) === undefined) {
      t.skip(`no ${kind} hierarchy here`);
      return;
    }
    const c = await createProcessContainer(`rwtest-${randomBytes(4).toString('hex')}-proc`, { prefer: [kind], support });
    assert.equal(c.kind, kind);
    try {
      const { cmd, args } = containedSpawnArgs(c, lab.user, 'bash', ['-c', 'sleep 1000 & sleep 1000 & wait']);
      const child = spawn(cmd, args, { stdio: 'ignore' });
      assert.ok(child.pid);
      await waitForProcs(lab.user.uid, 3);
      const slot = await makeSlot(lab, { cgroup: c.path });
      const r = await createProcessesStep({ killAsUser: false }).run(makeCtx(slot));
      assert.equal(r.outcome, 'ok', r.reason);
      assert.ok((r.removed.process?.count ?? 0) >= 3, 'the cgroup members were not counted');
      assert.deepEqual(await c.pids(), [], 'the cgroup still has members');
      assert.deepEqual(await processesOfUid(lab.user.uid), []);
    } finally {
      await c.remove();
      await removeCgroupParents(support);
    }
  });
}

test('a scan never comes back empty while a fork loop of the uid runs (a process that forks and exits while read leaves its child listed)', async () => {
  runAs(lab.user, `setsid nohup python3 -c 'import os\nwhile True:\n    if os.fork(): os._exit(0)' >/dev/null 2>&1 &`);
  await waitForProcs(lab.user.uid, 1);
  let empty = 0;
  for (let i = 0; i < 300; i++) if ((await processesOfUid(lab.user.uid)).length === 0) empty++;
  const slot = await makeSlot(lab);
  const r = await createProcessesStep().run(makeCtx(slot));
  assert.equal(empty, 0, `${empty} of 300 scans saw no process of the uid while its fork loop ran`);
  assert.equal(r.outcome, 'ok', r.reason);
});
