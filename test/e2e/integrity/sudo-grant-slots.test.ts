/**
 * The sudo grant belongs to one runner user: the agent of another slot (or another agent on the
 * same machine) that ends its own job removes its own grant only, never the grant of a job still
 * running; a grant in the single shared file of earlier versions is removed by its user's agent.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SudoGuard, SUDO_DROP_IN, sudoDropIn } from '../../../src/integrity/sudo-guard.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import { createLogger } from '../../../src/lib/log.js';
import type { GuardJob } from '../../../src/lib/job-guard.js';

const ctx = { log: createLogger({ level: 'silent' }), signal: AbortSignal.timeout(60_000) };
const job = (T: string, name: string, uid: number): GuardJob => ({
  key: name,
  dir: `${T}/job-${name}`,
  user: { name, uid, gid: uid, home: `/home/${name}` },
  runnerRoot: `/opt/${name}`,
  stateDir: `${T}/state-${name}`,
});

test("one slot's release leaves the grant of another slot's running job in place", async () => {
  const T = await mkdtemp(path.join(os.tmpdir(), 'rw-sudo-slots-'));
  try {
    await mkdir(`${T}/etc/sudoers.d`, { recursive: true });
    const policy: Policy = structuredClone(DEFAULT_POLICY);
    policy.runner.sudo = 'allow';
    const [a, b] = [job(T, 'runnera', 4301), job(T, 'runnerb', 4302)];
    const [ga, gb] = [new SudoGuard({ root: T }), new SudoGuard({ root: T })];
    await ga.prepare(a, policy, ctx);
    await gb.prepare(b, policy, ctx);
    // Slot A's job ends (under any policy: deny here, as another agent's may be) while B's runs.
    assert.equal((await ga.release(a, structuredClone(DEFAULT_POLICY), ctx)).outcome, 'ok');
    assert.equal(existsSync(path.join(T, sudoDropIn('runnera'))), false, "slot A's grant is left after its job");
    assert.equal(existsSync(path.join(T, sudoDropIn('runnerb'))), true, "slot A's release removed the grant of slot B's running job");
    // The shared file of earlier versions: removed by the agent of the user it grants, only.
    await writeFile(path.join(T, SUDO_DROP_IN), 'runnerb ALL=(ALL:ALL) NOPASSWD: ALL\n', { mode: 0o440 });
    await ga.release(a, policy, ctx);
    assert.equal(existsSync(path.join(T, SUDO_DROP_IN)), true, 'slot A removed the earlier grant of user B');
    const released = await gb.release(b, policy, ctx);
    assert.deepEqual(released.removed, { 'sudo-grant': { count: 2, bytes: 0 } });
    assert.equal(existsSync(path.join(T, SUDO_DROP_IN)), false);
    assert.equal(existsSync(path.join(T, sudoDropIn('runnerb'))), false);
  } finally {
    await rm(T, { recursive: true, force: true });
  }
});
