import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { slotAt } from '../../helpers/cleanup.js';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { CleanupContext, Slot, VerifyReport } from '../../../src/cleanup/types.js';
import { takeBaseline } from '../../../src/cleanup/baseline.js';
import { takeInstallManifest } from '../../../src/cleanup/install-manifest.js';
import { verifyWith, sysvipcOwned, type VerifyOptions } from '../../../src/cleanup/verify.js';

interface World {
  lab: Lab;
  slot: Slot;
  temp: string;
  sys: Required<Pick<VerifyOptions, 'crontabDir' | 'atJobsDir' | 'sysvipcDir' | 'mqueueDir'>>;
}

async function makeWorld(): Promise<World> {
  const lab = await createLab();
  const root = path.join(lab.root, 'runner');
  const stateDir = path.join(lab.root, 'state');
  await fsp.mkdir(path.join(root, 'bin'), { recursive: true });
  await fsp.mkdir(path.join(root, '_work'), { recursive: true });
  await fsp.writeFile(path.join(root, 'run.sh'), '#!/bin/bash\n', { mode: 0o755 });
  for (const p of ['', 'bin', '_work', 'run.sh']) await fsp.lchown(path.join(root, p), lab.user.uid, lab.user.gid);
  await fsp.mkdir(stateDir, { mode: 0o700 });
  const temp = path.join(lab.root, 'tmp');
  await fsp.mkdir(temp, { mode: 0o1777 });
  await fsp.chmod(temp, 0o1777);
  const sysRoot = path.join(lab.root, 'sys');
  const sys = {
    crontabDir: path.join(sysRoot, 'crontabs'),
    atJobsDir: path.join(sysRoot, 'atjobs'),
    sysvipcDir: path.join(sysRoot, 'sysvipc'),
    mqueueDir: path.join(sysRoot, 'mqueue'),
  };
  for (const d of Object.values(sys)) await fsp.mkdir(d, { recursive: true });
  const slot: Slot = slotAt(lab, root, stateDir);
  runAs(lab.user, "echo '# rc' > .bashrc && dd if=/dev/urandom of=data.bin bs=64k count=16 status=none");
  await takeBaseline(slot);
  await takeInstallManifest(slot);
  return { lab, slot, temp, sys };
}

function ctxFor(w: World, edit: (p: Policy) => void = () => {}): CleanupContext {
  const policy = structuredClone(DEFAULT_POLICY);
  policy.cleanup.temp.paths = [w.temp];
  policy.cleanup.containers.socket = path.join(w.lab.root, 'no-docker.sock');
  policy.cleanup.workdir.keep = ['_tool'];
  policy.limits.minFreeDiskPercent = 0;
  policy.limits.minFreeInodesPercent = 0;
  edit(policy);
  return {
    slot: w.slot,
    policy: policy.cleanup,
    fullPolicy: policy,
    log: silentLogger(),
    clock: new ManualClock(Date.now()),
    signal: AbortSignal.timeout(30_000),
    dryRun: false,
    protectedPids: new Set([process.pid]),
  };
}

/** verify, failing the test (instead of hanging it) if it blocks, e.g. on a FIFO. */
async function verifyBounded(ctx: CleanupContext, w: World): Promise<VerifyReport> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('verify did not finish in 10 s: it probably opened a FIFO or read a sparse file')), 10_000);
  });
  try {
    return await Promise.race([verifyWith(ctx, w.sys), hang]);
  } finally {
    clearTimeout(timer);
  }
}

test('a clean host verifies clean and reports its disk figures', async () => {
  const w = await makeWorld();
  try {
    await fsp.mkdir(path.join(w.slot.workDir, '_tool'));
    const r = await verifyBounded(ctxFor(w), w);
    assert.deepEqual(r.problems, [], 'a clean host was reported dirty');
    assert.equal(r.clean, true);
    assert.ok(r.disk && r.disk.freePercent > 0, 'disk figures missing');
  } finally {
    await w.lab.dispose();
  }
});

test('each kind of leftover is one problem line', async () => {
  const w = await makeWorld();
  const sleeper = spawn('sleep', ['60'], { uid: w.lab.user.uid, gid: w.lab.user.gid, detached: true, stdio: 'ignore' });
  try {
    runAs(
      w.lab.user,
      [
        `mkdir -p ${w.slot.workDir}/repo/repo && echo x > ${w.slot.workDir}/repo/repo/f`,
        `ln -s /etc ${w.slot.workDir}/_tool`,
        'echo "//r.example.test/:_authToken=npm_x" > .npmrc',
        "echo '# evil' >> .bashrc",
        `echo x > ${w.temp}/leftover && mkdir ${w.temp}/dir && echo y > ${w.temp}/dir/z`,
        `echo evil >> ${w.slot.runnerRoot}/run.sh`,
      ].join('\n'),
    );
    await fsp.writeFile(path.join(w.sys.crontabDir, w.lab.user.name), '* * * * * evil\n');
    await fsp.writeFile(
      path.join(w.sys.sysvipcDir, 'shm'),
      `       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n         0         42   600                  4096   100   100      0  ${w.lab.user.uid}  ${w.lab.user.gid}  ${w.lab.user.uid}  ${w.lab.user.gid}          0          0 1700000000                     0                     0\n`,
    );
    const mq = path.join(w.sys.mqueueDir, 'q1');
    await fsp.writeFile(mq, '');
    await fsp.chown(mq, w.lab.user.uid, w.lab.user.gid);
    const r = await verifyBounded(
      ctxFor(w, (p) => (p.limits.minFreeDiskPercent = 100)),
      w,
    );
    const text = r.problems.join('\n');
    const expected = [
      `process ${sleeper.pid} (sleep) of the runner user is still alive`,
      '_work: repo left behind',
      '_work: kept entry _tool is a symlink',
      'credential file npm ~/.npmrc still present',
      'home: new entry ~/.npmrc',
      'home: ~/.bashrc differs from baseline (content)',
      `temp: ${w.temp}/leftover belongs to the runner user`,
      `temp: ${w.temp}/dir belongs to the runner user`,
      `system: crontab of ${w.lab.user.name} exists`,
      `system: SysV shm 42 of ${w.lab.user.name} exists`,
      `system: POSIX message queue q1 of ${w.lab.user.name} exists`,
      `runner install: changed ${w.slot.runnerRoot}/run.sh (content)`,
    ];
    for (const e of expected) assert.ok(text.includes(e), `missing problem "${e}" in:\n${text}`);
    assert.ok(!text.includes(`${w.temp}/dir/z`), 'a leftover directory should be one line, not one per file');
    // Low disk (the watermark is 100% here) is the decision's disk-low recycle, never a dirty host.
    assert.ok(!text.includes('disk:'), `low disk reported as a verification problem:\n${text}`);
    assert.ok(r.disk, 'the disk figures must still be reported');
    assert.equal(r.clean, false);
    assert.ok(
      r.problems.every((p) => !p.includes('\n')),
      'a problem spans several lines',
    );
  } finally {
    sleeper.kill('SIGKILL');
    await w.lab.dispose();
  }
});

test('FIFOs, sockets and a 1 TiB sparse file in the home and temp are reported without being opened or read', async () => {
  const w = await makeWorld();
  try {
    runAs(
      w.lab.user,
      [
        'rm .bashrc && mkfifo .bashrc',
        'mkfifo new-fifo',
        `python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.bind('sock')"`,
        'truncate -s 1T huge.img',
        // Same size as the baseline's data.bin, but all holes: must not be read to be found different.
        'rm data.bin && truncate -s 1M data.bin',
        `mkfifo ${w.temp}/fifo`,
      ].join('\n'),
    );
    const started = Date.now();
    const r = await verifyBounded(ctxFor(w), w);
    // Reading 1 TiB of holes takes minutes; 30 s leaves room for a loaded machine (5 s failed at a load of 25 on two cores).
    assert.ok(Date.now() - started < 30_000, 'verify took too long: it may have read the sparse file');
    const text = r.problems.join('\n');
    for (const e of [
      'home: ~/.bashrc differs from baseline (type)',
      'home: new entry ~/new-fifo',
      'home: new entry ~/sock',
      'home: new entry ~/huge.img',
      'home: ~/data.bin differs from baseline (content)',
      `temp: ${w.temp}/fifo belongs`,
    ]) {
      assert.ok(text.includes(e), `missing "${e}" in:\n${text}`);
    }
  } finally {
    await w.lab.dispose();
  }
});

test('missing baseline and manifest are problems, never a pass', async () => {
  const w = await makeWorld();
  try {
    await fsp.rm(path.join(w.slot.stateDir, 'home-baseline'), { recursive: true });
    await fsp.rm(path.join(w.slot.stateDir, 'runner-install.json'));
    const r = await verifyBounded(ctxFor(w), w);
    assert.ok(
      r.problems.some((p) => p.startsWith('home: no baseline')),
      r.problems.join('\n'),
    );
    assert.ok(
      r.problems.some((p) => p.startsWith('runner install: no manifest')),
      r.problems.join('\n'),
    );
  } finally {
    await w.lab.dispose();
  }
});

test('sysvipcOwned reads the uid and cuid columns of each table', () => {
  const sem =
    '       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n  1234   7   600   1  1001  1001  1001  1001  0  0\n  99  8  600  1  0  0  0  0  0  0\n';
  assert.deepEqual(sysvipcOwned(sem, 1001), ['7']);
  assert.deepEqual(sysvipcOwned(sem, 5), []);
});
