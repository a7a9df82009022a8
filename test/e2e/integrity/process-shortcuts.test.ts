/**
 * The check reads a process's unit (its cgroup file) only when the process can be drift: a key the
 * baseline holds, of a process older than the job, is skipped unread. Read from a constructed
 * procfs: a job's daemon that runs an executable the image also runs as root, or that sits in a
 * unit whose processes are otherwise left out, is still reported.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readProcesses } from '../../../src/integrity/kernel-state.js';
import { readProcTable } from '../../../src/integrity/proc-table.js';
import { TRANSIENT_UNITS } from '../../../src/integrity/surfaces.js';

const BOOT_S = 1_700_000_000;
/** A job that started 100 s after boot. */
const JOB_START_MS = (BOOT_S + 100) * 1000;

async function proc(
  root: string,
  pid: number,
  o: { uid: number; exe: string; startS: number; unit: string; ppid?: number },
): Promise<void> {
  const dir = path.join(root, String(pid));
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'status'), `Name:\tx\nPPid:\t${o.ppid ?? 1}\nUid:\t${o.uid}\t${o.uid}\t${o.uid}\t${o.uid}\n`);
  await symlink(o.exe, path.join(dir, 'exe'));
  await writeFile(path.join(dir, 'cgroup'), `0::/system.slice/${o.unit}\n`);
  // Field 22 (start time in ticks of 1/100 s), after the command's parenthesis.
  const fields = ['S', String(o.ppid ?? 1), ...Array.from({ length: 17 }, () => '0'), String(o.startS * 100), '0'];
  await writeFile(path.join(dir, 'stat'), `${pid} (x) ${fields.join(' ')}\n`);
}

test('a process whose unit is not read (known key, older than the job) hides nothing a job started', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-integrity-procs-'));
  try {
    await writeFile(path.join(root, 'stat'), `cpu 0 0 0 0\nbtime ${BOOT_S}\n`);
    await proc(root, 1, { uid: 0, exe: '/usr/lib/systemd/systemd', startS: 0, unit: 'init.scope', ppid: 0 });
    // The image's own root python daemon, older than the job.
    await proc(root, 300, { uid: 0, exe: '/usr/bin/python3.11', startS: 10, unit: 'image-daemon.service' });
    // A job's root daemon running the same executable, and one inside cron's unit (left out when old).
    await proc(root, 4242, { uid: 0, exe: '/usr/bin/python3.11', startS: 150, unit: 'run-x.service' });
    await proc(root, 4243, { uid: 0, exe: '/usr/bin/perl', startS: 150, unit: 'cron.service' });
    // An old process in cron's unit whose key the baseline lacks: still left out by its unit.
    await proc(root, 500, { uid: 0, exe: '/usr/bin/sleep', startS: 20, unit: 'cron.service' });
    const known = new Set(['process:root:/usr/lib/systemd/systemd', 'process:root:/usr/bin/python3.11']);
    const filter = {
      jobUid: (uid: number) => uid === 4000,
      skipPids: new Set<number>(),
      skipUnits: new Set(TRANSIENT_UNITS),
      newSinceMs: JOB_START_MS,
      table: readProcTable(root),
    };
    const withShortcut = readProcesses(root, (u) => (u === 0 ? 'root' : String(u)), { ...filter, known: (k) => known.has(k) });
    const without = readProcesses(root, (u) => (u === 0 ? 'root' : String(u)), filter);
    const newKeys = (o: Record<string, string>): string[] =>
      Object.keys(o)
        .filter((k) => !known.has(k))
        .sort();
    assert.deepEqual(
      newKeys(withShortcut),
      ['process:root:/usr/bin/python3.11#4242'],
      'the job-started daemon must be reported under its own pid; a cron-unit process is left out (as before)',
    );
    assert.deepEqual(newKeys(withShortcut), newKeys(without), 'skipping unit reads of known, older processes must change no drift');
    assert.match(withShortcut['process:root:/usr/bin/python3.11#4242'] ?? '', /unit run-x\.service started/);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
