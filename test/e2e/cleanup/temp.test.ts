import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { createTempStep } from '../../../src/cleanup/steps/temp.js';
import { TempTrash, HOLDING_PREFIX, TEMP_TRASH_RECORD } from '../../../src/cleanup/steps/temp-trash.js';
import { Trash } from '../../../src/cleanup/trash.js';
import { verify } from '../../../src/cleanup/verify.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { Slot } from '../../../src/cleanup/types.js';
import { readMountInfo, mountsUnder } from '../../../src/cleanup/mounts.js';
import { makeCanary, snapshot, assertCanary, makeSlot, makeCtx, disposeLab, sh } from './safe-delete-canary.js';

let lab: Lab;
let other: Lab;
let canary: string;
let canarySnap: Map<string, string>;
/** Lab-local stand-ins for /tmp, /var/tmp and /dev/shm (mode 1777 like the real ones). */
let temps: string[];

before(async () => {
  lab = await createLab('rw-temp-');
  other = await createLab('rw-temp-other-');
  canary = path.join(lab.root, 'canary');
  await fsp.mkdir(canary);
  await makeCanary(canary);
  canarySnap = await snapshot(canary);
  temps = ['tmp', 'var-tmp', 'dev-shm'].map((n) => path.join(lab.root, n));
  for (const t of temps) {
    await fsp.mkdir(t);
    await fsp.chmod(t, 0o1777);
  }
});

after(async () => {
  await assertCanary(canary, canarySnap);
  await disposeLab(lab);
  await disposeLab(other);
});

async function names(dir: string): Promise<string[]> {
  return (await fsp.readdir(dir)).sort();
}

test("only the runner user's temp entries go: files, trees, FIFOs, sockets, links, odd names, immutable files, inside shared sticky dirs too", async () => {
  const [tmp, varTmp, shm] = temps as [string, string, string];
  await fsp.mkdir(path.join(tmp, '.X11-unix'));
  await fsp.chmod(path.join(tmp, '.X11-unix'), 0o1777);
  await fsp.writeFile(path.join(tmp, 'root-file'), 'root');
  await fsp.writeFile(path.join(tmp, '.X11-unix', 'X0'), 'root socket stand-in');
  runAs(other.user, `echo other > ${tmp}/other-file && mkdir ${varTmp}/other-dir && echo o > ${varTmp}/other-dir/f`);
  runAs(
    lab.user,
    `python3 - <<'EOF'
import os, socket
t, v, s = '${tmp}', '${varTmp}', '${shm}'
open(t + '/job-file', 'w').write('j' * 100)
os.makedirs(t + '/job-tree/a/b'); open(t + '/job-tree/a/b/f', 'w').write('f')
os.symlink('${canary}', t + '/job-tree/a/evil')
os.symlink('${canary}', t + '/evil-link')
os.mkfifo(t + '/job-fifo')
sk = socket.socket(socket.AF_UNIX); sk.bind(t + '/.X11-unix/X99')
os.makedirs(v + '/locked/in'); open(v + '/locked/in/f', 'w').write('l'); os.chmod(v + '/locked/in', 0); os.chmod(v + '/locked', 0)
open(os.fsencode(v) + b'/-rf \\xff\\nname', 'w').write('odd')
open(s + '/sem.job', 'w').write('shm')
open(s + '/imm', 'w').write('i')
os.mkdir(s + '/immdir'); open(s + '/immdir/f', 'w').write('f')
os.makedirs(t + '/mnt-holder/m')
EOF`,
  );
  sh(`chattr +i ${shm}/imm ${shm}/immdir && mount --bind ${canary} ${tmp}/mnt-holder/m`);
  const slot = await makeSlot(lab);
  const r = await createTempStep().run(makeCtx(slot, { policy: { temp: { enabled: true, paths: temps } } }));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.deepEqual(await names(tmp), ['.X11-unix', 'other-file', 'root-file'], 'wrong entries left in tmp');
  assert.deepEqual(await names(path.join(tmp, '.X11-unix')), ['X0'], "the job's socket in the shared sticky dir stayed, or root's went");
  assert.deepEqual(await names(varTmp), ['other-dir']);
  assert.deepEqual(await names(shm), []);
  assert.equal(await fsp.readFile(path.join(varTmp, 'other-dir', 'f'), 'utf8'), 'o\n', "another user's file changed");
  assert.equal(r.removed.file?.count, 4, `files: ${JSON.stringify(r.removed)}`);
  assert.equal(r.removed.fifo?.count, 1);
  assert.equal(r.removed.socket?.count, 1);
  assert.equal(r.removed.symlink?.count, 1);
  assert.ok((r.removed.tree?.count ?? 0) >= 9, `tree entries: ${JSON.stringify(r.removed)}`);
  assert.deepEqual(mountsUnder(await readMountInfo(), lab.root), [], 'the bind mount in a temp tree is still there');
  await assertCanary(canary, canarySnap);
});

test('a dry run lists the entries it would remove and removes none', async () => {
  const [tmp] = temps as [string];
  runAs(lab.user, `echo x > ${tmp}/dry && mkfifo ${tmp}/dry-fifo`);
  const slot = await makeSlot(lab);
  const r = await createTempStep().run(makeCtx(slot, { dryRun: true, policy: { temp: { enabled: true, paths: temps } } }));
  assert.deepEqual([...(r.plan ?? [])].sort(), [`remove fifo ${tmp}/dry-fifo`, `remove file ${tmp}/dry`]);
  assert.ok(existsSync(path.join(tmp, 'dry')), 'a dry run removed a file');
  await createTempStep().run(makeCtx(slot, { policy: { temp: { enabled: true, paths: temps } } }));
  assert.equal(existsSync(path.join(tmp, 'dry')), false);
});

test('an absent temp path is noted and skipped, not a failure', async () => {
  const slot = await makeSlot(lab);
  const r = await createTempStep().run(makeCtx(slot, { policy: { temp: { enabled: true, paths: [path.join(lab.root, 'no-such-dir')] } } }));
  assert.equal(r.outcome, 'ok');
  assert.match(r.reason ?? '', /absent/);
});

test('on the real /tmp only the lab user’s own entries are removed', async () => {
  // The lab user is fresh, so the only entries of its uid in /tmp are the ones made here; the lab
  // root (in /tmp, root-owned, 0755) holds the canary and the user's home and must be untouched.
  const tag = `rw-real-${randomBytes(4).toString('hex')}`;
  runAs(lab.user, `echo x > /tmp/${tag}-file && mkdir -p /tmp/${tag}-dir/sub && echo y > /tmp/${tag}-dir/sub/f`);
  const homeBefore = await snapshot(lab.user.home);
  const slot = await makeSlot(lab);
  const r = await createTempStep().run(makeCtx(slot, { policy: { temp: { enabled: true, paths: ['/tmp'] } } }));
  assert.equal(r.outcome, 'ok', r.reason);
  assert.equal(existsSync(`/tmp/${tag}-file`), false);
  assert.equal(existsSync(`/tmp/${tag}-dir`), false);
  assert.equal(r.removed.file?.count, 1, `removed: ${JSON.stringify(r.removed)}`);
  assert.equal(
    (await fsp.readdir('/tmp')).some((n) => n.startsWith('.runner-warden-trash-')),
    false,
    'a staging dir was left in /tmp',
  );
  assert.deepEqual(await snapshot(lab.user.home), homeBefore, "the user's home inside the lab root was touched");
  await assertCanary(canary, canarySnap);
});

/** A checkout-like tree of `files` small files under `dir` (1,000 per subdirectory), made by the runner user. */
function fillTree(dir: string, files: number): void {
  runAs(
    lab.user,
    `python3 -c "
import os
for i in range(${Math.ceil(files / 1000)}):
    p = '${dir}/src%d' % i; os.makedirs(p)
    for j in range(1000):
        with open('%s/%d.c' % (p, j), 'w') as f: f.write('int x;')
"`,
  );
}

/** Mounts a small tmpfs (another filesystem than the lab's trash, like /dev/shm) at a fresh 1777 dir. */
function tmpfsRoot(name: string, size = '256m'): string {
  const dir = path.join(lab.root, name);
  sh(`mkdir -p ${dir} && mount -t tmpfs -o size=${size},mode=1777 tmpfs ${dir}`);
  return dir;
}

/** A slot trash and its temp follower over the lab, as wire.ts builds them. */
function trashes(slot: Slot): { main: Trash; temp: TempTrash } {
  const main = new Trash(slot.trashDir, silentLogger());
  return { main, temp: new TempTrash(main, silentLogger(), { stateDir: slot.stateDir }) };
}

async function holdingDirs(root: string): Promise<string[]> {
  return (await fsp.readdir(root)).filter((n) => n.startsWith(HOLDING_PREFIX)).map((n) => path.join(root, n));
}

test('a 50,000-file tree a job left in a temp dir is moved off the ready path (same filesystem as the trash, and a tmpfs) and deleted in the background', async () => {
  // In memory, so that the test takes seconds: the slot trash and a temp dir share one tmpfs, a
  // second tmpfs stands for /dev/shm. On a loaded disk the in-place deletion is far slower still
  // (50,000 files in the lab's /tmp outlasted the step's 60 s limit; bench/cleanup-ready.ts).
  const fs = tmpfsRoot('fs-big', '1g');
  const shm = tmpfsRoot('shm-big');
  const tmp = path.join(fs, 'tmp');
  await fsp.mkdir(tmp);
  await fsp.chmod(tmp, 0o1777);
  const slot = await makeSlot(lab, { trashDir: path.join(fs, 'trash') });
  const policy = { temp: { enabled: true, paths: [tmp, shm] } };
  try {
    // Baseline in the same run: the same tree deleted in place, on the ready path.
    fillTree(path.join(tmp, 'inline'), 50_000);
    let started = performance.now();
    const inline = await createTempStep().run(makeCtx(slot, { policy }));
    const inlineMs = performance.now() - started;
    assert.equal(inline.outcome, 'ok', inline.reason);
    assert.ok((inline.removed.tree?.count ?? 0) >= 50_000, `in place: ${JSON.stringify(inline.removed)}`);

    fillTree(path.join(tmp, 'job-tree'), 50_000);
    fillTree(path.join(shm, 'job-tree'), 20_000);
    const { main, temp } = trashes(slot);
    started = performance.now();
    const r = await createTempStep({ trash: temp }).run(makeCtx(slot, { policy }));
    const trashMs = performance.now() - started;
    console.log(
      `temp step, 50,000 files: in place ${inlineMs.toFixed(0)} ms; to the trash ${trashMs.toFixed(0)} ms (+20,000 on another tmpfs)`,
    );
    assert.equal(r.outcome, 'ok', r.reason);
    assert.equal(r.removed['dir-to-trash']?.count, 2, `removed: ${JSON.stringify(r.removed)}`);
    assert.equal(existsSync(path.join(tmp, 'job-tree')), false, 'the tree is still in the temp dir');
    assert.equal(existsSync(path.join(shm, 'job-tree')), false, 'the tmpfs tree is still in the temp dir');
    assert.ok(
      trashMs * 3 < inlineMs,
      `the step took ${trashMs.toFixed(0)} ms with the trash against ${inlineMs.toFixed(0)} ms in place: the deletion is still on the ready path`,
    );
    // On the trash's filesystem the tree went to the slot trash; on the tmpfs, to a holding dir there.
    assert.deepEqual(await holdingDirs(tmp), [], 'a holding dir was made on the trash filesystem');
    assert.equal((await fsp.readdir(slot.trashDir)).length, 1, 'the tree is not in the slot trash');
    const [held] = await holdingDirs(shm);
    assert.ok(held, 'no holding dir on the tmpfs');
    const hst = await fsp.lstat(held);
    assert.equal(hst.uid, 0);
    assert.equal(hst.mode & 0o7777, 0o700, 'the holding dir is not root-only');
    assert.throws(() => runAs(lab.user, `ls ${held} 2>/dev/null`), 'the runner user could list the holding dir');
    assert.deepEqual(JSON.parse(await fsp.readFile(path.join(slot.stateDir, TEMP_TRASH_RECORD), 'utf8')), { dirs: [held] });
    assert.equal(main.pending(), true, 'nothing waits for the background deletion');

    const d = await main.drain();
    assert.equal(d.remaining, 0);
    assert.ok(d.count >= 70_000, `drained ${d.count} entries`);
    assert.deepEqual(await fsp.readdir(slot.trashDir), [], 'the slot trash is not empty after the drain');
    assert.deepEqual(await holdingDirs(shm), [], 'the emptied holding dir is still on the tmpfs');
    assert.equal(existsSync(path.join(slot.stateDir, TEMP_TRASH_RECORD)), false, 'the record outlived its holding dirs');
  } finally {
    sh(`umount -l ${shm} ${fs}`);
  }
});

test('with the trash, links, mounts, root-owned and immutable dirs inside a tree are handled as in place; verification sees the job’s files, not the holding dir', async () => {
  const shm = tmpfsRoot('shm-traps');
  // Like logind's /run/user/<uid>: a tmpfs of the runner user's own, 0700.
  const runtimeDir = path.join(lab.root, 'run-user');
  sh(`mkdir ${runtimeDir} && mount -t tmpfs -o size=16m,mode=0700,uid=${lab.user.uid},gid=${lab.user.gid} tmpfs ${runtimeDir}`);
  const slot = await makeSlot(lab);
  const policy = { temp: { enabled: true, paths: [shm] } };
  try {
    runAs(
      lab.user,
      `set -e; cd ${shm}; mkdir -p t/a/m t/rootdir t/imm; ln -s ${canary} t/a/evil; ln -s ${canary} link; echo f > t/a/f; echo x > t/imm/f
       mkdir ${runtimeDir}/rt-tree; echo r > ${runtimeDir}/rt-tree/f`,
    );
    sh(
      `chown root:root ${shm}/t/rootdir && echo root > ${shm}/t/rootdir/r && chattr +i ${shm}/t/imm && mount --bind ${canary} ${shm}/t/a/m`,
    );
    const { main, temp } = trashes(slot);
    const ctx = makeCtx(slot, { policy });
    const r = await createTempStep({ trash: temp, runtimeDir }).run(ctx);
    assert.equal(r.outcome, 'ok', r.reason);
    assert.deepEqual(mountsUnder(await readMountInfo(), shm), [], 'the bind mount inside the tree is still there');
    await assertCanary(canary, canarySnap);
    assert.deepEqual(
      (await names(shm)).filter((n) => !n.startsWith(HOLDING_PREFIX)),
      [],
      'the tree or the link is still in the temp dir',
    );
    assert.equal(r.removed.symlink?.count, 1, 'the top-level link was not unlinked in place');
    // The runner user's own runtime dir may be renamed in by that user: no holding dir there, deleted in place.
    assert.deepEqual(await names(runtimeDir), [], 'the runtime dir kept the tree or got a holding dir');
    assert.ok((r.removed.tree?.count ?? 0) >= 2, `runtime dir tree not deleted in place: ${JSON.stringify(r.removed)}`);

    // The holding dir (root's, 0700) is no leftover of the job; a job file the step missed still is.
    const before = await verify(ctx);
    assert.deepEqual(
      before.problems.filter((p) => p.startsWith('temp:')),
      [],
      'verification reported the holding dir (or what it holds) as the job’s',
    );
    runAs(lab.user, `echo late > ${shm}/late`);
    const after = await verify(ctx);
    assert.deepEqual(
      after.problems.filter((p) => p.startsWith('temp:')),
      [`temp: ${shm}/late belongs to the runner user`],
    );
    await fsp.unlink(path.join(shm, 'late'));

    const d = await main.drain();
    assert.equal(d.remaining, 0, 'the immutable or root-owned dir was not deleted from the holding dir');
    assert.deepEqual(await names(shm), [], 'the holding dir is still there');
    await assertCanary(canary, canarySnap);
  } finally {
    sh(`umount -l ${shm} ${runtimeDir}`);
  }
});

test('an agent stopped mid-delete leaves the holding dir recorded, and the next start deletes it', async () => {
  const shm = tmpfsRoot('shm-restart');
  const slot = await makeSlot(lab);
  const policy = { temp: { enabled: true, paths: [shm] } };
  try {
    fillTree(path.join(shm, 'job-tree'), 20_000);
    const first = trashes(slot);
    const r = await createTempStep({ trash: first.temp }).run(makeCtx(slot, { policy }));
    assert.equal(r.outcome, 'ok', r.reason);
    const [held] = await holdingDirs(shm);
    assert.ok(held, 'no holding dir');
    // The stop's bound: the background deletion is aborted (its child killed) almost at once.
    const stop = new AbortController();
    const draining = first.main.drain(stop.signal);
    setTimeout(() => stop.abort(), 20);
    const cut = await draining;
    assert.ok(cut.remaining > 0, `the aborted drain finished anyway (${JSON.stringify(cut)}): nothing was left to recover`);
    assert.ok(existsSync(path.join(held, (await fsp.readdir(held))[0] ?? '-')), 'the holding dir was emptied by an aborted drain');

    // A new agent: a fresh slot trash and follower over the same state dir.
    const next = trashes(slot);
    const d = await next.main.drainAtBoot();
    assert.equal(d.remaining, 0);
    assert.ok(d.count > 0, 'the next start deleted nothing');
    assert.deepEqual(await holdingDirs(shm), [], 'the holding dir survived the next start');
    assert.equal(existsSync(path.join(slot.stateDir, TEMP_TRASH_RECORD)), false, 'the record outlived its holding dir');
  } finally {
    sh(`umount -l ${shm}`);
  }
});

test('a recorded holding dir that is not a root-only dir of the agent’s is never deleted at start', async () => {
  const [tmp] = temps as [string];
  const slot = await makeSlot(lab);
  const fake = path.join(tmp, `${HOLDING_PREFIX}squat`);
  runAs(lab.user, `mkdir ${fake} && echo keep > ${fake}/f`);
  await fsp.mkdir(slot.stateDir, { recursive: true });
  await fsp.writeFile(path.join(slot.stateDir, TEMP_TRASH_RECORD), JSON.stringify({ dirs: [fake, canary] }));
  const { main } = trashes(slot);
  await main.drainAtBoot();
  assert.equal(await fsp.readFile(path.join(fake, 'f'), 'utf8'), 'keep\n', 'a squatted holding dir was emptied');
  await assertCanary(canary, canarySnap);
  assert.equal(existsSync(path.join(slot.stateDir, TEMP_TRASH_RECORD)), false, 'the unusable entries stayed recorded');
  await fsp.rm(fake, { recursive: true });
});
