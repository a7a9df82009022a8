/**
 * What a root job plants to harm the check itself: a device node where the comparison and the
 * forensics copy read files (opening a character device can act: a watchdog device arms the
 * machine's reset on open), and immutable files (chattr +i) the copy must still read and leave
 * as they are. The device here is a copy of /dev/null's numbers; an inotify watch tells whether
 * anything opened it.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { integrityPaths } from '../../../src/integrity/baseline-store.js';
import { createLogger } from '../../../src/lib/log.js';
import { buildHostTree, preparedTreeGuard } from './host-tree.js';

const SURFACES = ['etc', 'usr-local', 'root-home', 'cron', 'systemd', 'setuid'] as const;
const ctx = {
  log: createLogger({ level: 'silent' }),
  get signal(): AbortSignal {
    return AbortSignal.timeout(60_000);
  },
};

/** Reports on stdout whether `file` was opened while it ran (inotify IN_OPEN), until stdin closes. */
const WATCH = `
import ctypes, os, select, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
if fd < 0 or libc.inotify_add_watch(fd, sys.argv[1].encode(), 0x20) < 0:
    print("watch failed", flush=True); sys.exit(1)
print("ready", flush=True)
opened = False
while True:
    r, _, _ = select.select([fd, 0], [], [])
    if fd in r:
        os.read(fd, 4096); opened = True
    if 0 in r and not os.read(0, 1):
        break
print("opened" if opened else "untouched", flush=True)
`;

async function watchOpens(file: string): Promise<{ stop(): Promise<string> }> {
  const p = spawn('python3', ['-c', WATCH, file], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  while (!out.includes('\n')) await once(p.stdout, 'data');
  assert.equal(out.trim(), 'ready', out);
  return {
    async stop() {
      p.stdin.end();
      await once(p, 'exit');
      return out.trim().split('\n').pop() ?? '';
    },
  };
}

test('a device node planted where files are read is reported and never opened; immutable plants are copied and left as they are', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-integrity-special-'));
  const T = path.join(root, 'host');
  const immutable = [`${T}/etc/cron.d/locked`, `${T}/usr/local/bin/locked`];
  try {
    await mkdir(T);
    await buildHostTree(T);
    const stateDir = path.join(root, 'state');
    const { guard, policy: p, job } = await preparedTreeGuard(root, T, stateDir, SURFACES, ctx);
    // The plants: a character device with /dev/null's numbers in cron.d and over a checked file,
    // and immutable files.
    execFileSync('mknod', [`${T}/etc/cron.d/dev`, 'c', '1', '3']);
    await rm(`${T}/etc/hosts`);
    execFileSync('mknod', [`${T}/etc/hosts`, 'c', '1', '3']);
    for (const f of immutable) {
      await writeFile(f, '* * * * * root true\n');
      execFileSync('chattr', ['+i', f]);
    }
    const watches = [await watchOpens(`${T}/etc/cron.d/dev`), await watchOpens(`${T}/etc/hosts`)];
    const lines = (await guard.verify(job, p, ctx)).map((f) => f.problem);
    const opened = await Promise.all(watches.map((w) => w.stop()));
    for (const e of [
      /^etc: \/etc\/cron\.d\/dev added/,
      /^etc: \/etc\/hosts modified/,
      /^etc: \/etc\/cron\.d\/locked added/,
      /^usr-local: \/usr\/local\/bin\/locked added/,
    ])
      assert.ok(
        lines.some((l) => e.test(l)),
        `no line matches ${e}:\n${lines.join('\n')}`,
      );
    assert.deepEqual(opened, ['untouched', 'untouched'], 'the check or its forensics copy opened a planted device node');
    const forensics = integrityPaths(stateDir).forensics;
    const copied = execFileSync('find', [forensics, '-path', '*/files/*', '-printf', '%y %P\n'], { encoding: 'utf8' });
    assert.match(copied, /^f .*\/files\/etc\/cron\.d\/locked$/m, copied);
    assert.doesNotMatch(copied, /\/dev$|\/hosts$/m, 'a device node was copied as evidence');
    for (const f of immutable) {
      assert.match(execFileSync('lsattr', ['-d', f], { encoding: 'utf8' }), /^\S*i\S* /, `${f} lost its immutable flag`);
      assert.equal(await readFile(f, 'utf8'), '* * * * * root true\n');
    }
  } finally {
    for (const f of immutable) execFileSync('chattr', ['-i', f], { stdio: 'ignore' });
    await rm(root, { recursive: true, force: true });
  }
});

test('FIFOs in place of the files the check reads whole neither block nor hide: each is reported', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-integrity-fifo-'));
  try {
    const here = path.dirname(new URL(import.meta.url).pathname);
    let text: string;
    try {
      text = execFileSync(process.execPath, ['--import', 'tsx', path.join(here, 'fifo-plant.ts'), root], {
        encoding: 'utf8',
        cwd: path.resolve(here, '../../..'),
        timeout: 90_000,
        killSignal: 'SIGKILL',
      });
    } catch (err) {
      assert.fail(`the check did not finish (a blocking read of a planted FIFO?): ${String(err).slice(0, 300)}`);
    }
    const lines = JSON.parse(text.trim().split('\n').pop() ?? '[]') as string[];
    for (const e of [
      /^etc: \/etc\/passwd modified/,
      /^etc: \/etc\/group modified/,
      /^etc: \/etc\/machine-id modified/,
      /^etc: \/etc\/sudoers\.d\/zz added/,
      /^accounts: user:root removed/,
      /^package-state: package:\S+ removed/,
    ])
      assert.ok(
        lines.some((l) => e.test(l)),
        `no line matches ${e}:\n${lines.join('\n')}`,
      );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
