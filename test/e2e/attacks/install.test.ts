/**
 * docs/hostile-jobs.md 11: a job changes the runner installation so that its code runs in the next job.
 * The runner root belongs to the runner user (bin/ and the scripts are root's, but a directory the
 * user owns lets it replace them). The host must not be reused: the second job stays queued and
 * the payload never runs. One host per case, 3-5 s each, run concurrently.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { attack, assertNotReused } from './helpers.js';

/** Each case plants `payload` (a line of shell that drops `pwned-<case>`) somewhere the runner runs. */
const CASES: { name: string; script: (payload: string) => string }[] = [
  {
    name: 'bin/Runner.Listener replaced by a copy that runs a payload',
    script: (payload) =>
      [
        'cd "$RUNNER_ROOT"',
        'mv bin "bin.orig-$MARK" && mkdir bin && cp -a "bin.orig-$MARK/." bin/',
        `{ head -n 1 "bin.orig-$MARK/Runner.Listener"; echo '${payload}'; tail -n +2 "bin.orig-$MARK/Runner.Listener"; } > bin/Runner.Listener`,
        'chmod 755 bin/Runner.Listener',
      ].join('\n'),
  },
  {
    name: 'a file added to bin/ (a preloadable library)',
    script: (payload) =>
      [
        'cd "$RUNNER_ROOT"',
        'mv bin "bin.orig-$MARK" && mkdir bin && cp -a "bin.orig-$MARK/." bin/',
        `printf '#!/bin/sh\\n%s\\n' '${payload}' > bin/libhook.so`,
      ].join('\n'),
  },
  {
    name: 'run.sh replaced',
    script: (payload) =>
      [
        'cd "$RUNNER_ROOT"',
        'cp run.sh "$TMPDIR/run.sh"',
        `{ echo '#!/bin/bash'; echo '${payload}'; cat "$TMPDIR/run.sh" 2>/dev/null; } > "run.sh.new-$MARK"`,
        `rm -f run.sh && mv "run.sh.new-$MARK" run.sh && chmod 755 run.sh`,
      ].join('\n'),
  },
  {
    name: '.env gains BASH_ENV pointing at a payload',
    script: (payload) =>
      [
        'cd "$RUNNER_ROOT"',
        `printf '%s\\n' '${payload}' > "$REAL_HOME/.payload-$MARK.sh"`,
        // .env is root's, but the runner root is the user's: replace the file rather than append to it.
        '{ cat .env; echo "BASH_ENV=$REAL_HOME/.payload-$MARK.sh"; } > "$TMPDIR/env" && rm -f .env && cp "$TMPDIR/env" .env',
      ].join('\n'),
  },
  {
    name: '.path puts a job-owned directory first',
    script: (payload) =>
      [
        'cd "$RUNNER_ROOT"',
        'mkdir -p "$REAL_HOME/.evilbin-$MARK"',
        `printf '#!/bin/sh\\n%s\\nexec /usr/bin/bash "$@"\\n' '${payload}' > "$REAL_HOME/.evilbin-$MARK/bash"`,
        'chmod 755 "$REAL_HOME/.evilbin-$MARK/bash"',
        'echo "$REAL_HOME/.evilbin-$MARK:$(cat .path)" > "$TMPDIR/path" && rm -f .path && cp "$TMPDIR/path" .path',
      ].join('\n'),
  },
  {
    name: 'a script added next to run.sh (run-helper.sh, which the real run.sh executes)',
    script: (payload) =>
      ['cd "$RUNNER_ROOT"', `printf '#!/bin/bash\\n%s\\n' '${payload}' > run-helper.sh`, 'chmod 755 run-helper.sh'].join('\n'),
  },
];

describe('a tampered runner installation is never reused', { concurrency: 3 }, () => {
  for (const [i, k] of CASES.entries()) {
    test(`11.${i + 1} ${k.name}: the host is quarantined or recycled and the payload never runs`, async (t) => {
      let drop = '';
      const r = await attack(t, {
        hostile: (c) => {
          drop = c.w.dropDir;
          return [{ name: 'tamper', run: k.script(`touch ${c.w.dropDir}/pwned-${i} 2>/dev/null || true`) }];
        },
      });
      assert.equal(r.jobs[0]?.result, 'Succeeded', 'the hostile job did not tamper as intended');
      const pwned = (await fsp.readdir(drop)).filter((n) => n.startsWith('pwned-'));
      assert.deepEqual(pwned, [], 'the planted payload ran after the job (the tampered install was used)');
      await assertNotReused(r);
      assert.ok(
        r.jobs[0]?.cleanup.verify.problems.some((p) => /runner install/i.test(p)) ||
          r.jobs[0]?.cleanup.steps.some((s) => s.name === 'runner-install' && s.outcome !== 'ok'),
        `the report should name the runner installation: ${JSON.stringify(r.jobs[0]?.cleanup.verify.problems)}`,
      );
    });
  }
});
