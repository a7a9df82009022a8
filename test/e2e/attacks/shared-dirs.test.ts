/**
 * docs/hostile-jobs.md 10, beyond /tmp, /var/tmp and /dev/shm: every other directory any user may
 * write to on a stock Debian or Ubuntu host (/run/lock, which /var/lock names, and Ubuntu's
 * /var/crash) keeps what a job leaves there for the next job unless the default policy sweeps it.
 * The world stands in for the three usual temp dirs; the other default temp paths are the real
 * ones, and only the lab user's entries (with this run's marker) are ever made or removed there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { attack, assertNoTrace } from './helpers.js';
import { DEFAULT_POLICY } from '../../../src/policy/types.js';

/** The temp dirs the world replaces with stand-ins inside its own root. */
const STOOD_IN = new Set(['/tmp', '/var/tmp', '/dev/shm']);

/** Shared directories a job could write to on Debian and Ubuntu hosts (those present here are played). */
const CANDIDATES = ['/run/lock', '/var/lock', '/var/crash', '/var/metrics'];

function worldWritableDir(p: string): boolean {
  try {
    const st = statSync(p);
    return st.isDirectory() && (st.mode & 0o002) !== 0;
  } catch {
    return false;
  }
}

/** Entries of `dirs` whose name holds `marker` (what the job planted, if anything is left). */
function planted(dirs: string[], marker: string): string[] {
  return dirs.flatMap((d) =>
    readdirSync(d)
      .filter((n) => n.includes(marker))
      .map((n) => path.join(d, n)),
  );
}

test("10. a job's files in the host's other shared writable dirs (/run/lock, /var/crash) are swept by the default policy", async (t) => {
  // /var/lock is a link to /run/lock: each directory once, by its real path.
  const dirs = [...new Set(CANDIDATES.filter(worldWritableDir).map((d) => realpathSync(d)))];
  if (dirs.length === 0) {
    t.skip(`none of ${CANDIDATES.join(', ')} is a world-writable directory here`);
    return;
  }
  let marker = '';
  t.after(() => {
    // A failed run leaves the lab user's entries in the real directories: remove exactly those.
    for (const p of marker ? planted(dirs, marker) : []) rmSync(p, { recursive: true, force: true });
  });
  const r = await attack(t, {
    policy: (c) => ({
      cleanup: {
        temp: { paths: [c.sys.tmp, c.sys.varTmp, c.sys.shm, ...DEFAULT_POLICY.cleanup.temp.paths.filter((p) => !STOOD_IN.has(p))] },
      },
    }),
    hostile: (c) => {
      marker = c.marker;
      return [
        {
          name: 'leave things in shared dirs',
          run: [
            `for D in ${dirs.join(' ')}; do`,
            '  echo "token-$MARK" > "$D/$MARK.lock"',
            '  mkdir -p "$D/.$MARK/sub" && echo "$MARK" > "$D/.$MARK/sub/payload"',
            '  mkfifo "$D/fifo-$MARK"',
            '  ln -s "$CANARY" "$D/link-$MARK"',
            'done',
          ].join('\n'),
        },
      ];
    },
    absent: (c) => dirs.flatMap((d) => [`${d}/${c.marker}.lock`, `${d}/.${c.marker}`, `${d}/fifo-${c.marker}`, `${d}/link-${c.marker}`]),
  });
  await assertNoTrace(r);
  const left = planted(dirs, r.c.marker).map((p) => `${p} (uid ${lstatSync(p).uid})`);
  assert.deepEqual(left, [], 'entries of the job are left in the shared directories');
});
