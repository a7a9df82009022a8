import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { silentLogger } from '../../../src/lib/log.js';
import { createWorkdirStep } from '../../../src/cleanup/steps/workdir.js';
import { Trash } from '../../../src/cleanup/trash.js';
import { prepareJobDirs } from '../../../src/cleanup/job-dirs.js';
import { readMountInfo, mountsUnder } from '../../../src/cleanup/mounts.js';
import type { Slot } from '../../../src/cleanup/types.js';
import { makeCanary, snapshot, assertCanary, makeSlot, makeCtx, disposeLab, sh } from './safe-delete-canary.js';

let lab: Lab;
let canary: string;
let canarySnap: Map<string, string>;
let slot: Slot;

before(async () => {
  lab = await createLab('rw-workdir-');
  canary = path.join(lab.root, 'canary');
  await fsp.mkdir(canary);
  await makeCanary(canary);
  canarySnap = await snapshot(canary);
  slot = await makeSlot(lab);
});

beforeEach(async () => {
  await assertCanary(canary, canarySnap);
});

after(async () => {
  await assertCanary(canary, canarySnap);
  await disposeLab(lab);
});

/** Names of _work's entries, as hex (some are not UTF-8). */
async function workEntries(): Promise<string[]> {
  return (await fsp.readdir(slot.workDir, { encoding: 'buffer' })).map((b) => b.toString()).sort();
}

test('the hostile job leaves symlinks to the canary, mode-000 dirs, odd names, FIFOs, sockets and immutable files; only _tool stays', async () => {
  runAs(
    lab.user,
    `cd ${slot.workDir} && python3 - <<'EOF'
import os, socket
os.makedirs('_tool/node/bin'); open('_tool/node/bin/node', 'w').write('tool')
os.makedirs('_cache/keep-me'); open('_cache/keep-me/x', 'w').write('k'); open('_cache/drop', 'w').write('d')
os.makedirs('repo/repo/src'); open('repo/repo/src/main.c', 'w').write('int main;')
os.symlink('${canary}', 'evil')
os.symlink('${canary}/sub', 'repo/repo/src/deeper-evil')
os.makedirs('locked/a/b'); open('locked/a/b/f', 'w').write('f'); os.chmod('locked/a/b', 0); os.chmod('locked', 0)
open('repo/ro', 'w').write('r'); os.chmod('repo/ro', 0o444)
for n in [b'new\\nline', b' lead space', b'-rf', b'--help', b'\\xff\\xfe']:
    open(n, 'w').write('n')
os.mkfifo('repo/fifo')
s = socket.socket(socket.AF_UNIX); s.bind('repo/sock')
EOF`,
  );
  sh(`chattr +i ${slot.workDir}/repo/repo/src/main.c`);
  const r = await createWorkdirStep().run(makeCtx(slot, { policy: { workdir: { enabled: true, keep: ['_tool', '_cache/keep-me'] } } }));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.deepEqual(await workEntries(), ['_cache', '_tool'], 'something besides the kept entries is left in _work');
  assert.deepEqual(await fsp.readdir(path.join(slot.workDir, '_cache')), ['keep-me'], 'a nested keep must keep only itself');
  assert.equal(await fsp.readFile(path.join(slot.workDir, '_tool/node/bin/node'), 'utf8'), 'tool');
  assert.equal(r.removed.entry?.count, 9, `moved ${r.removed.entry?.count} entries`);
  assert.ok((r.removed.file?.count ?? 0) >= 15, 'the deleted entries were not counted');
  assert.deepEqual(await fsp.readdir(slot.trashDir), [], 'the step drained its own trash');
  await fsp.rm(path.join(slot.workDir, '_tool'), { recursive: true });
  await fsp.rm(path.join(slot.workDir, '_cache'), { recursive: true });
});

test('a bind mount inside _work is detached before the move and its source survives', async () => {
  runAs(lab.user, `mkdir -p ${slot.workDir}/job/mnt && echo x > ${slot.workDir}/job/file`);
  sh(`mount --bind ${canary} ${slot.workDir}/job/mnt`);
  const r = await createWorkdirStep().run(makeCtx(slot));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.equal(r.removed.mount?.count, 1, 'the mount was not reported as detached');
  assert.deepEqual(mountsUnder(await readMountInfo(), lab.root), [], 'a mount remains under the lab');
  assert.deepEqual(await workEntries(), []);
  await assertCanary(canary, canarySnap);
});

test('a mount that cannot be detached makes the step dirty and nothing is moved', async () => {
  runAs(lab.user, `mkdir -p ${slot.workDir}/job/mnt && echo x > ${slot.workDir}/job/file`);
  sh(`mount --bind ${canary} ${slot.workDir}/job/mnt`);
  try {
    const r = await createWorkdirStep({ umountCommand: 'false' }).run(makeCtx(slot));
    assert.equal(r.outcome, 'dirty');
    assert.match(r.reason ?? '', /mount/);
    assert.deepEqual(await workEntries(), ['job'], 'entries were moved although a mount was still inside');
  } finally {
    sh(`umount -l ${slot.workDir}/job/mnt`);
  }
  await assertCanary(canary, canarySnap);
  assert.equal((await createWorkdirStep().run(makeCtx(slot))).outcome, 'ok');
});

test('a _work that the job replaced by a symlink to the canary is unlinked and recreated, the target untouched', async () => {
  await fsp.rmdir(slot.workDir);
  runAs(lab.user, `ln -s ${canary} ${slot.workDir}`);
  const r = await createWorkdirStep().run(makeCtx(slot));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.equal(r.removed.symlink?.count, 1);
  const st = await fsp.lstat(slot.workDir);
  assert.ok(st.isDirectory(), '_work was not recreated as a directory');
  assert.equal(st.uid, lab.user.uid, '_work must belong to the runner user');
  await assertCanary(canary, canarySnap);
});

test('a trash on another filesystem makes the step dirty before anything moves', async () => {
  const other = path.join(lab.root, 'tmpfs-trash');
  await fsp.mkdir(other);
  sh(`mount -t tmpfs -o size=1m rwtest ${other}`);
  try {
    runAs(lab.user, `echo x > ${slot.workDir}/f`);
    const r = await createWorkdirStep().run(makeCtx({ ...slot, trashDir: path.join(other, 'trash') }));
    assert.equal(r.outcome, 'dirty');
    assert.deepEqual(await workEntries(), ['f']);
  } finally {
    sh(`umount -l ${other}`);
  }
  await createWorkdirStep().run(makeCtx(slot));
});

test('a dry run lists the moves and the mounts and changes nothing', async () => {
  runAs(lab.user, `mkdir -p ${slot.workDir}/a/m && echo x > ${slot.workDir}/b`);
  sh(`mount --bind ${canary} ${slot.workDir}/a/m`);
  try {
    const r = await createWorkdirStep().run(makeCtx(slot, { dryRun: true }));
    assert.equal(r.outcome, 'ok');
    assert.deepEqual(
      [...(r.plan ?? [])].sort(),
      [`move ${slot.workDir}/a`, `move ${slot.workDir}/b`, `unmount ${slot.workDir}/a/m`].sort(),
    );
    assert.deepEqual(await workEntries(), ['a', 'b']);
    assert.equal(mountsUnder(await readMountInfo(), slot.workDir).length, 1, 'a dry run unmounted something');
  } finally {
    sh(`umount -l ${slot.workDir}/a/m`);
  }
  await createWorkdirStep().run(makeCtx(slot));
});

test('with the caller owning the trash the step only renames; the host is ready before the deletion', async () => {
  runAs(lab.user, `cd ${slot.workDir} && mkdir -p t/u && for i in $(seq 50); do echo $i > t/u/$i; done`);
  const trash = new Trash(slot.trashDir, silentLogger());
  const r = await createWorkdirStep({ trash }).run(makeCtx(slot));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.deepEqual(await workEntries(), []);
  assert.equal(trash.pending(), true, 'the renamed tree must wait in the trash');
  assert.equal((await fsp.readdir(slot.trashDir)).length, 1);
  const d = await trash.drain();
  assert.equal(d.count, 52, `drain counted ${d.count}`);
  assert.equal(trash.pending(), false);
});

test('per-job HOME, TMPDIR and DOCKER_CONFIG come from the skeleton, belong to the runner user, and go with the workdir step', async () => {
  const skel = path.join(lab.root, 'skel');
  await fsp.mkdir(path.join(skel, '.config'), { recursive: true });
  await fsp.writeFile(path.join(skel, '.bashrc'), 'export PS1=x\n');
  await fsp.symlink('/etc/hostname', path.join(skel, '.config', 'link'));
  const dirs = await prepareJobDirs(slot, 'job-42', skel);
  for (const d of [dirs.home, dirs.tmp, dirs.dockerConfig]) {
    const st = await fsp.lstat(d);
    assert.equal(st.uid, lab.user.uid, `${d} must belong to the runner user`);
    assert.equal(st.mode & 0o777, 0o700, `${d} must be 0700`);
  }
  assert.equal((await fsp.lstat(path.join(dirs.home, '.config', 'link'))).isSymbolicLink(), true, 'the skeleton link was followed');
  assert.equal((await fsp.lstat(path.join(dirs.home, '.bashrc'))).uid, lab.user.uid);
  assert.deepEqual(dirs.env, { HOME: dirs.home, TMPDIR: dirs.tmp, DOCKER_CONFIG: dirs.dockerConfig });
  runAs(
    lab.user,
    'mkdir -p $DOCKER_CONFIG && echo "{\\"auths\\":{}}" > $DOCKER_CONFIG/config.json && echo t > $TMPDIR/t && ln -s ' +
      canary +
      ' $HOME/evil',
    dirs.env,
  );
  await assert.rejects(prepareJobDirs(slot, '../x'), /invalid job key/);
  const r = await createWorkdirStep().run(makeCtx(slot));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.equal(r.removed['job-dir']?.count, 1);
  assert.deepEqual(await fsp.readdir(slot.jobRoot), []);
  await assertCanary(canary, canarySnap);
});

test('a job swapping directories for symlinks to the canary in a tight loop while the cleaner renames and deletes cannot make it touch the canary', async () => {
  // Racer 1 flips _work/race between a directory and a symlink to the canary. Racer 2 sits with
  // its cwd inside a directory that gets moved to the trash and keeps swapping a subdirectory for
  // a symlink to the canary there, while the deletion walks it.
  const racer = `
import os, sys, time
canary, work, mode = sys.argv[1], sys.argv[2], sys.argv[3]
# The test stops the racers (SIGTERM) after its rounds; 120 s is only a bound if it cannot.
end = time.time() + 120
if mode == 'top':
    os.chdir(work)
    i = 0
    while time.time() < end:
        i += 1
        try:
            os.makedirs('race/sub', exist_ok=True); open('race/sub/f', 'w').write('x')
            os.rename('race', 'moved%d' % (i % 50))
        except OSError: pass
        try: os.symlink(canary, 'race')
        except OSError: pass
        try: os.unlink('race')
        except OSError: pass
else:
    os.makedirs(work + '/inner/x', exist_ok=True); os.chdir(work + '/inner')
    while time.time() < end:
        try: os.makedirs('d/e', exist_ok=True); open('d/e/f', 'w').write('y')
        except OSError: pass
        try: os.rename('d', 'd2'); os.symlink(canary, 'd')
        except OSError: pass
        try: os.unlink('d'); os.rename('d2', 'd')
        except OSError: pass
        try: os.symlink(canary + '/sub', 'l'); os.rename('l', 'x')
        except OSError: pass
`;
  const racers = ['top', 'inner'].map((mode) =>
    spawn('python3', ['-c', racer, canary, slot.workDir, mode], { uid: lab.user.uid, gid: lab.user.gid, stdio: 'ignore' }),
  );
  const exited = racers.map((c) => new Promise((r) => c.once('exit', r)));
  const trash = new Trash(slot.trashDir, silentLogger());
  const step = createWorkdirStep({ trash });
  // A count of rounds, not a time budget: on a loaded machine each round may take seconds, and
  // the racers run until told to stop, so every round races them.
  const ROUNDS = 5;
  for (let round = 0; round < ROUNDS; round++) {
    await new Promise((r) => setTimeout(r, 30));
    assert.ok(
      racers.every((c) => c.exitCode === null && c.signalCode === null),
      `a racer ended before round ${round + 1}`,
    );
    await step.run(makeCtx(slot));
    await trash.drain();
    await assertCanary(canary, canarySnap);
  }
  for (const c of racers) c.kill('SIGTERM');
  await Promise.all(exited);
  const r = await step.run(makeCtx(slot));
  assert.equal(r.outcome, 'ok', r.reason);
  const d = await trash.drain();
  assert.equal(d.remaining, 0, 'the trash kept entries after the racers stopped');
  assert.deepEqual(await workEntries(), []);
  assert.equal(existsSync(path.join(canary, 'passwd')), true);
  await assertCanary(canary, canarySnap);
});
