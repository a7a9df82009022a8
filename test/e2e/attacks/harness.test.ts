/**
 * The harness proves itself: the probe, run at the end of the hostile job (before any cleanup),
 * must find each kind of trace the job left, and the same probe in the next job must then find
 * none. Without this, a probe that finds nothing would prove nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attack, assertNoTrace } from './helpers.js';

test('the probe finds every kind of trace before cleanup, and none of them after it', async (t) => {
  const r = await attack(t, {
    selfCheck: true,
    hostile: () => [
      {
        name: 'leave a bit of everything',
        run: [
          'env -u RUNNER_TRACKING_ID setsid nohup bash -c \'exec -a "$MARK-sleeper" sleep 600\' > /dev/null 2>&1 < /dev/null &',
          'echo "$MARK" > "$REAL_HOME/.planted"',
          'echo "$MARK" > "$HOME/.planted"',
          'echo "$MARK" > "$SYS_TMP/planted"',
          'echo "$MARK" > "$GITHUB_WORKSPACE/planted"',
          'echo "* * * * * true # $MARK" | crontab -',
          'ipcmk -M 4096',
        ].join('\n'),
      },
    ],
  });
  const p = r.selfProbe;
  assert.ok(p, 'the probe step of the hostile job wrote no findings');
  assert.ok(
    p.proc?.some((l) => l.includes('cmdline')),
    `the renamed process was not found in /proc: ${JSON.stringify(p.proc)}`,
  );
  assert.ok(
    p.home?.some((l) => l.includes('.planted')),
    `the planted home file was not found: ${JSON.stringify(p.home)}`,
  );
  assert.ok(
    p.temp?.some((l) => l.includes('planted')),
    'the temp file was not found',
  );
  assert.ok(
    p.work?.some((l) => l.includes('planted')),
    `the workspace file was not found: ${JSON.stringify(p.work)}`,
  );
  assert.ok(p.absent?.length, 'the per-job HOME was not found');
  assert.ok(
    p.system?.some((l) => l.startsWith('crontab')),
    'the crontab was not found',
  );
  assert.ok(
    p.system?.some((l) => l.startsWith('SysV shm')),
    'the SysV segment was not found',
  );
  assert.ok(
    p.needles?.some((l) => l.includes('.planted')),
    'no needle hit in the per-job HOME',
  );
  await assertNoTrace(r);
});
