/** The compact table of a baseline's file entries: what goes in comes out, found by full path. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileTable } from '../../../src/integrity/file-table.js';
import type { FileMeta } from '../../../src/integrity/types.js';

const meta = (i: number, extra: Partial<FileMeta> = {}): FileMeta => ({
  type: 'f',
  ino: 2 ** 40 + i,
  size: i * 7,
  mode: 0o4755,
  uid: i % 3,
  gid: 4_000_000_000 + (i % 5),
  mtimeMs: 1_765_000_000_123.456 + i,
  ctimeMs: 1_765_000_000_999.5 + i,
  ...extra,
});

test('every entry of a table grown past its first allocation is found by its path, with its metadata', () => {
  const t = new FileTable();
  const paths: string[] = [];
  for (let i = 0; i < 5_000; i++) {
    // Names that share directories, non-ASCII names, and the top directory itself.
    const p = i === 0 ? '/' : `/etc/d${i % 40}/${i % 11 === 0 ? `é名-${i}` : `f${i}`}`;
    paths.push(p);
    t.set(p, meta(i, i % 7 === 0 ? { hash: (i % 16).toString(16).repeat(64) } : {}), i % 2 ? 'etc' : 'setuid');
  }
  t.set('/etc/l', { ...meta(9, { type: 'l', link: '/etc/target with space' }) }, 'etc');
  t.trim();
  assert.equal(t.size, 5_001);
  for (const [i, p] of paths.entries()) {
    const r = t.row(p);
    assert.notEqual(r, undefined, `${p} not found`);
    assert.equal(t.path(r as number), p);
    assert.equal(t.surface(r as number), i % 2 ? 'etc' : 'setuid');
    assert.deepEqual(t.meta(r as number), meta(i, i % 7 === 0 ? { hash: (i % 16).toString(16).repeat(64) } : {}), `${p} metadata`);
    assert.ok(t.sameStat(r as number, meta(i)));
    assert.ok(!t.sameStat(r as number, meta(i, { ctimeMs: meta(i).ctimeMs + 1 })), 'a changed ctime must not count as the same');
  }
  assert.equal(t.meta(t.row('/etc/l') as number).link, '/etc/target with space');
  for (const p of ['/etc/d1/f2', '/etc/d999/f1', '/etc/d1', '/etc/d1/f1/x', '/nope'])
    assert.equal(t.row(p), undefined, `${p} is not in the table`);
});

test('setting a recorded path again replaces its entry in place; rows added after a trim are found', () => {
  const t = new FileTable();
  t.set('/etc/hosts', meta(1, { hash: 'a'.repeat(64) }), 'etc');
  t.trim();
  t.set('/etc/hosts', meta(2), 'etc');
  t.set('/etc/passwd', meta(3), 'root-home');
  assert.equal(t.size, 2);
  assert.deepEqual(t.meta(t.row('/etc/hosts') as number), meta(2));
  assert.deepEqual(t.meta(t.row('/etc/passwd') as number), meta(3));
});
