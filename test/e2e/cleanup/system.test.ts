import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { createSystemStep } from '../../../src/cleanup/steps/system.js';
import type { Slot } from '../../../src/cleanup/types.js';
import { makeSlot, makeCtx, disposeLab } from './safe-delete-canary.js';

let lab: Lab;
let other: Lab;
let lingerDir: string;
let mqueueDir: string;

before(async () => {
  lab = await createLab('rw-system-');
  other = await createLab('rw-system-other-');
  lingerDir = path.join(lab.root, 'linger');
  mqueueDir = path.join(lab.root, 'mqueue');
  await fsp.mkdir(lingerDir);
  await fsp.mkdir(mqueueDir, { mode: 0o1777 });
  await fsp.chmod(mqueueDir, 0o1777);
});

after(async () => {
  // The other user's at jobs and IPC objects are not removed by dispose(): clean them here.
  const otherSlot = await makeSlot(other);
  await createSystemStep({ lingerDir, mqueueDir }).run(makeCtx(otherSlot));
  await createSystemStep({ lingerDir, mqueueDir }).run(makeCtx(await makeSlot(lab)));
  await disposeLab(lab);
  await disposeLab(other);
});

/** The persistence a job leaves outside its files: crontab, at job, SysV IPC, linger, mqueue. */
function plant(l: Lab): void {
  runAs(
    l.user,
    `echo '* * * * * touch $HOME/cron-was-here' | crontab - && echo 'touch $HOME/at-was-here' | at now + 1 hour 2>/dev/null
ipcmk -M 4096 >/dev/null && ipcmk -Q >/dev/null && ipcmk -S 2 >/dev/null
echo q > ${mqueueDir}/${l.user.name}.q`,
  );
}

function crontabOf(name: string): string | undefined {
  try {
    return execFileSync('crontab', ['-l', '-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined;
  }
}

function atJobsOf(name: string): number {
  const out = execFileSync('atq', [], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim().split(/\s+/).pop() === name).length;
}

async function ipcOf(uid: number): Promise<number> {
  let n = 0;
  for (const f of ['shm', 'msg', 'sem']) {
    const [header, ...rows] = (await fsp.readFile(`/proc/sysvipc/${f}`, 'utf8')).split('\n');
    const cols = (header ?? '').trim().split(/\s+/);
    const u = cols.indexOf('uid');
    n += rows.filter((r) => r.trim() && Number(r.trim().split(/\s+/)[u]) === uid).length;
  }
  return n;
}

let slot: Slot;

test('a dry run lists the crontab, the at job, the IPC objects, the linger flag and the mqueue, and removes nothing', async () => {
  plant(lab);
  plant(other);
  await fsp.writeFile(path.join(lingerDir, lab.user.name), '');
  slot = await makeSlot(lab);
  const r = await createSystemStep({ lingerDir, mqueueDir }).run(makeCtx(slot, { dryRun: true }));
  assert.equal(r.outcome, 'ok');
  const plan = (r.plan ?? []).join('\n');
  for (const want of ['crontab of', 'at job', 'ipc-shm', 'ipc-msg', 'ipc-sem', 'linger of', 'mqueue']) {
    assert.ok(plan.includes(want), `the plan lacks "${want}":\n${plan}`);
  }
  assert.ok(crontabOf(lab.user.name), 'a dry run removed the crontab');
  assert.equal(await ipcOf(lab.user.uid), 3);
});

test("the runner user's crontab, at jobs, SysV IPC, linger flag and POSIX queues are removed; another user's stay", async () => {
  await fsp.writeFile(path.join(mqueueDir, 'root.q'), 'root');
  const r = await createSystemStep({ lingerDir, mqueueDir }).run(makeCtx(slot));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.deepEqual(Object.fromEntries(Object.entries(r.removed).map(([k, v]) => [k, v.count])), {
    crontab: 1,
    'at-job': 1,
    'ipc-shm': 1,
    'ipc-msg': 1,
    'ipc-sem': 1,
    linger: 1,
    mqueue: 1,
  });
  assert.equal(crontabOf(lab.user.name), undefined, 'the crontab survived');
  assert.equal(atJobsOf(lab.user.name), 0, 'the at job survived');
  assert.equal(await ipcOf(lab.user.uid), 0, 'an IPC object survived');
  assert.equal(existsSync(path.join(lingerDir, lab.user.name)), false, 'linger is still on');
  assert.deepEqual((await fsp.readdir(mqueueDir)).sort(), [`${other.user.name}.q`, 'root.q'].sort());
  assert.ok(crontabOf(other.user.name), "another user's crontab was removed");
  assert.equal(atJobsOf(other.user.name), 1, "another user's at job was removed");
  assert.equal(await ipcOf(other.user.uid), 3, "another user's IPC objects were removed");
});

test('a second pass finds nothing, and an unmounted /dev/mqueue is reported as skipped', async () => {
  const r = await createSystemStep({ lingerDir, mqueueDir: path.join(lab.root, 'no-mqueue') }).run(makeCtx(slot));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.deepEqual(r.removed, {});
  assert.match(r.reason ?? '', /no-mqueue not mounted/);
});

test('spools that hold nothing of the user decide without running crontab or atq; the real spools send the step to the tools', async () => {
  plant(lab);
  const empty = path.join(lab.root, 'empty-spool');
  await fsp.mkdir(empty);
  await fsp.writeFile(path.join(empty, other.user.name), 'another user only');
  // The test's spools are empty of the user: the step trusts them and asks no tool (so the
  // user's real crontab and at job, which these spools do not show, stay).
  const fast = await createSystemStep({ lingerDir, mqueueDir, crontabDir: empty, atJobsDir: empty }).run(makeCtx(slot));
  assert.equal(fast.outcome, 'ok', fast.reason);
  assert.equal(fast.removed.crontab, undefined, 'crontab -l ran although the spool showed no crontab');
  assert.equal(fast.removed['at-job'], undefined, 'atq ran although the spool showed no at job');
  assert.ok(crontabOf(lab.user.name), 'the crontab went without the tool being asked');
  // The real spools show them: the tools run and remove them.
  const full = await createSystemStep({ lingerDir, mqueueDir }).run(makeCtx(slot));
  assert.equal(full.outcome, 'ok', full.reason);
  assert.equal(full.removed.crontab?.count, 1);
  assert.equal(full.removed['at-job']?.count, 1);
  assert.equal(crontabOf(lab.user.name), undefined, 'the crontab survived');
  assert.equal(atJobsOf(lab.user.name), 0, 'the at job survived');
});
