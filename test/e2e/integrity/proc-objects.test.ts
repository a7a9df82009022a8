/**
 * Kernel objects that cannot be planted on a shared machine (a loaded module, a binfmt_misc
 * handler, kernel.core_pattern) are read from a constructed procfs tree: each change is named.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { takeSnapshot } from '../../../src/integrity/snapshot.js';
import { compareSnapshots } from '../../../src/integrity/compare.js';
import { GlobSet } from '../../../src/integrity/glob.js';
import { DEFAULT_EXCEPTIONS } from '../../../src/integrity/surfaces.js';

test('a loaded module, a binfmt_misc handler, a changed core_pattern and taint are each named; an on-demand netfilter module is not, a tainted one is', async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'rw-integrity-proc-'));
  try {
    const proc = path.join(root, 'proc');
    await mkdir(path.join(proc, 'sys/kernel'), { recursive: true });
    await mkdir(path.join(proc, 'sys/fs/binfmt_misc'), { recursive: true });
    await writeFile(path.join(proc, 'modules'), 'ext4 1003520 1 - Live 0x0000000000000000\n');
    await writeFile(path.join(proc, 'sys/kernel/core_pattern'), 'core\n');
    await writeFile(path.join(proc, 'sys/kernel/tainted'), '0\n');
    await writeFile(path.join(proc, 'sys/fs/binfmt_misc/status'), 'enabled\n');
    // Where the kernel has a uevent helper: empty on a stock kernel.
    await writeFile(path.join(proc, 'sys/kernel/hotplug'), '\n');
    await mkdir(path.join(proc, 'sys/net/ipv4/conf/default'), { recursive: true });
    await writeFile(path.join(proc, 'sys/net/ipv4/conf/default/route_localnet'), '0\n');
    const o = { root, proc, surfaces: ['modules', 'sysctl'] as const, excluded: [], netfilter: false };
    const base = (await takeSnapshot({ ...o, surfaces: [...o.surfaces] })).snapshot;
    // A rootkit named like an on-demand netfilter module: its taint flags (out of tree, unsigned)
    // keep the nf_* exception from covering it, and the kernel's taint mask changes for good.
    await appendFile(
      path.join(proc, 'modules'),
      'diamorphine 16384 0 - Live 0x0000000000000000 (OE)\nnf_conntrack 172032 1 - Live 0x0\nnf_hide 16384 0 - Live 0x0000000000000000 (OE)\n',
    );
    await writeFile(path.join(proc, 'sys/kernel/tainted'), '12288\n');
    await writeFile(path.join(proc, 'sys/kernel/core_pattern'), '|/var/tmp/.x %p\n');
    await writeFile(path.join(proc, 'sys/kernel/hotplug'), '/var/tmp/.x\n');
    await writeFile(path.join(proc, 'sys/net/ipv4/conf/default/route_localnet'), '1\n');
    await writeFile(path.join(proc, 'sys/fs/binfmt_misc/evil'), 'enabled\ninterpreter /var/tmp/.x\nflags: F\nmagic 7f454c46\n');
    const now = (await takeSnapshot({ ...o, surfaces: [...o.surfaces] })).snapshot;
    const drift = compareSnapshots(base, now, { root, exceptions: new GlobSet(DEFAULT_EXCEPTIONS) });
    assert.deepEqual(
      drift.map((d) => `${d.surface} ${d.object} ${d.change}`),
      [
        'modules module:diamorphine added',
        'modules module:nf_hide added',
        'sysctl binfmt:evil added',
        'sysctl sysctl:kernel.core_pattern modified',
        'sysctl sysctl:kernel.hotplug modified',
        'sysctl sysctl:kernel.tainted modified',
        'sysctl sysctl:net.ipv4.conf.default.route_localnet modified',
      ],
    );
    assert.equal(drift.find((d) => d.object === 'sysctl:kernel.core_pattern')?.after, '|/var/tmp/.x %p');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
