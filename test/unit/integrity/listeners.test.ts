/**
 * Listeners read from a /proc tree made by the test: in a container (no kthreadd visible) the
 * host's sockets seen through a shared network namespace are not the job's; on a whole machine
 * every listener counts, held or not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readListeners } from '../../../src/integrity/kernel-state.js';

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';

/** One /proc/net line: local 0.0.0.0:port, listening (TCP 0A; UDP with remote port 0). */
function row(port: number, state: string, uid: number, inode: number): string {
  const p = port.toString(16).toUpperCase().padStart(4, '0');
  return `   0: 00000000:${p} 00000000:0000 ${state} 00000000:00000000 00:00000000 00000000  ${uid}        0 ${inode} 1 0000000000000000 100 0 0 10 0\n`;
}

async function fakeProc(t: { after: (fn: () => Promise<void>) => void }, wholeMachine: boolean): Promise<string> {
  const proc = await mkdtemp(path.join(os.tmpdir(), 'rw-unit-proc-'));
  t.after(() => rm(proc, { recursive: true, force: true }));
  await mkdir(path.join(proc, 'net'));
  // 8080: held by a process we see (pid 40); 9090: by the agent itself (pid 7); 5353/udp and
  // 2222: held by nobody we can see (another pid namespace, or the kernel).
  await writeFile(
    path.join(proc, 'net', 'tcp'),
    HEADER + row(8080, '0A', 1001, 111) + row(9090, '0A', 0, 222) + row(2222, '0A', 1018, 333),
  );
  await writeFile(path.join(proc, 'net', 'udp'), HEADER + row(5353, '07', 1018, 444));
  for (const f of ['tcp6', 'udp6']) await writeFile(path.join(proc, 'net', f), HEADER);
  for (const [pid, inode] of [
    ['40', 111],
    ['7', 222],
  ] as const) {
    await mkdir(path.join(proc, pid, 'fd'), { recursive: true });
    await symlink(`socket:[${inode}]`, path.join(proc, pid, 'fd', '3'));
  }
  await mkdir(path.join(proc, '2'));
  await writeFile(path.join(proc, '2', 'status'), wholeMachine ? 'Name:\tkthreadd\nState:\tS\n' : 'Name:\tsh\nState:\tS\n');
  return proc;
}

const user = (uid: number): string => String(uid);

test('in a container, listeners no visible process holds are the host neighbours', async (t) => {
  const proc = await fakeProc(t, false);
  assert.deepEqual(readListeners(proc, user, [7]), { 'listener:tcp:0.0.0.0:8080': 'user 1001' });
});

test('on a whole machine every listener counts, also one no process holds (a kernel socket)', async (t) => {
  const proc = await fakeProc(t, true);
  assert.deepEqual(readListeners(proc, user, [7]), {
    'listener:tcp:0.0.0.0:8080': 'user 1001',
    'listener:tcp:0.0.0.0:2222': 'user 1018',
    'listener:udp:0.0.0.0:5353': 'user 1018',
  });
});
