/**
 * The agent's sweep of the image cache, on a store laid out as distribution writes it (no
 * registry needed): least recently used blobs go first, down to 90% of the cap; a blob used within
 * the in-use window never goes, and a cache that stays over its cap is full, logged once; a
 * sweep re-arms relatime (a blob read since the last sweep gets its ctime moved); abandoned
 * uploads are removed; no cache configured, or no store, is nothing to do.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { IN_USE_MS, MirrorJanitor, PRUNE_TO_RATIO, STALE_UPLOAD_MS } from '../../../src/engine/mirror-janitor.js';
import { createLogger } from '../../../src/lib/log.js';
import { ManualClock } from '../../../src/lib/clock.js';

let lab: Lab;
before(async () => {
  lab = await createLab('rw-mirror-janitor-');
});
after(async () => {
  await lab.dispose();
});

const KiB = 1024;
const HOUR = 3_600_000;

/** A blob of `bytes` last used `agoMs` before `now`; returns its directory. */
async function blob(storage: string, n: number, bytes: number, now: number, agoMs: number): Promise<string> {
  const hex = n.toString(16).padStart(64, '0');
  const dir = path.join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'data'), Buffer.alloc(bytes));
  const t = (now - agoMs) / 1000;
  await fsp.utimes(path.join(dir, 'data'), t, t - 3600);
  return dir;
}

function logged(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger({ level: 'info', destination: { write: (l: string) => void lines.push(l) } }), lines };
}

test('over the cap the least recently used blobs go first, down to 90%; blobs in use stay and a full cache is logged once', async () => {
  const storage = path.join(lab.root, 'store-1');
  const clock = new ManualClock(Date.now());
  const now = clock.now();
  // Ten blobs of 100 KiB, blob i last used i hours ago; blob 10 (300 KiB) used a minute ago.
  const dirs: string[] = [];
  for (let i = 0; i < 10; i++) dirs.push(await blob(storage, i + 1, 100 * KiB, now, i * HOUR + HOUR));
  const fresh = await blob(storage, 99, 300 * KiB, now, 60_000);
  const upload = path.join(storage, 'docker/registry/v2/repositories/library/node/_uploads/abc');
  await fsp.mkdir(upload, { recursive: true });
  await fsp.writeFile(path.join(upload, 'data'), Buffer.alloc(KiB));
  const old = (now - STALE_UPLOAD_MS - 60_000) / 1000;
  await fsp.utimes(upload, old, old);
  const { log, lines } = logged();
  const cap = 800 * KiB;
  const janitor = new MirrorJanitor(() => ({ storage, capBytes: cap }), log, clock);
  const r = await janitor.sweep();
  assert.ok(r);
  assert.ok(r.bytes <= cap * PRUNE_TO_RATIO, `left ${r.bytes}`);
  // 1,300 KiB down to at most 720 KiB: the six least recently used 100 KiB blobs (the oldest uses).
  assert.equal(r.prunedBlobs, 6);
  for (const [i, d] of dirs.entries()) {
    assert.equal(
      await fsp.stat(d).then(
        () => true,
        () => false,
      ),
      i < 4,
      `blob last used ${i + 1} h ago`,
    );
  }
  assert.ok((await fsp.stat(fresh)).isDirectory(), 'the blob in use was pruned');
  assert.equal(r.staleUploads, 1);
  assert.equal(janitor.totals.prunedBlobs, 6);
  assert.equal(janitor.totals.prunedBytes, 600 * KiB);
  assert.ok(lines.some((l) => /pruned to its cap/.test(l)));

  // A cap below what is in use: nothing in use goes, the cache is full, and said so once.
  const tight = new MirrorJanitor(() => ({ storage, capBytes: 100 * KiB }), log, clock);
  clock.advance(IN_USE_MS - 120_000);
  const full = await tight.sweep();
  await tight.sweep();
  assert.equal(full?.overCap, true);
  assert.ok((await fsp.stat(fresh)).isDirectory(), 'a blob used within the in-use window was pruned');
  assert.equal(lines.filter((l) => /image cache full/.test(l)).length, 1, 'the full cache was not logged exactly once');
  assert.ok(lines.some((l) => /docker\.mirrorCapGiB/.test(l)));
});

test('a sweep re-arms relatime: a blob read since the last sweep gets its ctime moved past its atime', async () => {
  const storage = path.join(lab.root, 'store-2');
  const now = Date.now();
  const dir = await blob(storage, 1, KiB, now, 10 * HOUR);
  const data = path.join(dir, 'data');
  // As a read under relatime leaves it: atime newer than ctime.
  await new Promise((r) => setTimeout(r, 20));
  const read = Date.now() + 60_000;
  await fsp.utimes(data, read / 1000, (now - 20 * HOUR) / 1000);
  const before = await fsp.stat(data, { bigint: true });
  assert.ok(before.atimeNs > before.ctimeNs);
  const janitor = new MirrorJanitor(() => ({ storage, capBytes: 1 << 30 }), logged().log, new ManualClock(Date.now()));
  await janitor.sweep();
  const after = await fsp.stat(data, { bigint: true });
  // utimes takes seconds as a double: kept to well under a millisecond, ample for "last used".
  const near = (a: bigint, b: bigint): boolean => (a > b ? a - b : b - a) < 1_000_000n;
  assert.ok(near(after.atimeNs, before.atimeNs), 'the last use was lost');
  assert.ok(near(after.mtimeNs, before.mtimeNs), 'the cached time was lost');
  assert.ok(after.ctimeNs > before.ctimeNs, 'ctime did not move');
});

test('no cache configured, or no store yet: nothing to sweep', async () => {
  const clock = new ManualClock(Date.now());
  assert.equal(await new MirrorJanitor(() => undefined, logged().log, clock).sweep(), undefined);
  const absent = new MirrorJanitor(() => ({ storage: path.join(lab.root, 'absent'), capBytes: 1 }), logged().log, clock);
  assert.equal(await absent.sweep(), undefined);
  assert.equal(absent.totals.sweeps, 0);
});
