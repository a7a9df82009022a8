/**
 * docs/hostile-jobs.md 12-13 aimed at the places the other trap tests do not: the job's own per-job
 * HOME, TMPDIR and DOCKER_CONFIG (deleted whole after the job) and the roots of the trees the
 * cleanup restores (the real home itself, `_work` itself), rather than entries inside them.
 * 5-15 s each.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { chown, link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { asRoot, assertDefeated, attack, releaseJob, whenJobReady } from './helpers.js';

describe('the per-job dirs and the roots of restored trees do not turn the cleaner against the host', { concurrency: 2 }, () => {
  test('12. bind mounts of the canary and a tmpfs inside the per-job HOME, TMPDIR and DOCKER_CONFIG (a privileged job) are detached, never emptied', async (t) => {
    let mounted = 0;
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'ask for mounts in the per-job dirs',
          run: [
            'mkdir -p "$HOME/bind-$MARK" "$TMPDIR/bind-$MARK" "$DOCKER_CONFIG/tmpfs-$MARK"',
            'handshake mount',
            'echo "$MARK" > "$DOCKER_CONFIG/tmpfs-$MARK/on-tmpfs" || true',
          ].join('\n'),
        },
      ],
      during: async (c, signal) => {
        if (!(await whenJobReady(c, 'mount', signal))) return;
        // The preamble wrote the job's HOME, TMPDIR and DOCKER_CONFIG, one a line.
        const [home, tmp, docker] = readFileSync(path.join(c.w.dropDir, 'job1-dirs'), 'utf8').trim().split('\n');
        if (home && asRoot('mount', ['--bind', path.join(c.canary, 'dir'), path.join(home, `bind-${c.marker}`)])) mounted++;
        if (tmp && asRoot('mount', ['--bind', path.join(c.canary, 'user'), path.join(tmp, `bind-${c.marker}`)])) mounted++;
        if (docker && asRoot('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=1777', 'tmpfs', path.join(docker, `tmpfs-${c.marker}`)]))
          mounted++;
        await releaseJob(c, 'mount');
      },
    });
    assert.equal(mounted, 3, `the test could not make its mounts; agent exit ${JSON.stringify(r.exit)}`);
    await assertDefeated(t, r);
  });

  test('13. mode 000 on the per-job HOME, TMPDIR and DOCKER_CONFIG themselves, on the real home, _work, _diag and the workspace, with content inside', async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'lock the roots',
          run: [
            'for D in "$HOME" "$TMPDIR" "$DOCKER_CONFIG" "$REAL_HOME"; do',
            '  mkdir -p "$D/in-$MARK/sub" && echo "$MARK" > "$D/in-$MARK/sub/f" && chmod 000 "$D/in-$MARK/sub" "$D/in-$MARK"',
            '  echo "$MARK" > "$D/top-$MARK"',
            'done',
            'echo "$MARK" > "$GITHUB_WORKSPACE/ws-$MARK"',
            // Last, and in a background process that outlives the step, so the runner's own end of
            // job does not trip over them: the roots themselves.
            'env -u RUNNER_TRACKING_ID setsid bash -c \'sleep 0.5; chmod 000 "$HOME" "$TMPDIR" "$DOCKER_CONFIG" "$REAL_HOME" "$GITHUB_WORKSPACE" "$WORK" "$RUNNER_ROOT/_diag"\' < /dev/null > /dev/null 2>&1 &',
          ].join('\n'),
        },
      ],
    });
    await assertDefeated(t, r);
  });

  // (The runner root made world-writable is caught by the runner install's manifest: quarantine.)
  test('13. _work made world-writable and setgid (another local user could then write the checkout of the next job)', async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'open the roots to everyone',
          run: 'env -u RUNNER_TRACKING_ID setsid bash -c \'sleep 0.5; chmod 2777 "$WORK"\' < /dev/null > /dev/null 2>&1 &',
        },
      ],
    });
    await assertDefeated(t, r);
    if (r.jobs.length === 2) {
      const mode = (p: string): string => (statSync(p).mode & 0o7777).toString(8);
      assert.equal(mode(r.c.work), '755', '_work stays open to other users');
    }
  });

  test('13. a recorded home file replaced by a hard link to a root-owned file of the same content (a privileged job, or protected_hardlinks off) is not chowned through the link', async (t) => {
    let linked = false;
    const r = await attack(t, {
      setup: async (c) => {
        // The image's .bashrc came from /etc/skel: a root-owned file with the very same bytes.
        const home = await readFile(path.join(c.realHome, '.bashrc'));
        await writeFile(path.join(c.canary, 'skel-bashrc'), home, { mode: 0o644 });
      },
      hostile: () => [{ name: 'wait for the link', run: 'handshake link' }],
      during: async (c, signal) => {
        if (!(await whenJobReady(c, 'link', signal))) return;
        const bashrc = path.join(c.realHome, '.bashrc');
        await unlink(bashrc);
        await link(path.join(c.canary, 'skel-bashrc'), bashrc);
        linked = true;
        await releaseJob(c, 'link');
      },
    });
    assert.ok(linked, 'the hard link was never made: the case was not played');
    await assertDefeated(t, r);
  });

  test('12. a bind mount of a root-owned directory on _work itself (a privileged job) is not emptied, chowned or chmodded through', async (t) => {
    let mounted = false;
    const r = await attack(t, {
      hostile: () => [{ name: 'ask for a mount on _work', run: 'handshake mount' }],
      during: async (c, signal) => {
        if (!(await whenJobReady(c, 'mount', signal))) return;
        mounted = asRoot('mount', ['--bind', path.join(c.canary, 'dir'), c.work]);
        await releaseJob(c, 'mount');
      },
    });
    assert.ok(mounted, 'the test could not make its mount');
    await assertDefeated(t, r);
  });

  test('12. a bind mount of a root-owned directory over a recorded directory of the real home (a privileged job) is not emptied, chowned or chmodded through', async (t) => {
    let mounted = false;
    const r = await attack(t, {
      setup: async (c) => {
        // A directory of the image's home, recorded by the baseline.
        await mkdir(path.join(c.realHome, '.config'), { mode: 0o755 });
        await chown(path.join(c.realHome, '.config'), c.w.lab.user.uid, c.w.lab.user.gid);
      },
      hostile: () => [{ name: 'ask for a mount over ~/.config', run: 'handshake mount' }],
      during: async (c, signal) => {
        if (!(await whenJobReady(c, 'mount', signal))) return;
        mounted = asRoot('mount', ['--bind', path.join(c.canary, 'dir'), path.join(c.realHome, '.config')]);
        await releaseJob(c, 'mount');
      },
    });
    assert.ok(mounted, 'the test could not make its mount');
    await assertDefeated(t, r);
  });

  test("12. a bind mount of root's own credential directory over ~/.docker and ~/.ssh (a privileged job) does not make the credential sweep delete root's files", async (t) => {
    let mounted = 0;
    const r = await attack(t, {
      setup: async (c) => {
        // Root's docker login and ssh key, as on an admin's host.
        for (const [dir, file] of [
          ['root-docker', 'config.json'],
          ['root-ssh', 'id_ed25519'],
        ] as const) {
          await mkdir(path.join(c.canary, dir), { mode: 0o700 });
          await writeFile(path.join(c.canary, dir, file), `root's own ${file}\n`, { mode: 0o600 });
        }
      },
      hostile: () => [{ name: 'ask for mounts', run: 'mkdir -p "$REAL_HOME/.docker" "$REAL_HOME/.ssh"\nhandshake mount' }],
      during: async (c, signal) => {
        if (!(await whenJobReady(c, 'mount', signal))) return;
        if (asRoot('mount', ['--bind', path.join(c.canary, 'root-docker'), path.join(c.realHome, '.docker')])) mounted++;
        if (asRoot('mount', ['--bind', path.join(c.canary, 'root-ssh'), path.join(c.realHome, '.ssh')])) mounted++;
        await releaseJob(c, 'mount');
      },
    });
    assert.equal(mounted, 2, 'the test could not make its mounts');
    await assertDefeated(t, r);
  });
});
