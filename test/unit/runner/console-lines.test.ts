import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { once } from 'node:events';
import { readConsoleLines } from '../../../src/runner/console-lines.js';

async function linesOf(chunks: (string | Buffer)[], max?: number): Promise<string[]> {
  const s = new PassThrough();
  const out: string[] = [];
  readConsoleLines(s, (l) => out.push(l), max);
  for (const c of chunks) s.write(c);
  s.end();
  await once(s, 'end');
  return out;
}

test('lines split on LF and CRLF across chunks, multi-byte characters whole, the last line without a newline too', async () => {
  const euro = Buffer.from('€');
  assert.deepEqual(
    await linesOf(['a\r', '\nb', 'c\n\n', Buffer.from([0x78, euro[0] as number]), Buffer.concat([euro.subarray(1), Buffer.from('\nend')])]),
    ['a', 'bc', '', 'x€', 'end'],
  );
});

test('a line longer than the cap keeps its first bytes and says how many were dropped; the next line is whole', async () => {
  const big = 'A'.repeat(5_000);
  assert.deepEqual(await linesOf([big.slice(0, 1_000), big.slice(1_000), '\nRunning job: next\n'], 64), [
    `${'A'.repeat(64)} [4936 more bytes dropped]`,
    'Running job: next',
  ]);
});

test('a flood without any newline is held to the cap, however many chunks it takes', async () => {
  const s = new PassThrough();
  const out: string[] = [];
  readConsoleLines(s, (l) => out.push(l), 1024);
  const chunk = Buffer.alloc(1 << 16, 0x41);
  for (let i = 0; i < 256; i++) s.write(chunk);
  s.end('\n');
  await once(s, 'end');
  assert.equal(out.length, 1);
  assert.equal(out[0], `${'A'.repeat(1024)} [${256 * (1 << 16) - 1024} more bytes dropped]`);
});
