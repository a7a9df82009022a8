/**
 * docs/hostile-jobs.md 12-16: traps for a root cleaner. Symlinks (and a swapped `_work`) that point at the
 * canary, bind mounts made mid-job (as a privileged job could), mode-000 directories, read-only,
 * immutable and append-only entries, very deep and very wide trees while the health endpoint must
 * keep answering, hostile names, FIFOs and sockets where a naive scanner would open them.
 * 3-15 s each (the 20,000-level tree and the 50,000-file tree are the slow ones: they start first),
 * run concurrently.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { asRoot, assertDefeated, attack, assertNoTrace, healthGet, releaseJob, whenJobReady, type AttackCtx } from './helpers.js';

const DEEP_PY = (levels: number, where: string): string =>
  `python3 -c 'import os,sys\nos.chdir(sys.argv[1])\nfor i in range(${levels}):\n  os.mkdir("d"); os.chdir("d")\nopen("bottom-"+sys.argv[2],"w").write(sys.argv[2])' "${where}" "$MARK"`;

describe('traps for a root cleaner do not make it harm the host or leave traces', { concurrency: 3 }, () => {
  // The two tree tests first: they take the longest (creating, cleaning and deleting the trees), and
  // the others fill the remaining slots around them.
  test('14. a 5,000-level tree (workspace and real home) and 50,000 small files are removed while /healthz keeps answering', async (t) => {
    const polls: { status?: number; ms: number; error?: string }[] = [];
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'grow trees',
          run: [
            DEEP_PY(5_000, '$GITHUB_WORKSPACE'),
            DEEP_PY(5_000, '$REAL_HOME'),
            `python3 -c 'import os,sys\nos.chdir(sys.argv[1])\nfor i in range(250):\n  d="w%d" % i; os.mkdir(d)\n  for j in range(200): open("%s/f%d" % (d, j), "w").write(sys.argv[2])' "$GITHUB_WORKSPACE" "$MARK"`,
          ].join('\n'),
        },
      ],
      during: async (c, signal) => {
        while (!signal.aborted) {
          polls.push(await healthGet(c, '/healthz', HEALTH_TIMEOUT_MS));
          await new Promise((res) => setTimeout(res, 50));
        }
      },
    });
    const failed = polls.filter((p) => p.status !== 200);
    const slowest = Math.max(...polls.map((p) => p.ms));
    t.diagnostic(
      `health polls: ${polls.length}, slowest ${Math.round(slowest)} ms; first job cleanup ${r.jobs[0]?.cleanup.readyMs} ms (${r.jobs[0]?.cleanup.steps.map((x) => `${x.name} ${x.durationMs}`).join(', ')}, verify ${r.jobs[0]?.cleanup.verify.durationMs})`,
    );
    assert.ok(polls.length >= 20, `too few health polls (${polls.length}) to say anything`);
    assert.deepEqual(
      failed.slice(0, 5),
      [],
      `/healthz did not answer 200 during the jobs and the cleanup (${failed.length} of ${polls.length})`,
    );
    assert.ok(slowest < HEALTH_SLOW_MS, `/healthz took ${Math.round(slowest)} ms at worst (the cleanup blocks the event loop?)`);
    await assertNoTrace(r);
  });

  test('14. a 20,000-level tree in the workspace is removed without a stack overflow', async (t) => {
    const r = await attack(t, {
      hostile: () => [{ name: 'deep tree', run: DEEP_PY(20_000, '$GITHUB_WORKSPACE') }],
    });
    await assertNoTrace(r);
  });

  test('12. symlinks to the canary in _work, the workspace, both homes and temp stay links: their targets are untouched', async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'plant symlinks',
          run: [
            'WS=$GITHUB_WORKSPACE',
            'ln -s "$CANARY" "$WORK/evil-$MARK"',
            'ln -s "$CANARY" "$WS/evil"',
            'mkdir -p "$WS/a/b/c" && ln -s "$CANARY/dir" "$WS/a/b/c/deeper"',
            'ln -s "$(realpath --relative-to="$WS/a/b" "$CANARY")" "$WS/a/b/relative-$MARK"',
            'ln -s "$CANARY/plain.txt" "$WS/file-link" && ln -s "$CANARY/user" "$WS/user-link"',
            'ln -s "$CANARY/user/user.txt" "$WS/user-file-link"',
            'ln -s loop "$WS/loop" && ln -s "$WS/a" "$WS/a/b/c/up"',
            'mkdir -p "$WS/chain" && ln -s "$WS/a/b/c/deeper" "$WS/chain/2" && ln -s "$WS/chain/2" "$WS/chain/3"',
            'for H in "$HOME" "$REAL_HOME"; do',
            '  ln -s "$CANARY" "$H/evil-$MARK"',
            '  ln -s "$CANARY/user" "$H/.cache"',
            '  mkdir -p "$H/.docker" && ln -s "$CANARY/user/user.txt" "$H/.docker/config.json"',
            '  ln -s "$CANARY/user/sub" "$H/.ssh-$MARK"',
            'done',
            'for T in "$SYS_TMP" "$SYS_VARTMP" "$SYS_SHM"; do ln -s "$CANARY/user" "$T/evil-$MARK"; ln -s "$CANARY/sticky" "$T/sticky-$MARK"; done',
          ].join('\n'),
        },
      ],
    });
    await assertNoTrace(r);
  });

  test('12. a _work replaced by a symlink to a runner-owned canary dir is not followed into it', async (t) => {
    const r = await attack(t, {
      hostile: (c) => {
        c.jobTouches.push('user-work/_temp');
        return [
          {
            name: 'swap _work for a symlink',
            run: ['cd "$RUNNER_ROOT"', 'mv _work "$TMPDIR/work-$MARK"', 'ln -s "$CANARY/user-work" _work', 'cd /'].join('\n'),
          },
        ];
      },
    });
    await assertDefeated(t, r);
  });

  test('12. bind mounts of the canary and a tmpfs inside _work and the real home (a privileged job) are detached, never emptied', async (t) => {
    let mounted = 0;
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'ask for mounts',
          run: [
            'mkdir -p "$GITHUB_WORKSPACE/bind-$MARK" "$GITHUB_WORKSPACE/tmpfs-$MARK" "$REAL_HOME/bind-$MARK"',
            'handshake mount',
            'echo "$MARK" > "$GITHUB_WORKSPACE/tmpfs-$MARK/on-tmpfs" || true',
          ].join('\n'),
        },
      ],
      during: async (c: AttackCtx, signal) => {
        if (!(await whenJobReady(c, 'mount', signal))) return;
        const ws = path.join(c.work, 'app', 'app');
        if (asRoot('mount', ['--bind', path.join(c.canary, 'dir'), path.join(ws, `bind-${c.marker}`)])) mounted++;
        if (asRoot('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=1777', 'tmpfs', path.join(ws, `tmpfs-${c.marker}`)])) mounted++;
        if (asRoot('mount', ['--bind', path.join(c.canary, 'user'), path.join(c.realHome, `bind-${c.marker}`)])) mounted++;
        await releaseJob(c, 'mount');
      },
    });
    assert.equal(
      mounted,
      3,
      `the test could not make its mounts (is this a container without CAP_SYS_ADMIN?); agent exit ${JSON.stringify(r.exit)}, ` +
        `journal: ${JSON.stringify(r.records.map((x) => ('event' in x ? x.event : x.type)))}, jobs: ${JSON.stringify(r.jobs.map((j) => j.result))}`,
    );
    await assertDefeated(t, r);
  });

  test('13. mode 000 directories, read-only files and dirs, immutable and append-only entries are removed everywhere', async (t) => {
    let attrs = 0;
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'lock things',
          run: [
            'WS=$GITHUB_WORKSPACE',
            'for D in "$WS" "$REAL_HOME" "$HOME" "$SYS_TMP"; do',
            '  mkdir -p "$D/locked-$MARK/inner/deeper" && echo "$MARK" > "$D/locked-$MARK/inner/deeper/f"',
            '  chmod 000 "$D/locked-$MARK/inner/deeper" "$D/locked-$MARK/inner" "$D/locked-$MARK"',
            '  mkdir -p "$D/ro-$MARK/sub" && echo "$MARK" > "$D/ro-$MARK/sub/f" && chmod 444 "$D/ro-$MARK/sub/f"',
            '  chmod 555 "$D/ro-$MARK/sub" "$D/ro-$MARK"',
            '  echo "$MARK" > "$D/nomode-$MARK" && chmod 000 "$D/nomode-$MARK"',
            'done',
            // A hard link to the canary's read-only runner-owned file: a cleaner that chmods before unlinking changes the canary.
            'ln "$CANARY/user/ro.txt" "$WS/hardlink-ro-$MARK"',
            'echo "$MARK" > "$WS/immutable-$MARK" && mkdir -p "$WS/appendonly-$MARK" && echo x > "$WS/appendonly-$MARK/f"',
            'echo "$MARK" > "$REAL_HOME/immutable-$MARK"',
            'handshake attrs',
          ].join('\n'),
        },
      ],
      during: async (c, signal) => {
        if (!(await whenJobReady(c, 'attrs', signal))) return;
        const ws = path.join(c.work, 'app', 'app');
        // chattr needs CAP_LINUX_IMMUTABLE: the test plays a privileged job.
        if (asRoot('chattr', ['+i', path.join(ws, `immutable-${c.marker}`)])) attrs++;
        if (asRoot('chattr', ['+a', path.join(ws, `appendonly-${c.marker}`)])) attrs++;
        if (asRoot('chattr', ['+i', path.join(c.realHome, `immutable-${c.marker}`)])) attrs++;
        await releaseJob(c, 'attrs');
      },
    });
    assert.equal(attrs, 3, 'chattr failed here; the immutable case was not exercised');
    await assertNoTrace(r);
  });

  test('15. names with newlines, spaces, leading dashes, globs, control bytes and invalid UTF-8 are removed everywhere', async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'hostile names',
          run: [
            'for D in "$GITHUB_WORKSPACE" "$REAL_HOME" "$HOME" "$SYS_TMP"; do',
            `python3 - "$D" "$MARK" <<'PY'
import os, sys
d = os.fsencode(sys.argv[1]); m = sys.argv[2].encode()
names = [b'new\\nline-' + m, b'with space ' + m, b'-rf ' + m, b'--help-' + m, b'-' + m, b'\\xff\\xfe-' + m,
         b'tab\\there-' + m, b'back\\\\slash-' + m, b'*' + m, b'..' + m, b'L' * 200 + m, b'\\x01ctl-' + m,
         b' lead-' + m, b'trail-' + m + b' ', b'$(touch pwned)' + m, b'\\xc3\\x28-' + m]
for n in names:
    p = d + b'/' + n
    os.mkdir(p)
    with open(p + b'/' + n, 'wb') as f:
        f.write(m)
    with open(p + b'/\\n', 'wb') as f:
        f.write(m)
PY`,
            'done',
          ].join('\n'),
        },
      ],
    });
    await assertNoTrace(r);
  });

  test('16. FIFOs and unix sockets in _work, both homes (some at credential paths) and temp do not hang the cleaner', async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'fifos and sockets',
          run: [
            'sock() { python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$1"; }',
            'for D in "$GITHUB_WORKSPACE" "$REAL_HOME" "$HOME" "$SYS_TMP"; do',
            '  mkfifo "$D/fifo-$MARK" && sock "$D/sock-$MARK"',
            'done',
            // Where the credentials step and the home baseline look: a naive open() blocks forever.
            'for H in "$HOME" "$REAL_HOME"; do',
            '  mkdir -p "$H/.docker" "$H/.ssh" "$H/.aws" && mkfifo "$H/.docker/config.json" "$H/.netrc" "$H/.aws/credentials"',
            '  sock "$H/.ssh/agent-$MARK.sock"',
            'done',
            // A baseline file replaced by a FIFO: restoring it must not open the FIFO.
            'rm -f "$REAL_HOME/.bashrc" && mkfifo "$REAL_HOME/.bashrc"',
            // A FIFO that something keeps open for writing (a hung reader would wait on it).
            'env -u RUNNER_TRACKING_ID setsid bash -c \'exec 3<>"$GITHUB_WORKSPACE/fifo-$MARK"; exec -a "fifo-holder-$MARK" sleep 600\' < /dev/null > /dev/null 2>&1 &',
          ].join('\n'),
        },
      ],
      // A hung cleaner never ends: twice the time this took with the machine's load at 16 is proof enough.
      runLimitMs: 120_000,
    });
    await assertNoTrace(r);
  });

  test("the runner's own _diag logs do not hand the first job's output to the second job", async (t) => {
    const r = await attack(t, {
      hostile: () => [{ name: 'print', run: 'echo "output of the first job: $MARK"' }],
      extraRoots: (c) => [path.join(c.w.runnerRoot, '_diag')],
    });
    await assertNoTrace(r);
  });
});

/** One health request may take this long before it counts as failed. */
const HEALTH_TIMEOUT_MS = 5_000;
/**
 * The slowest answer allowed while the trees are created and removed: the issue's event-loop
 * target is 50 ms p99; on two shared cores with other tests running, 2 s flags a blocked loop
 * (a synchronous walk of 50,000 files) without flaking on scheduler noise.
 */
const HEALTH_SLOW_MS = 2_000;
