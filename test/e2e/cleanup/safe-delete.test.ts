import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { silentLogger } from '../../../src/lib/log.js';
import { UnsafePathError } from '../../../src/lib/errors.js';
import { parseMountInfo, mountsUnder, unmountUnder } from '../../../src/cleanup/mounts.js';
import { deleteTree } from '../../../src/cleanup/safe-delete.js';
import { Trash, CrossDeviceError } from '../../../src/cleanup/trash.js';
import { makeCanary, snapshot, assertCanary, disposeLab, sh } from './safe-delete-canary.js';

let lab: Lab;
let canary: string;
let canarySnap: Map<string, string>;

before(async () => {
  lab = await createLab('rw-safedel-');
  canary = path.join(lab.root, 'canary');
  await fsp.mkdir(canary);
  await makeCanary(canary);
  canarySnap = await snapshot(canary);
});

after(async () => {
  await assertCanary(canary, canarySnap);
  await disposeLab(lab);
});

/** A fresh directory owned by the lab user, for the job to fill. */
async function jobDir(name: string): Promise<string> {
  const dir = path.join(lab.root, name);
  await fsp.mkdir(dir);
  await fsp.chown(dir, lab.user.uid, lab.user.gid);
  return dir;
}

test('mountinfo octal escapes are undone and bytes that are not UTF-8 survive', () => {
  const line = Buffer.concat([
    Buffer.from('42 27 254:0 /src /tmp/w/m'),
    Buffer.from([0xff]),
    Buffer.from('\\040x\\012y rw,relatime - ext4 /dev/vda rw\n'),
  ]);
  const [m] = parseMountInfo(line);
  assert.ok(m, 'the line was not parsed');
  assert.deepEqual(m.mountPoint, Buffer.concat([Buffer.from('/tmp/w/m'), Buffer.from([0xff]), Buffer.from(' x\ny')]));
  assert.equal(m.fsType, 'ext4');
  assert.equal(m.id, 42);
  assert.equal(m.parentId, 27);
});

test('mountsUnder selects mounts strictly below a directory, deepest first, byte for byte', () => {
  const table = parseMountInfo(
    Buffer.from(
      [
        '1 0 1:1 / /a/b rw - ext4 x rw',
        '2 1 1:1 / /a/b/c rw - tmpfs x rw',
        '3 1 1:1 / /a/b/c/d rw - tmpfs x rw',
        '4 1 1:1 / /a/bc rw - tmpfs x rw',
      ].join('\n'),
    ),
  );
  assert.deepEqual(
    mountsUnder(table, '/a/b').map((m) => m.mountPointText),
    ['/a/b/c/d', '/a/b/c'],
    'a sibling with a common prefix (/a/bc) must not match',
  );
  assert.equal(mountsUnder(table, '/a/b/', true).length, 3, 'includeSelf must add the mount on the directory itself');
});

test('the trash deletes mode-000 dirs, read-only, immutable and append-only entries, FIFOs, sockets and odd names, and counts them', async () => {
  const dir = await jobDir('hostile1');
  runAs(
    lab.user,
    `cd ${dir} && python3 - <<'EOF'
import os, socket
os.makedirs('locked/inner'); open('locked/inner/f', 'w').write('x' * 100); os.chmod('locked/inner', 0); os.chmod('locked', 0)
open('ro', 'w').write('y' * 10); os.chmod('ro', 0o444)
os.mkfifo('fifo')
s = socket.socket(socket.AF_UNIX); s.bind('sock')
for n in [b'new\\nline', b'with space', b'-rf', b'--', b'bad\\xff\\xfename']:
    open(n, 'w').write('z')
os.symlink('${canary}', 'evil')
os.makedirs('deep/er'); os.symlink('${canary}/sub', 'deep/er/evil2')
os.mkdir('imm'); open('imm/f', 'w').write('i'); open('appdir-file', 'w').write('a')
os.mkdir('app'); open('app/g', 'w').write('g')
EOF`,
  );
  sh(`chattr +i ${dir}/imm/f && chattr +i ${dir}/imm && chattr +a ${dir}/app`);
  const trash = new Trash(path.join(lab.root, 'trash'), silentLogger());
  await trash.put(dir);
  assert.equal(trash.pending(), true, 'a put entry must be pending until drained');
  const r = await trash.drain();
  assert.equal(r.remaining, 0, 'something stayed in the trash: chattr fix or mode-000 handling broke');
  assert.equal(trash.pending(), false);
  assert.deepEqual(await fsp.readdir(trash.dir), [], 'trash not empty after drain');
  // 17 entries: dir, locked, inner, f, ro, fifo, sock, 5 odd names, evil, deep, er, evil2, imm, imm/f, appdir-file, app, app/g
  assert.ok(r.count >= 20, `count too small: ${r.count}`);
  assert.ok(r.bytes >= 110, `bytes too small: ${r.bytes}`);
  await assertCanary(canary, canarySnap);
});

// 40,000 files (200 directories of 200) are enough for a deletion on the loop to show in its delay;
// 200,000 took 30 s to create and 50 s to delete at load 17, the disk's time, not the code's.
test('a 20,000-level tree and a 40,000-file tree are deleted without blocking the event loop (slow: a few seconds)', async () => {
  const dir = await jobDir('big');
  runAs(
    lab.user,
    `cd ${dir} && python3 -c "
import os
os.mkdir('deep'); os.chdir('deep')
for i in range(20000):
    os.mkdir('d'); os.chdir('d')
open('leaf', 'w').write('leaf')
os.chdir('${dir}')
os.mkdir('many')
for i in range(200):
    p = 'many/%d' % i; os.mkdir(p)
    for j in range(200):
        open('%s/%d' % (p, j), 'w').close()
"`,
  );
  const trash = new Trash(path.join(lab.root, 'trash'), silentLogger());
  await trash.put(path.join(dir, 'deep'));
  await trash.put(path.join(dir, 'many'));
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  const r = await trash.drain();
  h.disable();
  assert.equal(r.remaining, 0, 'the deep or the wide tree stayed in the trash');
  assert.ok(r.count >= 60_000, `expected ≥ 60,000 entries counted, got ${r.count}`);
  const p99 = h.percentile(99) / 1e6;
  assert.ok(p99 < 200, `event loop p99 ${p99.toFixed(1)} ms: the deletion runs on the loop`);
});

test('leftover trash from a crash is deleted at boot', async () => {
  const trashDir = path.join(lab.root, 'trash-boot');
  await fsp.mkdir(path.join(trashDir, 'old-1', 'x'), { recursive: true, mode: 0o700 });
  await fsp.writeFile(path.join(trashDir, 'old-1', 'x', 'f'), 'left');
  await fsp.writeFile(Buffer.from(`${trashDir}/-odd\xff`, 'latin1'), 'left');
  const trash = new Trash(trashDir, silentLogger());
  const r = await trash.drainAtBoot();
  assert.equal(r.remaining, 0);
  assert.deepEqual(await fsp.readdir(trashDir), [], 'leftovers survived drainAtBoot');
  assert.equal((await fsp.stat(trashDir)).mode & 0o777, 0o700, 'trash must be root-only');
});

test('the trash refuses a symlinked trash dir, a trash not owned by root, and entries holding a mount', async () => {
  const link = path.join(lab.root, 'trash-link');
  await fsp.symlink(canary, link);
  await assert.rejects(new Trash(link, silentLogger()).ensure(), UnsafePathError, 'a trash that is a symlink was accepted');
  const userOwned = await jobDir('trash-user');
  await assert.rejects(new Trash(userOwned, silentLogger()).ensure(), UnsafePathError, 'a job-owned trash was accepted');

  const dir = await jobDir('mounted');
  await fsp.mkdir(path.join(dir, 'mnt'));
  sh(`mount --bind ${canary} ${dir}/mnt`);
  try {
    const trash = new Trash(path.join(lab.root, 'trash'), silentLogger());
    await assert.rejects(trash.put(dir), UnsafePathError, 'an entry holding a bind mount was moved');
    await assert.rejects(deleteTree(dir), UnsafePathError, 'deleteTree walked a tree holding a bind mount');
  } finally {
    const un = await unmountUnder(dir);
    assert.deepEqual(un.remaining, []);
  }
  await assertCanary(canary, canarySnap);
});

test('an entry on another filesystem is refused with CrossDeviceError', async () => {
  const mnt = path.join(lab.root, 'otherfs');
  await fsp.mkdir(mnt);
  sh(`mount -t tmpfs -o size=1m rwtest ${mnt}`);
  try {
    await fsp.writeFile(path.join(mnt, 'f'), 'x');
    const trash = new Trash(path.join(lab.root, 'trash'), silentLogger());
    await assert.rejects(trash.put(path.join(mnt, 'f')), CrossDeviceError);
    assert.ok(existsSync(path.join(mnt, 'f')), 'the refused entry must stay where it was');
  } finally {
    sh(`umount -l ${mnt}`);
  }
});

test('a mount point whose name is not UTF-8 is detached through a file descriptor', async () => {
  const dir = await jobDir('oddmount');
  const mp = Buffer.concat([Buffer.from(`${dir}/m`), Buffer.from([0xff, 0x20]), Buffer.from('x')]);
  await fsp.mkdir(mp);
  sh(`mount --bind ${canary} "$(printf '${dir}/m\\377 x')"`);
  const un = await unmountUnder(dir);
  assert.equal(un.remaining.length, 0, 'the odd-named mount is still there');
  assert.equal(un.unmounted.length, 1);
  await assertCanary(canary, canarySnap);
});
