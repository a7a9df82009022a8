/**
 * A mount counts against the job only if the job could have made it: under the trees only the job
 * writes, a FUSE mount by the runner user, a filesystem or mount point the runner user owns, or any
 * mount when the policy lets the job act as root. A root-owned mount another service made under a
 * temp directory is reported, not blamed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { slotAt } from '../../helpers/cleanup.js';
import { createLab } from '../../helpers/lab.js';
import { DEFAULT_POLICY } from '../../../src/policy/types.js';
import { ManualClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import type { CleanupContext } from '../../../src/cleanup/types.js';
import { verifyWith } from '../../../src/cleanup/verify.js';
import { attributeMount, parseMountInfo } from '../../../src/cleanup/mounts.js';

test('mounts are blamed on the job only when it could have made them', async (t) => {
  const lab = await createLab();
  const mounted: string[] = [];
  t.after(async () => {
    for (const m of mounted.reverse()) execFileSync('umount', ['-l', m]);
    await lab.dispose();
  });
  const root = path.join(lab.root, 'runner');
  await fsp.mkdir(path.join(root, '_work'), { recursive: true });
  const temp = path.join(lab.root, 'tmp');
  await fsp.mkdir(temp, { mode: 0o1777 });
  await fsp.chmod(temp, 0o1777);
  const slot = slotAt(lab, root, path.join(lab.root, 'state'));
  const mount = async (dir: string, opts: string, owner?: number): Promise<void> => {
    await fsp.mkdir(dir, { recursive: true });
    if (owner !== undefined) await fsp.chown(dir, owner, owner);
    execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir]);
    mounted.push(dir);
  };
  const service = path.join(temp, 'systemd-private-svc');
  await mount(service, 'size=64k,mode=0700'); // another service's, root-owned
  const ctx = (sudo: 'deny' | 'allow' = 'deny'): CleanupContext => {
    const policy = structuredClone(DEFAULT_POLICY);
    policy.cleanup.temp.paths = [temp];
    (policy as { runner: { sudo?: string } }).runner.sudo = sudo;
    return {
      slot,
      policy: policy.cleanup,
      fullPolicy: policy,
      log: silentLogger(),
      clock: new ManualClock(Date.now()),
      signal: AbortSignal.timeout(30_000),
      dryRun: false,
      protectedPids: new Set([process.pid]),
    };
  };
  const mountProblems = (r: { problems: string[] }): string[] => r.problems.filter((p) => p.startsWith('mount '));

  let r = await verifyWith(ctx(), {});
  assert.deepEqual(mountProblems(r), [], 'a root-owned mount another service made under /tmp was blamed on the job');
  assert.ok(
    r.notices?.some((n) => n.includes(service) && /not the job's/.test(n)),
    `the foreign mount must be reported: ${JSON.stringify(r.notices)}`,
  );

  // The same mount with a policy that lets the job act as root: it could have made it.
  r = await verifyWith(ctx('allow'), {});
  assert.ok(
    mountProblems(r).some((p) => p.includes(service)),
    'with sudo granted every mount counts',
  );

  // A filesystem the runner user owns, in a temp dir; and any mount in the work dir.
  const owned = path.join(temp, 'job-fs');
  await mount(owned, `size=64k,uid=${lab.user.uid},gid=${lab.user.gid}`);
  const inWork = path.join(slot.workDir, 'repo', 'mnt');
  await mount(inWork, 'size=64k');
  r = await verifyWith(ctx(), {});
  const blamed = mountProblems(r);
  assert.ok(
    blamed.some((p) => p.includes(owned)),
    `a runner-owned filesystem was not blamed: ${JSON.stringify(blamed)}`,
  );
  assert.ok(
    blamed.some((p) => p.includes(inWork)),
    `a mount in the work dir was not blamed: ${JSON.stringify(blamed)}`,
  );
  assert.equal(
    blamed.some((p) => p.includes(service)),
    false,
  );
});

test("a FUSE mount names its user: the runner user's is the job's, another user's is not", () => {
  const line = (uid: number): string =>
    `300 29 0:77 / /tmp/sshfs rw,nosuid,nodev,relatime shared:1 - fuse.sshfs host:/ rw,user_id=${uid},group_id=${uid}\n`;
  const a = { uid: 1001, jobTrees: ['/home/runner/actions-runner/_work'], jobMayBeRoot: false, rootUid: 0, parentUid: 0 };
  assert.equal(attributeMount(parseMountInfo(Buffer.from(line(1001)))[0]!, a), 'job');
  assert.equal(attributeMount(parseMountInfo(Buffer.from(line(1002)))[0]!, a), 'other');
  assert.equal(attributeMount(parseMountInfo(Buffer.from(line(10011)))[0]!, a), 'other', 'user_id must match exactly');
});
