/**
 * The Debian package in a fresh Debian root, offline: `npm run test:release` (not part of
 * `npm test`: debootstrap alone takes 4 to 7 minutes on two cores, which the whole suite cannot
 * afford; nothing is cached between runs).
 *
 * It builds the release (tarball and .deb, lintian included), makes a minimal bookworm root with
 * debootstrap (the only step that uses Debian's mirror, with `apt-get download` of the .deb's
 * dependencies that minbase lacks), then, chrooted and in a private mount namespace (the chroot's
 * /proc never shows in the host's mount table): installs the .deb with dpkg twice (the second run
 * is an upgrade in place and must change nothing), runs every command's --help, `validate` on
 * the shipped policies and example config, `baseline` and `run` with a bad config (exit 78,
 * the file and field named), `systemd-analyze verify` of the installed unit when systemd is
 * there, and `demo` (the whole lifecycle with the simulator). Then purge, and nothing is left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { release } from '../../../scripts/release.js';

const MIRROR = 'http://deb.debian.org/debian';
/** debootstrap and the release build are minutes on a loaded two-core machine. */
const STEP_TIMEOUT_MS = 20 * 60_000;
/** Packages the .deb depends on or recommends that a minbase root lacks. */
const EXTRA_DEBS = ['libatomic1', 'procps', 'libproc2-0', 'libncursesw6', 'libcap2-bin', 'libcap2'];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: STEP_TIMEOUT_MS, ...opts }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

test('the .deb installs offline into a fresh Debian root, twice, and every command runs there', { timeout: 40 * 60_000 }, async () => {
  // The tools this test needs, which the main suite does not (apt-get install debootstrap lintian):
  for (const tool of ['/usr/sbin/debootstrap', '/usr/bin/lintian', '/usr/bin/dpkg-deb', '/usr/bin/unshare']) {
    assert.ok(existsSync(tool), `${tool} is missing: apt-get install --no-install-recommends debootstrap lintian`);
  }
  const lab = await mkdtemp(path.join(os.tmpdir(), 'rw-debroot-'));
  await chmod(lab, 0o755);
  try {
    const t0 = Date.now();
    const rel = await release(path.join(lab, 'out'));
    assert.ok(rel.deb);
    // lintian leaves its mldbm-elf-* files in $TMPDIR: the lab's, removed with it.
    const lint = await sh('lintian', ['--fail-on', 'error,warning', rel.deb], { env: { ...process.env, TMPDIR: lab } });
    assert.equal(lint.code, 0, `lintian:\n${lint.stdout}${lint.stderr}`);
    const tRelease = Date.now();

    const root = path.join(lab, 'root');
    // A private mount namespace: debootstrap's /proc and /sys mounts stay out of the host's table.
    const boot = await sh('unshare', ['--mount', '--propagation', 'private', 'debootstrap', '--variant=minbase', 'bookworm', root, MIRROR]);
    assert.equal(boot.code, 0, `debootstrap:\n${boot.stdout.slice(-2000)}${boot.stderr.slice(-2000)}`);
    const tBoot = Date.now();
    const debs = path.join(root, 'debs');
    await mkdir(debs);
    const dl = await sh('apt-get', ['download', ...EXTRA_DEBS], { cwd: debs });
    assert.equal(dl.code, 0, `apt-get download:\n${dl.stderr}`);
    await copyFile(rel.deb, path.join(debs, path.basename(rel.deb)));

    /** A shell command in the chroot, with /proc mounted in a private namespace, offline. */
    const inRoot = (script: string): Promise<Run> =>
      sh('unshare', [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        `mount -t proc proc "$1/proc" && exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 /bin/sh -c "$2"`,
        'in-root',
        root,
        script,
      ]);

    const deb = `/debs/${path.basename(rel.deb)}`;
    const first = await inRoot(`dpkg -i /debs/*.deb`);
    assert.equal(first.code, 0, `first install:\n${first.stdout}${first.stderr}`);
    const listing = await inRoot(
      'find /usr/lib/runner-warden /etc/runner-warden /var/lib/runner-warden -printf "%M %u %p\\n" | sort; md5sum /usr/lib/runner-warden/dist/*.mjs',
    );
    const again = await inRoot(`dpkg -i ${deb}`);
    assert.equal(again.code, 0, `second install:\n${again.stdout}${again.stderr}`);
    const listingAgain = await inRoot(
      'find /usr/lib/runner-warden /etc/runner-warden /var/lib/runner-warden -printf "%M %u %p\\n" | sort; md5sum /usr/lib/runner-warden/dist/*.mjs',
    );
    assert.equal(listingAgain.stdout, listing.stdout, 'the second install changed the installed tree');
    assert.match(listing.stdout, /^drwx------ root \/etc\/runner-warden$/m);
    assert.match(listing.stdout, /^drwx--x--x root \/var\/lib\/runner-warden$/m);
    const status = await inRoot(
      "dpkg-query -W -f '${Status} ${Version}' runner-warden; echo; dpkg --verify runner-warden && echo verified",
    );
    assert.match(status.stdout, /install ok installed 0\./);
    assert.match(status.stdout, /verified/);

    // The shipped Node, not Debian's (bookworm's nodejs is 18 and is not installed here).
    const v = await inRoot(
      'runner-warden version; /usr/lib/runner-warden/node/bin/node --version; command -v node || echo "no system node"',
    );
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^0\.\d+\.\d+\nv2[4-9]\.\d+\.\d+\nno system node$/m);

    for (const cmd of ['run', 'validate', 'cleanup', 'baseline', 'status', 'journal', 'drain', 'demo', 'version']) {
      const h = await inRoot(`runner-warden ${cmd} --help`);
      assert.equal(h.code, 0, `${cmd} --help: ${h.stderr}`);
      assert.match(h.stdout, new RegExp(`usage: runner-warden ${cmd}`), `${cmd} --help printed no usage`);
    }
    const valid = await inRoot(
      'runner-warden validate /usr/share/doc/runner-warden/examples/config.example.yaml /etc/runner-warden/policies/*.yaml',
    );
    assert.equal(valid.code, 0, `validate:\n${valid.stdout}${valid.stderr}`);
    await writeFile(
      path.join(root, 'etc/runner-warden/config.yaml'),
      'github:\n  org: acme\nrunner:\n  root: opt/actions-runner\n  user: runner\n',
      { mode: 0o600 },
    );
    for (const cmd of ['run', 'baseline', 'cleanup']) {
      const bad = await inRoot(`runner-warden ${cmd} --config /etc/runner-warden/config.yaml`);
      assert.equal(bad.code, 78, `${cmd} with a bad config: exit ${bad.code}\n${bad.stderr}`);
      assert.match(bad.stderr, /\/etc\/runner-warden\/config\.yaml:4:\d+: runner\.root: expected an absolute path/);
    }
    await rm(path.join(root, 'etc/runner-warden/config.yaml'));

    const man = await inRoot(
      'test -s /usr/share/man/man1/runner-warden.1.gz && test -s /usr/share/bash-completion/completions/runner-warden && test -s /usr/share/zsh/vendor-completions/_runner-warden && echo present',
    );
    assert.match(man.stdout, /present/);
    if (existsSync('/usr/bin/systemd-analyze')) {
      // The installed unit, its ExecStart pointed into the root (a minbase root has no systemd
      // of its own to verify against); the man page it names is checked just above.
      const copy = path.join(lab, 'runner-warden.service');
      const unit = await readFile(path.join(root, 'lib/systemd/system/runner-warden.service'), 'utf8');
      await writeFile(copy, unit.replaceAll('/usr/bin/runner-warden', path.join(root, 'usr/bin/runner-warden')));
      const verify = await sh('systemd-analyze', ['verify', '--man=no', copy]);
      assert.equal(verify.code, 0, `systemd-analyze verify:\n${verify.stderr}`);
      // The image cache's unit, shipped but not enabled: its backoff script in the root, and
      // docker-registry (a Suggests, absent from a minbase root) stood in for by true.
      const mirror = path.join(lab, 'runner-warden-mirror.service');
      const mirrorUnit = await readFile(path.join(root, 'lib/systemd/system/runner-warden-mirror.service'), 'utf8');
      await writeFile(
        mirror,
        mirrorUnit
          .replaceAll('/usr/lib/runner-warden/', path.join(root, 'usr/lib/runner-warden') + '/')
          .replaceAll('/usr/bin/docker-registry', '/bin/true'),
      );
      const verifyMirror = await sh('systemd-analyze', ['verify', '--man=no', mirror]);
      assert.equal(verifyMirror.code, 0, `systemd-analyze verify (image cache):\n${verifyMirror.stderr}`);
    }
    const backoff = await inRoot(
      'test -s /etc/runner-warden-mirror/config.yml && /usr/lib/runner-warden/mirror-backoff /tmp/rw-backoff --dry-run && rm -f /tmp/rw-backoff',
    );
    assert.equal(backoff.code, 0, backoff.stderr);
    assert.equal(backoff.stdout.trim(), '0', 'a first start waits nothing');

    const demo = await inRoot('runner-warden demo --jobs 2');
    assert.equal(demo.code, 0, `demo:\n${demo.stdout}\n${demo.stderr}`);
    assert.match(demo.stdout, /agent stopped: .*\(exit 0\)/);
    assert.match(demo.stdout, /leftovers on the host: no process of the runner user/);

    const purge = await inRoot(
      'dpkg --purge runner-warden && ls -d /usr/lib/runner-warden /etc/runner-warden /etc/runner-warden-mirror /var/lib/runner-warden /usr/bin/runner-warden 2>&1 || true',
    );
    assert.equal(purge.code, 0, purge.stderr);
    assert.doesNotMatch(purge.stdout, /^\/(usr|etc|var)\S+$/m, `left after purge:\n${purge.stdout}`);
    const tEnd = Date.now();
    process.stdout.write(
      `# release+lintian ${((tRelease - t0) / 1000).toFixed(0)} s, debootstrap ${((tBoot - tRelease) / 1000).toFixed(0)} s, install and commands ${((tEnd - tBoot) / 1000).toFixed(0)} s\n`,
    );
  } finally {
    await rm(lab, { recursive: true, force: true });
  }
});
