/**
 * runner.sudo: the grant exists only between prepare and release, the runner user's sudo rights are
 * found however they are given (a rule, a group, an alias, an included drop-in), and the agent's
 * own grant is no drift. The runner user's subordinate ids: a process, a temp file and an IPC object
 * owned by one of them are reported and removed like the user's own.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chown, lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SudoGuard, sudoDropIn } from '../../../src/integrity/sudo-guard.js';
import { IntegrityGuard } from '../../../src/integrity/guard.js';
import { takeSystemBaseline } from '../../../src/integrity/system-baseline.js';
import { readSubIds } from '../../../src/integrity/accounts.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import { createLogger } from '../../../src/lib/log.js';
import type { GuardJob } from '../../../src/lib/job-guard.js';
import { createLab } from '../../helpers/lab.js';

/** A fresh minute for each guard call, as the agent gives each cleanup its own deadline. */
const ctx = {
  log: createLogger({ level: 'silent' }),
  get signal(): AbortSignal {
    return AbortSignal.timeout(60_000);
  },
};
const USER = { name: 'runneru', uid: 4242, gid: 4242, home: '/home/runneru' };

async function sudoTree(): Promise<{ T: string; job: GuardJob; dispose(): Promise<void> }> {
  const T = await mkdtemp(path.join(os.tmpdir(), 'rw-sudo-'));
  await mkdir(`${T}/etc/sudoers.d`, { recursive: true });
  await writeFile(`${T}/etc/sudoers`, 'Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n', {
    mode: 0o440,
  });
  await writeFile(`${T}/etc/group`, 'root:x:0:\nsudo:x:27:admin\nrunneru:x:4242:\nbuilders:x:5000:runneru\n');
  await writeFile(`${T}/etc/passwd`, 'root:x:0:0:root:/root:/bin/bash\nrunneru:x:4242:4242::/home/runneru:/bin/bash\n');
  const job: GuardJob = { key: 'j1', dir: `${T}/job`, user: USER, runnerRoot: '/opt/runner', stateDir: `${T}/state` };
  return { T, job, dispose: () => rm(T, { recursive: true, force: true }) };
}

function withSudo(mode: Policy['runner']['sudo']): Policy {
  const p = structuredClone(DEFAULT_POLICY);
  p.runner.sudo = mode;
  p.host.integrity.surfaces = ['etc', 'accounts'];
  return p;
}

test('deny: every way of giving the runner user sudo is found, and a name sudo ignores is not', async () => {
  const w = await sudoTree();
  try {
    const g = new SudoGuard({ root: w.T, user: USER });
    const p = withSudo('deny');
    assert.deepEqual(await g.verify(undefined, p, ctx), [], 'a clean sudoers already reports rights');
    const cases: [string, () => Promise<void>, RegExp | undefined][] = [
      [
        'a rule naming the user in a drop-in',
        () => writeFile(`${w.T}/etc/sudoers.d/ci`, 'runneru ALL=(ALL) NOPASSWD: ALL\n'),
        /sudoers\.d\/ci: runneru ALL/,
      ],
      [
        'a drop-in whose name has a dot (sudo skips it)',
        () => writeFile(`${w.T}/etc/sudoers.d/ci.disabled`, 'runneru ALL=(ALL) ALL\n'),
        undefined,
      ],
      ['the uid form', () => writeFile(`${w.T}/etc/sudoers.d/uid`, '#4242 ALL=(ALL) ALL\n'), /#4242 ALL/],
      [
        'a group the user is in',
        () => writeFile(`${w.T}/etc/sudoers.d/grp`, '%builders ALL=(root) NOPASSWD: /usr/bin/apt-get\n'),
        /%builders/,
      ],
      [
        'membership of the sudo group',
        async () => writeFile(`${w.T}/etc/group`, 'root:x:0:\nsudo:x:27:admin,runneru\nrunneru:x:4242:\n'),
        /%sudo ALL/,
      ],
      ['a User_Alias', () => writeFile(`${w.T}/etc/sudoers.d/alias`, 'User_Alias CI = deploy, runneru\nCI ALL=(ALL) ALL\n'), /CI ALL/],
    ];
    for (const [name, plant, expect] of cases) {
      await plant();
      const lines = (await g.verify(undefined, p, ctx)).map((f) => f.problem);
      if (expect)
        assert.ok(
          lines.some((l) => expect.test(l)),
          `${name}: not found in\n${lines.join('\n')}`,
        );
      // Undo, so each case stands alone.
      await rm(`${w.T}/etc/sudoers.d`, { recursive: true, force: true });
      await mkdir(`${w.T}/etc/sudoers.d`);
      await writeFile(`${w.T}/etc/group`, 'root:x:0:\nsudo:x:27:admin\nrunneru:x:4242:\nbuilders:x:5000:runneru\n');
      if (!expect) assert.deepEqual(lines, [], `${name}: reported`);
    }
  } finally {
    await w.dispose();
  }
});

test('allow: the grant exists only between prepare and release, is valid sudoers, and is no drift', async () => {
  const w = await sudoTree();
  try {
    const p = withSudo('allow');
    const g = new SudoGuard({ root: w.T, user: USER });
    await takeSystemBaseline({
      root: w.T,
      stateDir: `${w.T}/state`,
      surfaces: ['etc', 'accounts'],
      excluded: ['/state'],
      user: USER,
      netfilter: false,
    });
    const integrity = new IntegrityGuard({ root: w.T, stateDir: `${w.T}/state`, excluded: ['/state'], user: USER, netfilter: false });
    await integrity.prepare(w.job, p, ctx);
    const prepared = await g.prepare(w.job, p, ctx);
    assert.match(prepared.notes?.[0] ?? '', /sudo granted to runneru/);
    const file = path.join(w.T, sudoDropIn(USER.name));
    assert.equal((await lstat(file)).mode & 0o777, 0o440);
    assert.equal(await readFile(file, 'utf8').then((t) => t.includes('runneru ALL=(ALL:ALL) NOPASSWD: ALL')), true);
    try {
      execFileSync('visudo', ['-c', '-f', file], { stdio: 'pipe' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new Error(`visudo rejects the drop-in: ${String((err as { stderr?: Buffer }).stderr)}`);
    }
    assert.equal((await g.verify(w.job, p, ctx)).length, 1, 'during the job the grant is visible to the check');
    const released = await g.release(w.job, p, ctx);
    assert.equal(released.outcome, 'ok');
    assert.deepEqual(released.removed, { 'sudo-grant': { count: 1, bytes: 0 } });
    assert.deepEqual(await g.verify(w.job, p, ctx), []);
    assert.deepEqual(
      (await integrity.verify(w.job, p, ctx)).map((f) => f.problem),
      [],
      "the agent's own grant counted as drift",
    );
    assert.equal((await g.release(w.job, p, ctx)).outcome, 'ok', 'release is not idempotent');
  } finally {
    await w.dispose();
  }
});

test("a process, a temp file and an IPC object of the runner user's subordinate uids are reported, then removed", async (t) => {
  const lab = await createLab('rw-subid-');
  let sleeper: ReturnType<typeof spawn> | undefined;
  try {
    const ranges = readSubIds('/etc/subuid', lab.user);
    if (ranges.length === 0) {
      t.skip('useradd gave the lab user no subordinate ids');
      return;
    }
    const sub = (ranges[0]?.start ?? 0) + 1000;
    const tmp = path.join(lab.root, 'tmp');
    await mkdir(tmp, { mode: 0o1777 });
    const p = structuredClone(DEFAULT_POLICY);
    p.cleanup.temp.paths = [tmp];
    p.host.integrity.enabled = false;
    const guard = new IntegrityGuard({ stateDir: path.join(lab.root, 'state'), excluded: [], user: lab.user });
    const job: GuardJob = {
      key: 'j',
      dir: lab.root,
      user: { name: lab.user.name, uid: lab.user.uid, gid: lab.user.gid, home: lab.user.home },
      runnerRoot: lab.root,
      stateDir: lab.root,
    };
    assert.deepEqual(await guard.verify(job, p, ctx), []);
    sleeper = spawn('setpriv', [`--reuid=${sub}`, `--regid=${sub}`, '--clear-groups', 'sleep', '300'], { stdio: 'ignore', detached: true });
    await writeFile(path.join(tmp, 'left-by-namespace'), 'x');
    await chown(path.join(tmp, 'left-by-namespace'), sub, sub);
    const shmid = execFileSync('setpriv', [`--reuid=${sub}`, `--regid=${sub}`, '--clear-groups', 'ipcmk', '-M', '4096'], {
      encoding: 'utf8',
    }).match(/\d+/)?.[0];
    await new Promise((r) => setTimeout(r, 200));
    const lines = (await guard.verify(job, p, ctx)).map((f) => f.problem);
    assert.ok(
      lines.some((l) => l.startsWith(`process ${sleeper?.pid} of subordinate uid ${sub}`)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => l.startsWith(`file ${path.join(tmp, 'left-by-namespace')} of subordinate uid ${sub}`)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => l.startsWith(`ipc shm:${shmid} of subordinate uid ${sub}`)),
      lines.join('\n'),
    );
    const r = await guard.release(job, p, ctx);
    assert.equal(r.outcome, 'ok', r.reason);
    assert.deepEqual(await guard.verify(job, p, ctx), []);
  } finally {
    sleeper?.kill('SIGKILL');
    await lab.dispose();
  }
});
