/**
 * scripts/install-test-deps.sh decides what to install from Debian's package database, never from
 * what root's PATH happens to find: a root-only shim (pyenv, asdf, a wrapper in /root/bin) once
 * made `command -v aws` succeed on a fresh CI machine, so the AWS CLI the runner user runs was
 * never installed. Here a fresh machine is played by a copy of the dpkg database without some of
 * the packages (DPKG_ADMINDIR, which dpkg-query honours), with root-only shims of their binaries
 * first on PATH; and a freshly created user runs the check and the binaries itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLab, runAs } from '../../helpers/lab.js';

const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../scripts/install-test-deps.sh');
/** Packages a fresh machine lacks in this test, with the binary the runner user runs from each. */
const REMOVED: Record<string, string> = { awscli: 'aws', skopeo: 'skopeo', 'docker.io': 'docker' };

function listMissing(env: NodeJS.ProcessEnv): string[] {
  const out = execFileSync('bash', [SCRIPT, '--list-missing'], { env, encoding: 'utf8' });
  return out.split('\n').filter(Boolean);
}

/** The dpkg status file without the stanzas of `packages`. */
function withoutPackages(status: string, packages: string[]): string {
  return status
    .split(/\n\n+/)
    .filter((stanza) => !packages.some((p) => stanza.startsWith(`Package: ${p}\n`)))
    .join('\n\n');
}

/** The package/binary pairs the script declares, read from the script itself. */
async function declared(): Promise<[string, string][]> {
  const text = await readFile(SCRIPT, 'utf8');
  const block = /packages=\(\n([\s\S]*?)\n\)/.exec(text)?.[1] ?? '';
  return [...block.matchAll(/"(\S+)\s+(\S+)"/g)].map((m) => [m[1] ?? '', m[2] ?? '']);
}

test('a package missing from the dpkg database is installed even when a root-only shim answers command -v', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-install-deps-'));
  try {
    const admin = path.join(dir, 'dpkg');
    await mkdir(path.join(admin, 'updates'), { recursive: true });
    const status = await readFile('/var/lib/dpkg/status', 'utf8');
    await writeFile(path.join(admin, 'status'), withoutPackages(status, Object.keys(REMOVED)));
    const shims = path.join(dir, 'root-shims');
    await mkdir(shims, { mode: 0o700 });
    for (const bin of Object.values(REMOVED)) {
      await writeFile(path.join(shims, bin), '#!/bin/sh\necho shim\n');
      await chmod(path.join(shims, bin), 0o700);
    }
    const env = { PATH: `${shims}:/usr/sbin:/usr/bin:/sbin:/bin`, DPKG_ADMINDIR: admin };
    // What the old check saw: every binary "present" for root.
    for (const bin of Object.values(REMOVED)) {
      assert.equal(execFileSync('bash', ['-c', `command -v ${bin}`], { env, encoding: 'utf8' }).trim(), path.join(shims, bin));
    }
    assert.deepEqual(listMissing(env).sort(), Object.keys(REMOVED).sort());
    // The copy itself is faithful: with every stanza kept, nothing more is missing than on this machine.
    await writeFile(path.join(admin, 'status'), status);
    assert.deepEqual(listMissing(env), listMissing({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('for a freshly created user the check says the same, and every package it counts as installed gives that user its binary', async () => {
  const lab = await createLab('rw-install-deps-');
  try {
    const asRoot = listMissing({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin' });
    const asUser = runAs(lab.user, `bash ${SCRIPT} --list-missing`).split('\n').filter(Boolean);
    assert.deepEqual(asUser, asRoot);
    const pairs = await declared();
    assert.ok(pairs.length >= 20, `the script's package list was not read: ${JSON.stringify(pairs)}`);
    assert.ok(pairs.some(([pkg, bin]) => pkg === 'awscli' && bin === '/usr/bin/aws'));
    for (const [pkg, bin] of pairs) {
      if (asRoot.includes(pkg)) continue;
      // The user's own environment: the system PATH, no root shims, no supplementary groups.
      assert.equal(runAs(lab.user, `test -x ${bin} && echo yes`).trim(), 'yes', `${pkg}: ${bin} for the runner user`);
    }
    assert.equal(runAs(lab.user, 'command -v aws').trim(), '/usr/bin/aws', "the AWS CLI on the runner user's PATH");
  } finally {
    await lab.dispose();
  }
});
