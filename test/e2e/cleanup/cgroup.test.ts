import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import {
  createProcessContainer,
  detectCgroupSupport,
  containedSpawnArgs,
  openProcessContainer,
  type CgroupSupport,
} from '../../../src/lib/cgroup.js';
import { processesOfUid } from '../../../src/cleanup/proc.js';
import { disposeLab, removeCgroupParents } from './safe-delete-canary.js';

let lab: Lab;
let support: CgroupSupport;
const prefix = `rwtest-${randomBytes(4).toString('hex')}`;

before(async () => {
  lab = await createLab('rw-cgroup-');
  support = await detectCgroupSupport();
});

after(async () => {
  await disposeLab(lab);
  await removeCgroupParents(support);
});

/** A fork loop that also respawns: it keeps making children faster than a naive pid sweep. */
const FORK_LOOP = `
while :; do
  (sleep 1000 &) ; sleep 0.01
done`;

test('mountinfo with a cgroup2 and a v1 freezer hierarchy is understood', async () => {
  const file = path.join(lab.root, 'mountinfo');
  await fsp.writeFile(
    file,
    [
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer',
      '41 31 0:38 / /sys/fs/cgroup/uni\\040fied rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n'),
  );
  assert.deepEqual(await detectCgroupSupport(file), { v1Freezer: '/sys/fs/cgroup/freezer', v2: '/sys/fs/cgroup/uni fied' });
  assert.deepEqual(await detectCgroupSupport(path.join(lab.root, 'absent')), {}, 'no mountinfo must mean no cgroups, not a throw');
});

for (const kind of ['v2', 'v1-freezer'] as const) {
  test(`a ${kind} container holds a fork loop started inside it and killAll empties it`, async (t) => {
    if ((kind === 'v2' ? support.v2 : support.v1Freezer) === undefined) {
      t.skip(`no ${kind} hierarchy on this host`);
      return;
    }
    const c = await createProcessContainer(`${prefix}-${kind}`, { prefer: [kind], support });
    assert.equal(c.kind, kind);
    assert.ok(c.path && existsSync(c.path), 'the cgroup directory was not created');
    try {
      const { cmd, args } = containedSpawnArgs(c, lab.user, 'bash', ['-c', FORK_LOOP]);
      const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
      assert.ok(child.pid);
      // The loop's subshell and its `sleep 0.01` come and go (at most two at a time), so the count
      // is read once per pass and the test waits for six members: at least four of them (bash and
      // three `sleep 1000`) stay until killAll.
      let members: number[] = [];
      for (let i = 0; i < 300; i++) {
        members = await c.pids();
        if (members.length >= 6) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(members.length >= 6, `the fork loop's children are not in the cgroup: ${members.length}`);
      const seen = await processesOfUid(lab.user.uid);
      const inside = new Set(await c.pids());
      for (const p of seen) {
        assert.ok(inside.has(p.pid) || !existsSync(`/proc/${p.pid}`), `process ${p.pid} (${p.comm}) escaped the container`);
      }
      const killed = await c.killAll();
      assert.ok(killed.length >= 4, `killAll reported ${killed.length} pids`);
      assert.deepEqual(await c.pids(), [], 'members left after killAll');
      assert.deepEqual(await processesOfUid(lab.user.uid), [], 'a process of the fork loop survived');
    } finally {
      await c.remove();
    }
    assert.equal(existsSync(c.path ?? ''), false, 'remove() left the cgroup directory');
  });
}

test('openProcessContainer tells v2 from v1 by the files present', async (t) => {
  if (!support.v1Freezer) {
    t.skip('no v1 freezer');
    return;
  }
  const c = await createProcessContainer(`${prefix}-open`, { prefer: ['v1-freezer'], support });
  try {
    assert.equal(openProcessContainer(c.path as string).kind, 'v1-freezer');
  } finally {
    await c.remove();
  }
});

test('without any usable hierarchy the container is kind none and every call is a no-op', async () => {
  const c = await createProcessContainer(`${prefix}-none`, { support: {} });
  assert.equal(c.kind, 'none');
  assert.equal(c.path, undefined);
  await c.add(process.pid);
  assert.deepEqual(await c.pids(), []);
  assert.deepEqual(await c.killAll(), []);
  await c.remove();
  const { cmd, args } = containedSpawnArgs(c, { uid: 1, gid: 1 }, 'true', []);
  assert.equal(cmd, 'setpriv', 'without a cgroup the command only drops privileges');
  assert.deepEqual(args.slice(-2), ['--', 'true']);
});

test('an invalid container name is refused before anything is created', async () => {
  await assert.rejects(createProcessContainer('../escape', { support }), /invalid cgroup name/);
});
