/**
 * docs/hostile-jobs.md 10, beyond /tmp, /var/tmp and /dev/shm: every other directory any user may
 * write to on a stock Debian or Ubuntu host (/run/lock, which /var/lock names, and Ubuntu's
 * /var/crash) keeps what a job leaves there for the next job unless the default policy sweeps it.
 * The world stands in for the three usual temp dirs; the other default temp paths are the real
 * ones, and only the lab user's entries (with this run's marker) are ever made or removed there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, lstatSync, mkdirSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
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

test("10. what a job leaves in the runner user's runtime dir (/run/user/<uid>, there with a session or lingering) is swept", async (t) => {
  let runtime = '';
  t.after(() => {
    if (runtime) rmSync(runtime, { recursive: true, force: true });
  });
  const r = await attack(t, {
    setup: async (c) => {
      // As logind makes it for a lingering user: the user's own 0700 directory (a throwaway uid's).
      runtime = path.join('/run/user', String(c.w.lab.user.uid));
      mkdirSync(runtime, { recursive: true, mode: 0o700 });
      chownSync(runtime, c.w.lab.user.uid, c.w.lab.user.gid);
    },
    hostile: () => [
      {
        name: 'leave things in the runtime dir',
        run: [
          'R=/run/user/$(id -u)',
          'echo "token-$MARK" > "$R/$MARK.env"',
          'mkdir -p "$R/gnupg-$MARK/sub" && echo "$MARK" > "$R/gnupg-$MARK/sub/S.agent" && chmod 000 "$R/gnupg-$MARK"',
          'mkfifo "$R/fifo-$MARK"',
          'python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$R/bus-$MARK"',
          'ln -s "$CANARY" "$R/link-$MARK"',
        ].join('\n'),
      },
    ],
    absent: (c) => [
      `${runtime}/${c.marker}.env`,
      `${runtime}/gnupg-${c.marker}`,
      `${runtime}/fifo-${c.marker}`,
      `${runtime}/link-${c.marker}`,
    ],
  });
  await assertNoTrace(r);
  assert.deepEqual(readdirSync(runtime), [], 'entries of the job are left in the runtime dir');
  assert.equal(statSync(runtime).uid, r.c.w.lab.user.uid, 'the runtime dir itself is the user’s and stays');
});
