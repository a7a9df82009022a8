/**
 * A write that a filling filesystem takes only in part must not pass for a durable line: the
 * journal then believes a record written that is torn, and appends the next one onto it (a record
 * lost in a soak so). On a tmpfs with one page free, a line of three pages is refused with ENOSPC.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { appendLineDurable } from '../../../src/lib/fs.js';

test('a line the filesystem takes only in part is an error, never a silent torn line', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-short-write-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', dir]);
  t.after(async () => {
    execFileSync('umount', ['-l', dir]);
    await rm(dir, { recursive: true, force: true });
  });
  // Fill all but about one page.
  await writeFile(path.join(dir, 'filler'), Buffer.alloc(60 * 1024));
  const file = path.join(dir, 'journal.jsonl');
  const line = `${JSON.stringify({ pad: 'x'.repeat(12 * 1024) })}\n`;
  await assert.rejects(appendLineDurable(file, line), (err: NodeJS.ErrnoException) => err.code === 'ENOSPC');
  const written = await readFile(file, 'utf8').catch(() => '');
  assert.ok(written.length < line.length, 'the whole line fit: the test did not make a short write');
});
