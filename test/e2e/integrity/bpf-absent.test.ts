/**
 * Without bpftool the bpf surface is never passed as if checked: the baseline records it as
 * unreadable, the agent warns once (naming the package), a baseline taken with bpftool and a check
 * without it is a finding, and a surface the policy names but the baseline lacks is warned about.
 * The guard is called directly on this machine's kernel state (the bpf surface only); a missing
 * bpftool is played by a path where there is none.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { IntegrityGuard } from '../../../src/integrity/guard.js';
import { takeSystemBaseline } from '../../../src/integrity/system-baseline.js';
import { BPFTOOL_MISSING } from '../../../src/integrity/bpf-state.js';
import type { SurfaceName } from '../../../src/integrity/types.js';
import { createLogger } from '../../../src/lib/log.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';

const user = { name: 'nobody', uid: 65534 };
const ABSENT = '/nonexistent/bpftool';

/** A guard over `stateDir` with `bpftool`, a policy checking `surfaces`, and the warnings it logs. */
function guardWith(stateDir: string, surfaces: SurfaceName[], bpftool?: string) {
  const warnings: string[] = [];
  const log = createLogger({
    level: 'warn',
    destination: { write: (l: string) => void warnings.push((JSON.parse(l) as { msg: string }).msg) },
  });
  const guard = new IntegrityGuard({ stateDir, excluded: [], user, netfilter: false, ...(bpftool ? { bpftool } : {}) });
  const policy: Policy = structuredClone(DEFAULT_POLICY);
  policy.host.integrity.surfaces = surfaces;
  const verify = async (): Promise<string[]> =>
    (await guard.verify(undefined, policy, { log, signal: AbortSignal.timeout(60_000) })).map((f) => f.problem);
  return { verify, warnings };
}

test('without bpftool: unreadable in the baseline, one warning naming the package, never a silent pass', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-bpf-absent-'));
  try {
    const stateDir = path.join(dir, 'state');
    const summary = await takeSystemBaseline({ stateDir, surfaces: ['bpf'], excluded: [], user, netfilter: false, bpftool: ABSENT });
    assert.deepEqual(summary.unreadable, [BPFTOOL_MISSING]);
    const g = guardWith(stateDir, ['bpf'], ABSENT);
    assert.deepEqual(await g.verify(), [], 'the same unreadable surface as the baseline is not drift');
    assert.deepEqual(await g.verify(), []);
    assert.deepEqual(g.warnings, ['eBPF programs, links and maps are not checked: bpftool is not installed (apt-get install bpftool)']);

    // A surface the policy names and the baseline lacks: not checked, and said so once.
    await takeSystemBaseline({ stateDir, surfaces: ['boot'], excluded: [], user, netfilter: false });
    const older = guardWith(stateDir, ['boot', 'bpf']);
    await older.verify();
    await older.verify();
    assert.deepEqual(older.warnings, [
      'integrity surfaces not in the system baseline are not checked: retake the baseline with the agent stopped',
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test(
  'a baseline taken with bpftool and a check without it is a finding',
  { skip: existsSync('/usr/sbin/bpftool') ? undefined : 'bpftool is not installed (scripts/install-test-deps.sh)' },
  async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-bpf-absent-'));
    try {
      const stateDir = path.join(dir, 'state');
      const summary = await takeSystemBaseline({ stateDir, surfaces: ['bpf'], excluded: [], user, netfilter: false });
      assert.deepEqual(summary.unreadable, [], `bpftool could not list here: ${summary.unreadable.join('; ')}`);
      assert.deepEqual(await guardWith(stateDir, ['bpf'], ABSENT).verify(), [`integrity surface unreadable: ${BPFTOOL_MISSING}`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);
