/**
 * A root job's daemon that hides in a cgroup it made and named like one of the units whose
 * processes are never drift (the daily timers' and cron's): it is still named. Played in pid and
 * mount namespaces of the test's own; the cgroup is removed afterwards.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Where cgroup v2 is mounted (a hybrid host has it at /sys/fs/cgroup/unified). */
function cgroup2(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (post?.startsWith('cgroup2 ')) return pre?.split(' ')[4];
  }
  return undefined;
}

const CG = cgroup2();

test(
  'a daemon moved into a cgroup the job named cron.service is named',
  { skip: CG ? undefined : 'no cgroup v2 mount', timeout: 120_000 },
  async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'rw-integrity-cg-'));
    try {
      const scratch = path.join(root, 'scratch');
      await mkdir(scratch);
      const text = execFileSync(
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          '--pid',
          '--fork',
          '--mount-proc',
          'sh',
          '-c',
          '"$0" --import tsx "$1" "$2" "$3" "$4"; true',
          process.execPath,
          path.join(here, 'cgroup-plant.ts'),
          path.join(root, 'state'),
          scratch,
          CG as string,
        ],
        { encoding: 'utf8', cwd: path.resolve(here, '../../..'), timeout: 90_000 },
      );
      const r = JSON.parse(text.trim().split('\n').pop() ?? '{}') as { cgroup: string[]; after: string[] };
      assert.match(r.cgroup.join(''), /\/cron\.service$/m, 'the daemon is not in the fake unit');
      assert.ok(
        r.after.some((l) => /^processes: process:root:\/\S*tail#\d+ added/.test(l)),
        `the daemon in the fake cron.service is not reported:\n${r.after.join('\n')}`,
      );
    } finally {
      await rm(root, { recursive: true, force: true });
      // Nothing of the test's cgroups may stay behind.
      const left = readdirSync(CG as string).filter((n) => n.startsWith('rw-integrity-'));
      for (const n of left)
        if (existsSync(path.join(CG as string, n))) execFileSync('find', [path.join(CG as string, n), '-depth', '-type', 'd', '-delete']);
    }
  },
);
