/**
 * binfmt_misc handlers, registered for real in a private mount namespace this test creates: each is
 * named (with and without the F flag), and a tmpfs stacked over /proc/sys/fs/binfmt_misc to hide
 * them from the reader is itself drift. The handlers match no real file and are removed before the
 * namespace ends; the test checks that none is left.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function unsupported(): string | undefined {
  if (!/\bbinfmt_misc\b/.test(readFileSync('/proc/filesystems', 'utf8'))) return 'the kernel has no binfmt_misc';
  for (const t of ['unshare', 'findmnt']) {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'pipe' });
    } catch {
      return `${t} is not installed (scripts/install-test-deps.sh)`;
    }
  }
  return undefined;
}

test('binfmt_misc handlers are named, and a mount stacked over the directory to hide them is drift', { skip: unsupported() }, async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-integrity-binfmt-'));
  try {
    const scratch = path.join(root, 'scratch');
    await mkdir(scratch);
    const text = execFileSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        process.execPath,
        '--import',
        'tsx',
        path.join(here, 'binfmt-plant.ts'),
        path.join(root, 'state'),
        scratch,
      ],
      { encoding: 'utf8', cwd: path.resolve(here, '../../..'), timeout: 90_000 },
    );
    const r = JSON.parse(text.trim().split('\n').pop() ?? '{}') as Record<'before' | 'registered' | 'hidden' | 'left', string[]>;
    assert.deepEqual(r.left, [], 'a test handler was left registered');
    assert.deepEqual(r.before, [], "binfmt_misc mounted where systemd mounts it is the host's own, no drift");
    for (const e of [/^sysctl: binfmt:rwprobe added/, /^sysctl: binfmt:rwprobeF added/])
      assert.ok(
        r.registered.some((l) => e.test(l)),
        `no line matches ${e}:\n${r.registered.join('\n')}`,
      );
    assert.ok(
      r.hidden.some((l) => /^mounts: mount:\/proc\/sys\/fs\/binfmt_misc added/.test(l)),
      `the tmpfs hiding the handlers is not reported:\n${r.hidden.join('\n')}`,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
