/**
 * ENOSPC on the state filesystem (a 1 MiB tmpfs the test fills): the agent neither dies nor loses a
 * journal record. State and journal writes that fail are kept in memory; the host is recycled
 * rather than served without crash safety; once there is room, every waiting record is written in
 * order and no line of the journal is lost or cut.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Journal } from '../../../src/agent/journal.js';
import { makeUnitWorld } from '../../unit/agent/fakes.js';

/** Fills the filesystem of `dir` at once (a policy read is synchronous: the disk is full when it returns). */
function fillSync(dir: string): void {
  const fd = openSync(path.join(dir, 'filler-now'), 'w');
  const chunk = Buffer.alloc(16 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}

/** Fills the filesystem of `dir` with one file until ENOSPC; returns its path. */
async function fill(dir: string): Promise<string> {
  const file = path.join(dir, 'filler');
  const fh = await open(file, 'w');
  const chunk = Buffer.alloc(16 * 1024, 1);
  try {
    for (;;) await fh.write(chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close().catch(() => {});
  }
  return file;
}

test('a full state filesystem: no crash, a recycle instead of another job, and every journal record written once there is room', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'rw-enospc-'));
  const stateDir = path.join(root, 'state');
  await mkdir(stateDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', stateDir]);
  t.after(async () => {
    execFileSync('umount', ['-l', stateDir]);
    await rm(root, { recursive: true, force: true });
  });
  const journal = new Journal({ dir: stateDir });
  // A first record while there is room, so the journal file exists and has a line to keep.
  await journal.append({ type: 'event', event: 'test-start', at: new Date().toISOString() });
  const filler = await fill(stateDir);
  let recycled = 0;
  const w = await makeUnitWorld({
    stateDir,
    maxJobs: 5,
    recycler: {
      provider: 'command',
      recycle: async () => {
        recycled += 1;
        // The operator (or the next cleanup) frees space while the agent still runs.
        await rm(filler, { force: true });
        return { ok: true, provider: 'command', detail: 'done', exitCode: 0 };
      },
    },
  });
  // The world's own root (its runner and home paths; the state is the tmpfs above) goes too.
  t.after(() => w.dispose());
  const exit = await w.agent({ journal }).run(new AbortController().signal);
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(recycled, 1, `the host should be recycled: ${exit.reason}`);
  assert.match(exit.reason, /recycled \(state-unwritable: .*ENOSPC/);
  assert.equal(w.listeners.length, 0, 'a job was served while nothing could be persisted');
  const read = await new Journal({ dir: stateDir }).readAll();
  assert.deepEqual(read.skipped, [], 'a journal line was cut');
  const names = read.records.map((r) => (r.type === 'event' ? r.event : r.type));
  assert.deepEqual(names.slice(0, 2), ['test-start', 'boot'], `the records written during ENOSPC were lost: ${names.join(', ')}`);
  assert.ok(names.includes('preflight') && names.includes('recycle') && names.at(-1) === 'stop', names.join(', '));
  assert.deepEqual(
    read.records.map((r) => r.seq),
    read.records.map((_, i) => i + 1),
    'records must keep their order and numbering',
  );
});

test('a registration is not requested when its name could not be written first (the state filesystem filled at the job boundary)', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'rw-enospc-'));
  const stateDir = path.join(root, 'state');
  await mkdir(stateDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', stateDir]);
  t.after(async () => {
    execFileSync('umount', ['-l', stateDir]);
    await rm(root, { recursive: true, force: true });
  });
  const recycles: string[] = [];
  const w = await makeUnitWorld({
    stateDir,
    recycler: {
      provider: 'command',
      recycle: (req) => {
        recycles.push(req.reason);
        return Promise.resolve({ ok: true, provider: 'command', detail: 'done', exitCode: 0 });
      },
    },
  });
  t.after(() => w.dispose());
  // The boundary's policy read comes after the loop's own check of the state writes and right
  // before the registration: the disk fills there (a job's leftover, another process).
  let reads = 0;
  const policies = {
    atJobBoundary: () => {
      reads += 1;
      if (reads === 2) fillSync(stateDir);
      return w.policy;
    },
    status: () => ({ team: 'unit' }),
  };
  const exit = await w.agent({ policies }).run(new AbortController().signal);
  assert.equal(w.github.jitCalls, 0, 'a runner was requested while its name could not be persisted: a crash would leave it a ghost');
  assert.match(recycles[0] ?? exit.reason, /state-unwritable/, `the host should be recycled as unwritable: ${exit.reason}`);
});
