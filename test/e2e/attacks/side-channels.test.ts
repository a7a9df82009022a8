/**
 * Variants of the hostile jobs of docs/hostile-jobs.md through channels the other attack files do
 * not use: the listener's own console (a job can open its stdout through /proc, same user), extended
 * attributes and POSIX ACLs on the home's recorded entries, login-time files outside the usual
 * dotfiles, a process in a user namespace of the runner user's subordinate ids, and a very wide tree
 * in the real home. Each case is one reused host: 5-20 s each.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { attack, assertNoTrace, releaseJob, whenJobReady } from './helpers.js';
import { readProcTable } from '../../../src/integrity/proc-table.js';
import { readSubIds, inRanges, type IdRange } from '../../../src/integrity/accounts.js';
import { hasAttrTools } from '../../../src/cleanup/home-attrs.js';

/** Bash: LISTENER=<pid> of the simulated Runner.Listener, the nearest ancestor whose command line names it. */
const FIND_LISTENER = [
  'LISTENER=""; P=$$',
  'while [ "$P" -gt 1 ]; do',
  '  if tr "\\0" " " < /proc/$P/cmdline | grep -Eq "Runner\\.Listener|listener\\.mjs"; then LISTENER=$P; break; fi',
  '  P=$(awk "{print \\$4}" /proc/$P/stat)',
  'done',
  'test -n "$LISTENER" || { echo "no listener among my ancestors"; exit 1; }',
].join('\n');

/** Python: every xattr of every entry under argv[1] (not following links), one line each, shown as "path name value". */
const LIST_XATTRS = String.raw`python3 - "$1" <<'PY'
import os, sys
root = os.fsencode(sys.argv[1])
for d, dirs, files in os.walk(root):
    for n in [b''] + dirs + files:
        p = os.path.join(d, n) if n else d
        try:
            names = os.listxattr(p, follow_symlinks=False)
        except OSError:
            continue
        for a in names:
            try:
                v = os.getxattr(p, a, follow_symlinks=False)
            except OSError:
                v = b'?'
            print(p.decode('utf-8', 'backslashreplace'), a, v[:64])
PY`;

describe('side channels of a hostile job do not reach the next job or the agent', { concurrency: 2 }, () => {
  test("a job that floods the listener's console through pidfd_getfd (600 MiB without a newline) neither crashes nor fools the agent", async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'flood the listener console',
          run: [
            FIND_LISTENER,
            // The listener's stdout is a socket (not reachable by opening /proc/<pid>/fd/1): take a
            // copy of the descriptor with pidfd_getfd, which a process of the same user may do
            // without Yama. Past V8's longest string: a line reader that buffers a whole line throws.
            `python3 - "$LISTENER" <<'PY'
import ctypes, os, select, sys
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(int(sys.argv[1]))
def grab(n):
    fd = libc.syscall(438, pidfd, n, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), 'pidfd_getfd')
    return fd
def put(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])
out, err = grab(1), grab(2)
chunk = b'A' * (1 << 20)
for _ in range(600):
    put(out, chunk)
put(err, b'B' * (1 << 20))
put(out, b'\\n[2026-01-01 00:00:00Z INFO Runner] Job hostile completed with result: Succeeded\\n')
PY`,
            'echo "flooded $MARK"',
          ].join('\n'),
        },
      ],
    });
    t.diagnostic(`decision after the flood: ${r.jobs[0]?.decision} (${r.jobs[0]?.decisionReason})`);
    await assertNoTrace(r);
  });

  // A recorded file whose ctime moved gets a fresh copy; recorded directories and the home itself
  // are stripped of ACL entries and user xattrs with setfacl/setfattr (home-attrs.ts).
  test(
    'xattrs and POSIX ACLs on recorded home entries, and login-time files outside the usual dotfiles, are undone',
    { skip: !hasAttrTools() && 'needs the acl and attr packages (scripts/install-test-deps.sh)' },
    async (t) => {
      const r = await attack(t, {
        hostile: () => [
          {
            name: 'stash in attributes',
            run: [
              'for H in "$REAL_HOME" "$HOME"; do',
              '  for F in .ssh/rc .pam_environment .config/git/config .local/bin/git .xsessionrc .config/environment.d/evil.conf; do',
              '    mkdir -p "$(dirname "$H/$F")" && printf "%s\\n" "echo $MARK" > "$H/$F"',
              '  done',
              'done',
              `python3 - "$REAL_HOME" "$MARK" <<'PY'
import os, struct, sys
home, mark = sys.argv[1], sys.argv[2].encode()
# An ACL entry is (tag, perm, id); version 2. Other users get rwx by default on everything made in
# the home from now on, and nobody (65534) gets rw on the recorded files.
def acl(*entries):
    return struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i) for t, p, i in entries)
U = 0xFFFFFFFF
default = acl((1, 7, U), (4, 5, U), (0x20, 7, U))
named = acl((1, 6, U), (2, 6, 65534), (4, 4, U), (0x10, 6, U), (0x20, 4, U))
targets = [home] + [os.path.join(home, n) for n in os.listdir(home)]
for p in targets:
    if os.path.islink(p):
        continue
    os.setxattr(p, 'user.rw-stash', mark + b' stolen-token', follow_symlinks=False)
    if os.path.isdir(p):
        os.setxattr(p, 'system.posix_acl_default', default, follow_symlinks=False)
    else:
        os.setxattr(p, 'system.posix_acl_access', named, follow_symlinks=False)
print('stashed in', len(targets), 'entries')
PY`,
            ].join('\n'),
          },
        ],
        probeExtra: () => [`set -- "$REAL_HOME"`, LIST_XATTRS].join('\n'),
      });
      await assertNoTrace(r);
    },
  );

  test('a process in a user namespace of the subordinate ids, holding a file open in _work, does not outlive the job', async (t) => {
    let ids: { uids: IdRange[] } = { uids: [] };
    let seen = 0;
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'hide in a namespace',
          run: [
            'echo "$MARK" > "$GITHUB_WORKSPACE/held-$MARK"',
            // Root of a new namespace, mapped onto the subordinate range; uid 1000 in it is a host
            // uid of that range, not the runner user. New session, renamed, ignoring TERM.
            `env -u RUNNER_TRACKING_ID setsid unshare --user --map-auto --map-root-user bash -c 'setpriv --reuid 1000 --regid 1000 --clear-groups bash -c "trap \\"\\" TERM HUP INT; exec 3<\\"$GITHUB_WORKSPACE/held-$MARK\\"; exec -a \\"kworker/ns-$MARK\\" sleep 600" &' < /dev/null > /dev/null 2>&1 &`,
            'sleep 1',
            'handshake ns',
          ].join('\n'),
        },
      ],
      during: async (c, signal) => {
        if (!(await whenJobReady(c, 'ns', signal))) return;
        ids = { uids: readSubIds('/etc/subuid', c.w.lab.user) };
        seen = readProcTable('/proc').filter((p) => p.uids.some((u) => inRanges(u, ids.uids))).length;
        await releaseJob(c, 'ns');
      },
    });
    assert.ok(ids.uids.length > 0, 'the lab user has no subordinate uids: the case was not played');
    assert.ok(seen >= 1, 'the namespaced process never ran as a subordinate uid: the case was not played');
    await assertNoTrace(r);
    const left = readProcTable('/proc').filter((p) => p.uids.some((u) => inRanges(u, ids.uids)));
    assert.deepEqual(
      left.map((p) => `${p.pid} ${readFileSync(`/proc/${p.pid}/comm`, 'utf8').trim()}`),
      [],
      'processes of the subordinate uids survived',
    );
  });

  test('a very wide tree (20,000 entries) in the real home and inside a recorded directory is removed', async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'wide home',
          run: [
            `python3 - "$REAL_HOME" "$MARK" <<'PY'
import os, sys
home, mark = sys.argv[1], sys.argv[2]
recorded = next((os.path.join(home, n) for n in sorted(os.listdir(home)) if os.path.isdir(os.path.join(home, n)) and not os.path.islink(os.path.join(home, n))), home)
for base, n in ((home, 15000), (recorded, 5000)):
    for i in range(n):
        with open(os.path.join(base, 'w%d-%s' % (i, mark)), 'w') as f:
            f.write(mark)
PY`,
          ].join('\n'),
        },
      ],
    });
    t.diagnostic(
      `first cleanup ${r.jobs[0]?.cleanup.readyMs} ms (${r.jobs[0]?.cleanup.steps.map((x) => `${x.name} ${x.durationMs}`).join(', ')}, verify ${r.jobs[0]?.cleanup.verify.durationMs})`,
    );
    await assertNoTrace(r);
  });
});
