/** The flock primitive: exclusive between open file descriptions, released with its holder, never fooled by a planted file. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, watch } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile, readFile, stat, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { acquireLock, LockBusyError } from '../../../src/lib/lock.js';
import { runningAgentPid, stateLockFile, takeHostLocks } from '../../../src/cli/host-lock.js';
import { controlSocketPath, sendControl, startControlSocket } from '../../../src/cli/control-socket.js';

async function tmp(t: TestContext): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'rw-lock-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

test("a second holder is refused with the first one's pid, and gets the lock once it is released", async (t) => {
  const d = await tmp(t);
  const file = path.join(d, 'agent.lock');
  const first = await acquireLock(file, { pid: 1111 });
  await assert.rejects(acquireLock(file, { pid: 2222 }), (e: unknown) => e instanceof LockBusyError && e.holderPid === 1111);
  assert.equal(await runningAgentPid(d), 1111);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  await first.release();
  assert.equal(await runningAgentPid(d), undefined);
  const second = await acquireLock(file, { pid: 2222 });
  assert.equal((await readFile(file, 'utf8')).trim(), '2222');
  await second.release();
});

test('the lock dies with a SIGKILLed holder process', async (t) => {
  const d = await tmp(t);
  const lockMod = new URL('../../../src/lib/lock.ts', import.meta.url).pathname;
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `import(${JSON.stringify(lockMod)}).then(async (m) => { await m.acquireLock(${JSON.stringify(stateLockFile(d))}); console.log('held'); setInterval(() => {}, 1000); })`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => child.kill('SIGKILL'));
  await new Promise<void>((resolve) => child.stdout.on('data', (b: Buffer) => b.toString().includes('held') && resolve()));
  assert.equal(await runningAgentPid(d), child.pid);
  child.kill('SIGKILL');
  await new Promise((r) => child.once('close', r));
  assert.equal(await runningAgentPid(d), undefined, 'a dead holder still held the lock');
});

test("a planted symlink or a world-writable file in the lock's place is replaced, never followed", async (t) => {
  const d = await tmp(t);
  const target = path.join(d, 'precious');
  await writeFile(target, 'keep me\n');
  const file = path.join(d, 'x.lock');
  await symlink(target, file);
  const l = await acquireLock(file);
  assert.equal(await readFile(target, 'utf8'), 'keep me\n', 'the symlink target was written');
  assert.equal((await stat(file)).isFile(), true);
  await l.release();
  await rm(file);
  await writeFile(file, '1\n', { mode: 0o666 });
  await chmod(file, 0o666);
  const l2 = await acquireLock(file);
  assert.equal((await stat(file)).mode & 0o777, 0o600, 'a world-writable lock file was kept');
  await l2.release();
});

test('the control socket is root-only from the moment its name exists, even under umask 0, and leaves nothing behind', async (t) => {
  const d = await tmp(t);
  const file = controlSocketPath(d);
  const seen: string[] = [];
  const watcher = watch(d, (_ev, name) => {
    if (name !== path.basename(file)) return;
    try {
      seen.push((lstatSync(file).mode & 0o777).toString(8));
    } catch {
      // gone again
    }
  });
  t.after(() => watcher.close());
  const old = process.umask(0);
  let server;
  try {
    server = await startControlSocket(file, { drain: () => {} }, 4242);
  } finally {
    process.umask(old);
  }
  t.after(() => server.close());
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(
    [...new Set(seen)].filter((m) => m !== '600'),
    [],
    `the socket was visible with another mode: ${seen.join(', ')}`,
  );
  assert.deepEqual((await readdir(d)).sort(), ['control.sock'], 'the private bind directory was left behind');
  assert.equal((await sendControl(file, 'drain')).pid, 4242);
});

test('two slots with their own state dir and runner root but one runner user: the second is refused, and the host-wide lock leaves nothing behind', async (t) => {
  const d = await tmp(t);
  const lockDir = path.join(d, 'run', 'runner-warden');
  const slot = async (n: number): Promise<[string, string]> => {
    const state = path.join(d, `state${n}`);
    const root = path.join(d, `runner${n}`);
    await mkdir(root, { recursive: true });
    return [state, root];
  };
  const [s1, r1] = await slot(1);
  const [s2, r2] = await slot(2);
  const first = await takeHostLocks(s1, r1, 'config.yaml', { uid: 4321, lockDir });
  assert.deepEqual(first.warnings, []);
  await assert.rejects(
    takeHostLocks(s2, r2, 'config.yaml', { uid: 4321, lockDir }),
    (e: unknown) => e instanceof LockBusyError && e.holderPid === process.pid,
    'a second agent for the same runner user was let in',
  );
  // The refused attempt released what it took: the second slot's own locks are free.
  const other = await takeHostLocks(s2, r2, 'config.yaml', { uid: 4322, lockDir });
  await other.release();
  await first.release();
  assert.equal(existsSync(lockDir), false, 'the host-wide lock directory was left behind');
  const again = await takeHostLocks(s2, r2, 'config.yaml', { uid: 4321, lockDir });
  await again.release();
});
