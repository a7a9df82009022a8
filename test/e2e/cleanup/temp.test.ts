import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { createTempStep } from '../../../src/cleanup/steps/temp.js';
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
