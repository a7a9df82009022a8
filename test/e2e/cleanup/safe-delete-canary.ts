/**
 * Test helpers of the cleanup steps' tests (safe-delete, workdir, temp, processes, system):
 * a canary tree checked byte for byte and mode for mode, a slot and a CleanupContext over a lab,
 * and a teardown that is safe when a test failed half-way (mounts, immutable files, deep trees).
 */
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import assert from 'node:assert/strict';
import type { CleanupContext, Slot } from '../../../src/cleanup/types.js';
import { DEFAULT_POLICY, type CleanupPolicy } from '../../../src/policy/types.js';
import { ManualClock, type Clock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { Lab } from '../../helpers/lab.js';
import { readMountInfo, mountsUnder } from '../../../src/cleanup/mounts.js';
import { DEFAULT_CGROUP_PARENT, type CgroupSupport } from '../../../src/lib/cgroup.js';

/** Builds a canary tree under `dir`: files of several modes, a nested dir, a link, odd names. */
export async function makeCanary(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'sub', 'deeper'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'passwd'), 'root:x:0:0:root:/root:/bin/bash\n', { mode: 0o644 });
  await fsp.writeFile(path.join(dir, 'secret'), 'do not touch\n', { mode: 0o600 });
  await fsp.writeFile(path.join(dir, 'tool.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  await fsp.writeFile(path.join(dir, 'sub', 'ro.txt'), 'read only\n', { mode: 0o444 });
  await fsp.writeFile(path.join(dir, 'sub', 'deeper', 'data.bin'), Buffer.alloc(4096, 7));
  await fsp.writeFile(Buffer.from(`${dir}/name \xff with\nnewline`, 'latin1'), 'odd\n');
  await fsp.symlink('../passwd', path.join(dir, 'sub', 'link'));
  await fsp.chmod(path.join(dir, 'sub'), 0o750);
}

/** Type, mode, owner, size, mtime and content hash (or link target) of every entry under `dir`. */
export async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (p: Buffer, rel: string): Promise<void> => {
    const st = await fsp.lstat(p);
    let detail = '';
    if (st.isFile())
      detail = createHash('sha256')
        .update(await fsp.readFile(p))
        .digest('hex');
    else if (st.isSymbolicLink()) detail = (await fsp.readlink(p, { encoding: 'buffer' })).toString('hex');
    out.set(rel, `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs} ${detail}`);
    if (st.isDirectory()) {
      for (const name of await fsp.readdir(p, { encoding: 'buffer' })) {
        await walk(Buffer.concat([p, Buffer.from('/'), name]), `${rel}/${name.toString('hex')}`);
      }
    }
  };
  await walk(Buffer.from(dir), '.');
  return out;
}

/** Asserts that the canary is exactly as in `before`. */
export async function assertCanary(dir: string, before: Map<string, string>): Promise<void> {
  const after = await snapshot(dir);
  assert.deepEqual(after, before, 'the canary tree outside every cleaned path changed: a deletion followed a link or crossed a mount');
}

/** A slot over a lab: runner root, _work owned by the user, root-only trash, job root. */
export async function makeSlot(lab: Lab, extra: Partial<Slot> = {}): Promise<Slot> {
  const runnerRoot = path.join(lab.root, 'runner');
  const workDir = path.join(runnerRoot, '_work');
  await fsp.mkdir(workDir, { recursive: true });
  await fsp.chown(runnerRoot, lab.user.uid, lab.user.gid);
  await fsp.chown(workDir, lab.user.uid, lab.user.gid);
  return {
    index: 0,
    runnerRoot,
    workDir,
    user: { name: lab.user.name, uid: lab.user.uid, gid: lab.user.gid, home: lab.user.home },
    stateDir: path.join(lab.root, 'state'),
    trashDir: path.join(lab.root, 'trash'),
    jobRoot: path.join(lab.root, 'jobs'),
    ...extra,
  };
}

/** A CleanupContext with the default policy (overridable per step) and an instant clock. */
export function makeCtx(
  slot: Slot,
  over: { policy?: Partial<CleanupPolicy>; dryRun?: boolean; clock?: Clock; protectedPids?: Set<number>; signal?: AbortSignal } = {},
): CleanupContext {
  const policy: CleanupPolicy = { ...DEFAULT_POLICY.cleanup, ...over.policy };
  return {
    slot,
    policy,
    fullPolicy: { ...DEFAULT_POLICY, cleanup: policy },
    log: silentLogger(),
    clock: over.clock ?? ManualClock.instant(),
    signal: over.signal ?? AbortSignal.timeout(60_000),
    dryRun: over.dryRun ?? false,
    protectedPids: over.protectedPids ?? new Set([process.pid]),
  };
}

/**
 * Disposes a lab even after a failed test: detaches mounts under it, clears immutable and
 * append-only attributes, deletes deep trees with rm (Node's fs.rm stops at PATH_MAX).
 */
export async function disposeLab(lab: Lab): Promise<void> {
  for (const m of mountsUnder(await readMountInfo(), lab.root)) {
    try {
      execFileSync('umount', ['-l', m.mountPointText], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  try {
    execFileSync('find', [lab.root, '-xdev', '(', '-type', 'f', '-o', '-type', 'd', ')', '-exec', 'chattr', '-f', '-i', '-a', '{}', '+'], {
      stdio: 'ignore',
    });
  } catch {
    // nothing immutable
  }
  try {
    execFileSync('rm', ['-rf', '--one-file-system', '--', path.join(lab.root, 'runner'), path.join(lab.root, 'trash')], {
      stdio: 'ignore',
    });
  } catch {
    // dispose() below reports what is left
  }
  await lab.dispose();
}

/** Runs a shell script as root and returns its stdout. */
export function sh(script: string): string {
  return execFileSync('bash', ['-c', script], { encoding: 'utf8' });
}

/** Removes the `runner-warden` parent cgroups if no one else uses them (ENOTEMPTY/EBUSY: kept). */
export async function removeCgroupParents(support: CgroupSupport): Promise<void> {
  for (const mount of [support.v2, support.v1Freezer]) {
    if (mount === undefined) continue;
    await fsp.rmdir(path.join(mount, DEFAULT_CGROUP_PARENT)).catch(() => undefined);
  }
}
