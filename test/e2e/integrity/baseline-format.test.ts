/**
 * The stored baseline, streamed one file entry a line: what is saved loads back the same, a file
 * cut short or edited is corrupt, and a baseline of the first format (one JSON line) still loads.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { integrityPaths, loadBaseline, saveBaseline } from '../../../src/integrity/baseline-store.js';
import { FileTable } from '../../../src/integrity/file-table.js';
import { IntegrityBaselineError, type FileMeta, type SystemBaseline } from '../../../src/integrity/types.js';

const entry = (i: number): FileMeta => ({
  type: i % 5 === 0 ? 'l' : 'f',
  ino: 1000 + i,
  size: i,
  mode: 0o644,
  uid: 0,
  gid: 0,
  mtimeMs: 1_765_000_000_000.25 + i,
  ctimeMs: 1_765_000_000_000.75 + i,
  ...(i % 5 === 0 ? { link: `/target\n${i}` } : i % 2 ? { hash: createHash('sha256').update(String(i)).digest('hex') } : {}),
});

function baseline(n: number): SystemBaseline {
  const files = new FileTable();
  for (let i = 0; i < n; i++) files.set(`/etc/d${i % 9}/f "${i}"`, entry(i), i % 3 ? 'etc' : 'systemd');
  return {
    format: 2,
    takenAt: '2026-12-07T00:00:00.000Z',
    identity: { machineId: 'm', kernel: 'k', packageSet: 'p', packageCount: 1 },
    surfaces: ['etc', 'systemd'],
    snapshot: { files, objects: { 'sysctl:kernel.x': '1' }, unreadable: ['/x: EACCES'] },
  };
}

test('a saved baseline loads back entry for entry; cut short or edited, it is corrupt', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-baseline-format-'));
  try {
    const b = baseline(3_000);
    const file = await saveBaseline(dir, b);
    const { baseline: back, digest } = await loadBaseline(dir);
    assert.match(digest, /^[0-9a-f]{64}$/);
    assert.equal(back.snapshot.files.size, 3_000);
    for (let r = 0; r < 3_000; r++) {
      const p = b.snapshot.files.path(r);
      assert.deepEqual(back.snapshot.files.meta(back.snapshot.files.row(p) as number), b.snapshot.files.meta(r), p);
      assert.equal(back.snapshot.files.surface(back.snapshot.files.row(p) as number), b.snapshot.files.surface(r));
    }
    assert.deepEqual(back.snapshot.objects, b.snapshot.objects);
    assert.deepEqual(back.identity, b.identity);
    const text = await readFile(file, 'utf8');
    const cut = text.slice(0, text.lastIndexOf('\n', text.length - 2) + 1);
    for (const [what, bad] of [
      ['cut short', cut],
      ['an entry edited', text.replace('"/etc/d1/f \\"1\\""', '"/etc/d1/f \\"x\\""')],
    ]) {
      await writeFile(file, bad as string, { mode: 0o600 });
      await assert.rejects(
        loadBaseline(dir),
        (e: unknown) => e instanceof IntegrityBaselineError && e.kind === 'corrupt',
        `${what}: not corrupt`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a baseline of the first format (the whole snapshot on one line) still loads', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-baseline-format-'));
  try {
    const body = JSON.stringify({
      format: 1,
      takenAt: '2026-12-01T00:00:00.000Z',
      identity: { machineId: 'm', kernel: 'k', packageSet: 'p', packageCount: 1 },
      surfaces: ['etc'],
      snapshot: { files: { '/etc/hosts': entry(1) }, fileSurface: { '/etc/hosts': 'etc' }, objects: { 'user:root': 'x' }, unreadable: [] },
    });
    await mkdir(integrityPaths(dir).dir, { mode: 0o700 });
    const digest = createHash('sha256').update(body).digest('hex');
    await writeFile(integrityPaths(dir).baseline, `${JSON.stringify({ digest })}\n${body}\n`, { mode: 0o600 });
    const { baseline: back, digest: loaded } = await loadBaseline(dir);
    assert.equal(loaded, digest);
    assert.deepEqual(back.snapshot.files.meta(back.snapshot.files.row('/etc/hosts') as number), entry(1));
    assert.deepEqual(back.snapshot.objects, { 'user:root': 'x' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
