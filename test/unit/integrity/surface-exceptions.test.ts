/** The var surface's churn is excepted on that surface only: a home under /var/cache keeps its keys checked. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareSnapshots } from '../../../src/integrity/compare.js';
import { GlobSet } from '../../../src/integrity/glob.js';
import { exceptionPatterns } from '../../../src/integrity/surfaces.js';
import type { FileMeta, Snapshot, SurfaceName } from '../../../src/integrity/types.js';

const file: FileMeta = { type: 'f', ino: 7, size: 10, mode: 0o644, uid: 0, gid: 0, mtimeMs: 1, ctimeMs: 1 };
const snap = (files: [string, SurfaceName][]): Snapshot => ({
  files: Object.fromEntries(files.map(([p]) => [p, file])),
  fileSurface: Object.fromEntries(files),
  objects: {},
  unreadable: [],
});

test('var churn is no drift on the var surface; the same paths on another surface, and var outside the churn, are', () => {
  const exceptions = new GlobSet(exceptionPatterns({ exceptions: [], allowPackages: false }));
  const now = snap([
    ['/var/cache/apt/pkgcache.bin', 'var'],
    ['/var/log/syslog', 'var'],
    ['/var/lib/systemd/timers/stamp-apt-daily.timer', 'var'],
    ['/var/cache/man/.ssh/authorized_keys', 'authorized-keys'],
    ['/var/lib/dpkg/info/evil.postinst', 'var'],
  ]);
  const drift = compareSnapshots(snap([]), now, { root: '/nonexistent', exceptions });
  assert.deepEqual(
    drift.map((d) => `${d.surface}: ${d.object} ${d.change}`),
    ['authorized-keys: /var/cache/man/.ssh/authorized_keys added', 'var: /var/lib/dpkg/info/evil.postinst added'],
  );
  // Removed churn is no drift either.
  assert.deepEqual(compareSnapshots(snap([['/var/log/old.log', 'var']]), snap([]), { root: '/nonexistent', exceptions }), []);
});

test("at's job counter is no drift; a job queued beside it is", () => {
  const exceptions = new GlobSet(exceptionPatterns({ exceptions: [], allowPackages: false }));
  const before = snap([['/var/spool/cron/atjobs/.SEQ', 'cron']]);
  const bumped: Snapshot = { ...before, files: { '/var/spool/cron/atjobs/.SEQ': { ...file, size: 11, mtimeMs: 2, ctimeMs: 2 } } };
  assert.deepEqual(compareSnapshots(before, bumped, { root: '/nonexistent', exceptions }), []);
  const queued = snap([
    ['/var/spool/cron/atjobs/.SEQ', 'cron'],
    ['/var/spool/cron/atjobs/a0001201b2c3d4', 'cron'],
    ['/var/spool/at/.SEQ', 'cron'],
  ]);
  assert.deepEqual(
    compareSnapshots(before, queued, { root: '/nonexistent', exceptions }).map((d) => `${d.surface}: ${d.object} ${d.change}`),
    ['cron: /var/spool/cron/atjobs/a0001201b2c3d4 added'],
  );
});
