/**
 * Kernel and network plants, made for real inside network, mount and pid namespaces this test
 * creates (unshare): a netfilter rule, a sysctl, a route, a root process listening on a port and a
 * bind mount over /usr/local/bin are each reported by name. Nothing outside the namespaces changes;
 * they vanish when the child exits.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function hasTools(): string | undefined {
  for (const t of ['unshare', 'iptables', 'python3', 'ip', 'sysctl']) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'pipe' });
    } catch {
      return `${t} is not installed (scripts/install-test-deps.sh)`;
    }
  }
  return undefined;
}

test(
  'a netfilter rule, a sysctl, a route, a root listener, bind mounts and a second instance of an image daemon are each reported by name',
  { skip: hasTools() },
  async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'rw-integrity-ns-'));
    try {
      const stateDir = path.join(root, 'state');
      const scratch = path.join(root, 'scratch');
      await mkdir(scratch);
      const hostForward = execFileSync('sysctl', ['-n', 'net.ipv4.ip_forward'], { encoding: 'utf8' }).trim();
      const out = execFileSync(
        'unshare',
        // `sh` stays the namespace's init (the command is not its last), like the host's pid 1.
        [
          '--net',
          '--mount',
          '--propagation',
          'private',
          '--pid',
          '--fork',
          '--mount-proc',
          'sh',
          '-c',
          '"$0" --import tsx "$1" "$2" "$3"; true',
          process.execPath,
          path.join(here, 'ns-plant.ts'),
          stateDir,
          scratch,
        ],
        { encoding: 'utf8', cwd: path.resolve(here, '../../..'), timeout: 90_000 },
      );
      const { before, after } = JSON.parse(out.trim().split('\n').pop() ?? '{}') as {
        before: string[];
        after: { problem: string; detail: Record<string, unknown> }[];
      };
      assert.deepEqual(before, [], 'the namespace drifted before anything was planted');
      const lines = after.map((f) => f.problem);
      const expect = [
        /^netfilter: netfilter:iptables filter -A INPUT -p tcp -m tcp --dport 4444 -j ACCEPT added/,
        /^sysctl: sysctl:net\.ipv4\.ip_forward modified/,
        /^routes: route:lo 10\.99\.0\.0\/16 via 0\.0\.0\.0 added/,
        /^listeners: listener:tcp:127\.0\.0\.1:4445 added \(the job through sudo|^listeners: listener:tcp:127\.0\.0\.1:4445 added \(root during the job/,
        /^processes: process:root:\/\S*python3[.0-9]* added/,
        /^mounts: mount:\/usr\/local\/bin added/,
        /^mounts: mount:\/usr\/bin\/tac added/,
        /^processes: process:root:\/\S*perl[.0-9]*#\d+ added/,
        /^processes: process:root:\/\S*-nsd#\d+ added/,
        /^mounts: mount:\/etc added/,
        /^mounts: mount:\/run\/netns\/rw-integrity-plant added/,
        /^processes: process:root:\/\S*sleep#\d+ added/,
        /^mounts: mount:\/proc\/\d+ added/,
        /^mounts: mount:\/proc\/\d+\/status added/,
        /^processes: process:root:\/\S*tail added/,
      ];
      for (const e of expect)
        assert.ok(
          lines.some((l) => e.test(l)),
          `no line matches ${e}:\n${lines.join('\n')}`,
        );
      assert.ok(!lines.some((l) => /process:root:\/\S*bash#/.test(l)), `a daemon's own worker counted:\n${lines.join('\n')}`);
      assert.equal(
        lines.filter((l) => /process:root:\/\S*sleep#/.test(l)).length,
        1,
        `the image's own sleep counted, or the hidden one seen:\n${lines.join('\n')}`,
      );
      const sysctl = after.find((f) => f.problem.startsWith('sysctl: sysctl:net.ipv4.ip_forward'));
      assert.deepEqual([sysctl?.detail.before, sysctl?.detail.after], ['0', '1']);
      assert.equal(
        execFileSync('sysctl', ['-n', 'net.ipv4.ip_forward'], { encoding: 'utf8' }).trim(),
        hostForward,
        'the host sysctl changed',
      );
      assert.doesNotMatch(execFileSync('iptables-save', { encoding: 'utf8' }), /--dport 4444/, 'the rule leaked into the host namespace');
    } finally {
      // The name `ip netns add` made in the host's /run, should the namespace have ended early.
      await rm('/run/netns/rw-integrity-plant', { force: true });
      execFileSync('sh', ['-c', 'rmdir /run/netns 2>/dev/null; true']);
      await rm(root, { recursive: true, force: true });
    }
  },
);
