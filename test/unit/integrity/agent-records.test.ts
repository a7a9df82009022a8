/**
 * The pins of the agent's records: a stat-cache refresh that tells the truth passes, a forged one
 * (the cache made to vouch for a planted file, so cleanup skips hashing it) is named, and so is any
 * change of an entry's promise unless the agent announced the bytes it wrote.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { AgentRecords } from '../../../src/integrity/agent-records.js';
import { encodeEntries, entryFromStat, type ManifestEntry } from '../../../src/cleanup/baseline.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

/** An entry as cleanup records it, its stat cache taken well after the file's ctime (not racy). */
function entryOf(tree: string, rel: string, content: string): ManifestEntry {
  const st = lstatSync(path.join(tree, rel));
  return { ...entryFromStat(rel, st, st.ctimeMs + 10_000), sha256: sha(content) };
}

async function writeRecord(file: string, tree: string, entries: ManifestEntry[]): Promise<string> {
  const data = JSON.stringify({ version: 1, home: tree, takenAt: 1, entries: encodeEntries(entries) });
  await writeFile(file, data, { mode: 0o600 });
  return sha(data);
}

test('a truthful stat-cache refresh passes; a cache forged to vouch for other content, or a changed hash, is named', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-records-'));
  try {
    const tree = path.join(dir, 'home');
    const file = path.join(dir, 'manifest.json');
    await mkdir(tree);
    await writeFile(path.join(tree, '.bashrc'), 'image rc\n');
    await writeRecord(file, tree, [entryOf(tree, '.bashrc', 'image rc\n')]);
    const records = new AgentRecords([{ label: 'home baseline', file, tree }]);
    assert.deepEqual(await records.check(), [], 'the first read is the pin');

    // Cleanup restores the file (a new inode, same bytes) and refreshes the cache: no drift.
    await writeFile(path.join(tree, '.bashrc.tmp'), 'image rc\n');
    await rename(path.join(tree, '.bashrc.tmp'), path.join(tree, '.bashrc'));
    await writeRecord(file, tree, [entryOf(tree, '.bashrc', 'image rc\n')]);
    assert.deepEqual(await records.check(), [], 'a truthful refresh of the stat cache must pass');

    // A job plants other bytes of the same size and makes the cache vouch for them: cleanup would
    // skip hashing the file. The hash recorded is still the image's.
    await writeFile(path.join(tree, '.bashrc.tmp'), 'evil rc\n\n');
    await rename(path.join(tree, '.bashrc.tmp'), path.join(tree, '.bashrc'));
    const forged = { ...entryOf(tree, '.bashrc', 'image rc\n') };
    await writeRecord(file, tree, [forged]);
    const lines = await records.check();
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(
      lines[0] as string,
      /^agent record rewritten: home baseline .*: \.bashrc: its stat cache vouches for content that is not there/,
    );

    // The plant's own hash recorded instead: the entry's promise changed.
    await writeRecord(file, tree, [entryOf(tree, '.bashrc', 'evil rc\n\n')]);
    assert.match((await records.check())[0] ?? '', /entries \.bashrc changed/);

    // The same bytes announced by the agent as its own write: accepted, and the new pin.
    records.announce(file, sha(await readFile(file, 'utf8')));
    assert.deepEqual(await records.check(), [], "an announced write is the agent's own");
    assert.deepEqual(await records.check(), [], 'and stays accepted');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
