import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import { startFakeRegistry } from '../../helpers/fake-registry.js';
import { ctxFor, makeSlot as makeLabSlot, scanSecrets, snapshot } from '../../helpers/cleanup.js';

const makeSlot = (lab: Lab): Promise<Slot> => makeLabSlot(lab, { chownRoot: true });
import type { Slot } from '../../../src/cleanup/types.js';
import { takeBaseline, loadBaseline } from '../../../src/cleanup/baseline.js';
import { diffHome, describeDiff } from '../../../src/cleanup/home-diff.js';
import { credentialsStep, leftoverCredentials } from '../../../src/cleanup/steps/credentials.js';
import { homeStep } from '../../../src/cleanup/steps/home.js';
import { findCredentials, globToRegExp, type CatalogueRoots, CREDENTIAL_CATALOGUE } from '../../../src/cleanup/catalogue.js';

/** runAs, but asynchronous: the fake registry lives in this process and must answer meanwhile. */
async function runAsAsync(lab: Lab, script: string): Promise<string> {
  const { stdout } = await promisify(execFile)('bash', ['-c', script], {
    uid: lab.user.uid,
    gid: lab.user.gid,
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: lab.user.home, USER: lab.user.name },
    cwd: lab.user.home,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return stdout;
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
function token(n: number, alphabet = ALNUM): string {
  return [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('');
}

test('credentials written by real tools are removed by kind, gitconfig returns to baseline, and secretlint finds nothing in the home', async () => {
  const lab = await createLab();
  const registry = await startFakeRegistry('ciuser', 'cipass-secret-1');
  try {
    const slot = await makeSlot(lab);
    runAs(lab.user, 'git config --global user.name "CI Bot" && git config --global user.email ci@example.test');
    await takeBaseline(slot);
    const baselineGitconfig = await fsp.readFile(path.join(lab.user.home, '.gitconfig'), 'utf8');
    // The runner's own registration files (written by JIT at registration).
    for (const f of ['.credentials', '.credentials_rsaparams', '.runner', '.credentials_migrated']) {
      await fsp.writeFile(path.join(slot.runnerRoot, f), `{"secret":"${token(20)}"}`);
    }

    const ghs = `ghs_${token(36)}`;
    const kubeToken = `eyJhbGciOiJSUzI1NiJ9.${token(60)}`;
    const job = [
      'set -e',
      'git config --global credential.helper store',
      `printf 'protocol=https\\nhost=github.com\\nusername=x-access-token\\npassword=${ghs}\\n\\n' | git credential approve`,
      `git config --global url."https://x-access-token:${ghs}@github.com/".insteadOf "https://github.com/"`,
      'git config --global core.hooksPath /tmp/evil-hooks',
      `npm config set //registry.example.test/:_authToken=npm_${token(36)}`,
      `aws configure set aws_access_key_id AKIA${token(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567')}`,
      `aws configure set aws_secret_access_key ${token(40)}`,
      'aws configure set region us-east-1',
      // kubectl is not in Debian bookworm: where it is missing, write the file kubectl would write.
      'if command -v kubectl >/dev/null; then',
      `  kubectl config set-credentials ci --token=${kubeToken}`,
      '  kubectl config set-cluster c1 --server=https://127.0.0.1:6443',
      '  kubectl config set-context ci --cluster=c1 --user=ci && kubectl config use-context ci',
      'else',
      `  mkdir -p .kube && printf 'apiVersion: v1\\nkind: Config\\nusers:\\n- name: ci\\n  user:\\n    token: ${kubeToken}\\n' > .kube/config`,
      'fi',
      `mkdir -p .config/gh && printf 'github.com:\\n    oauth_token: gho_${token(36)}\\n    user: ci-bot\\n' > .config/gh/hosts.yml`,
      `printf 'machine github.com login ci password ghp_${token(36)}\\n' > .netrc`,
      `DOCKER_HOST=unix:///nonexistent docker login -u ciuser --password-stdin ${registry.host} <<< 'cipass-secret-1'`,
      `mkdir -p .config/containers && skopeo login --tls-verify=false --authfile ~/.config/containers/auth.json -u ciuser -p cipass-secret-1 ${registry.host}`,
      "mkdir -p .ssh && ssh-keygen -q -t ed25519 -N '' -C job -f .ssh/id_ed25519 && cat .ssh/id_ed25519.pub >> .ssh/authorized_keys",
    ].join('\n');
    await runAsAsync(lab, job);
    assert.ok(
      registry.seen.some((h) => h?.startsWith('Basic ')),
      'docker/skopeo never authenticated to the fake registry',
    );

    const flaggedBefore = await scanSecrets(lab.user.home);
    assert.ok(flaggedBefore.length >= 8, `secretlint should flag the planted credentials first, flagged: ${flaggedBefore.join(', ')}`);

    const dry = await credentialsStep().run(ctxFor(slot, () => {}, true));
    assert.ok(
      (dry.plan ?? []).some((l) => l.startsWith('docker ~/.docker/config.json')),
      `dry run plan lacks docker: ${dry.plan?.join('; ')}`,
    );

    const r = await credentialsStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'ok', `credentials step not ok: ${r.reason}`);
    for (const kind of [
      'docker',
      'containers',
      'npm',
      'git-credentials',
      'git-config',
      'aws',
      'kube',
      'gh',
      'netrc',
      'ssh-key',
      'ssh-authorized-keys',
      'runner-credentials',
    ]) {
      assert.ok((r.removed[kind]?.count ?? 0) > 0, `no ${kind} removal reported: ${JSON.stringify(r.removed)}`);
    }
    assert.equal(r.removed['runner-credentials']?.count, 4, 'the runner registration files were not all removed');
    assert.ok(!JSON.stringify(r).includes(ghs), 'a secret leaked into the report');

    const h = await homeStep().run(ctxFor(slot));
    assert.equal(h.outcome, 'ok', `home step not ok: ${h.reason}`);

    const left = await leftoverCredentials(ctxFor(slot), await loadBaseline(slot));
    assert.deepEqual(
      left.found.map((f) => f.rel),
      [],
      'catalogue files left',
    );
    assert.equal(await fsp.readFile(path.join(lab.user.home, '.gitconfig'), 'utf8'), baselineGitconfig, 'gitconfig not back to baseline');
    const diff = await diffHome(slot, (await loadBaseline(slot))!);
    assert.deepEqual(describeDiff(diff), [], 'home differs from baseline');
    assert.deepEqual(await scanSecrets(lab.user.home), [], 'secretlint still finds secrets in the home');
  } finally {
    await registry.close();
    await lab.dispose();
  }
});

test('symlink traps: ~/.docker -> canary and ~/.aws/credentials -> a canary file are removed as links, the canary untouched', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    const canary = path.join(lab.root, 'canary');
    await fsp.mkdir(canary, { mode: 0o755 });
    await fsp.writeFile(path.join(canary, 'config.json'), '{"auths":{"keep":"me"}}', { mode: 0o644 });
    await fsp.writeFile(path.join(canary, 'shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
    const before = await snapshot(canary);
    await takeBaseline(slot);
    runAs(
      lab.user,
      `ln -s ${canary} .docker && mkdir -p .aws && ln -s ${canary}/shadow .aws/credentials && mkdir -p .config && ln -s ${canary} .config/gcloud && ln -s ${canary} .ssh`,
    );
    const r = await credentialsStep().run(ctxFor(slot));
    assert.equal(r.outcome, 'ok', `credentials step not ok: ${r.reason}`);
    assert.equal(r.removed['docker-symlink']?.count, 1, `~/.docker link not reported: ${JSON.stringify(r.removed)}`);
    assert.equal(r.removed['aws-symlink']?.count, 1, 'the ~/.aws/credentials link not reported');
    assert.equal(r.removed['gcloud-symlink']?.count, 1, 'the gcloud link not reported');
    assert.ok(r.removed['ssh-key-symlink'] || r.removed['ssh-authorized-keys-symlink'], 'the ~/.ssh link not reported');
    for (const p of ['.docker', '.aws/credentials', '.config/gcloud', '.ssh']) {
      await assert.rejects(fsp.lstat(path.join(lab.user.home, p)), `~/${p} still exists`);
    }
    assert.deepEqual(await snapshot(canary), before, 'the canary changed');
  } finally {
    await lab.dispose();
  }
});

test('policy extra paths and globs are removed; paths that climb out of the home are refused', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    await takeBaseline(slot);
    runAs(
      lab.user,
      'mkdir -p .myco/tokens && echo t > .myco/tokens/a.tok && echo t > .myco/tokens/b.tok && echo k > .myco/keep.txt && echo s > .sometool-secret',
    );
    const ok = await credentialsStep().run(
      ctxFor(slot, (p) => {
        p.cleanup.credentials.extraPaths = ['.sometool-secret'];
        p.cleanup.credentials.extraGlobs = ['.myco/**/*.tok'];
      }),
    );
    assert.equal(ok.outcome, 'ok', `step not ok: ${ok.reason}`);
    assert.equal(ok.removed['extra']?.count, 3, `extra removals: ${JSON.stringify(ok.removed)}`);
    assert.ok((await fsp.readFile(path.join(lab.user.home, '.myco/keep.txt'), 'utf8')) === 'k\n', 'a non-matching file was removed');
    const bad = await credentialsStep().run(ctxFor(slot, (p) => (p.cleanup.credentials.extraPaths = ['../../etc/passwd', '/etc/shadow'])));
    assert.equal(bad.outcome, 'failed', 'unsafe policy paths must fail the step');
    assert.match(bad.reason ?? '', /refused/);
  } finally {
    await lab.dispose();
  }
});

test('the XDG runtime containers auth file is found under /run/user/<uid> and the glob matcher follows shell rules', async () => {
  const lab = await createLab();
  try {
    const xdg = path.join(lab.root, 'run-user');
    await fsp.mkdir(path.join(xdg, 'containers'), { recursive: true });
    await fsp.writeFile(path.join(xdg, 'containers', 'auth.json'), '{}');
    const roots: CatalogueRoots = { home: lab.user.home, runnerRoot: lab.root, xdgRuntime: xdg, jobRoot: path.join(lab.root, 'jobs') };
    await fsp.mkdir(path.join(lab.root, 'jobs', 'job1', 'docker'), { recursive: true });
    await fsp.writeFile(path.join(lab.root, 'jobs', 'job1', 'docker', 'config.json'), '{"auths":{}}');
    const found = await findCredentials(roots, CREDENTIAL_CATALOGUE);
    const kinds = found.map((f) => `${f.kind}:${f.rel}`);
    assert.ok(kinds.includes('containers:containers/auth.json'), `XDG auth not found: ${kinds.join(', ')}`);
    assert.ok(kinds.includes('docker:job1/docker/config.json'), `per-job DOCKER_CONFIG not found: ${kinds.join(', ')}`);
    assert.ok(globToRegExp('.ssh/*').test('.ssh/id_rsa'));
    assert.ok(!globToRegExp('.ssh/*').test('.ssh/a/b'));
    assert.ok(globToRegExp('a/**/*.tok').test('a/b/c/d.tok'));
    assert.ok(globToRegExp('a/**/*.tok').test('a/d.tok'));
    assert.ok(globToRegExp('*_migrated').test('.runner_migrated'));
  } finally {
    await lab.dispose();
  }
});

test('a job process swapping ~/.docker between a directory and a symlink to the canary in a tight loop never gets the canary touched', async () => {
  const lab = await createLab();
  try {
    const slot = await makeSlot(lab);
    const canary = path.join(lab.root, 'canary');
    await fsp.mkdir(canary, { mode: 0o755 });
    await fsp.writeFile(path.join(canary, 'config.json'), '{"auths":{"canary":"keep"}}', { mode: 0o644 });
    const before = await snapshot(canary);
    await takeBaseline(slot);
    // Runs as the runner user until killed: the removal must act on what it checked, whatever wins the race.
    const swapper = execFile(
      'bash',
      [
        '-c',
        `while true; do mkdir -p d/.docker 2>/dev/null; echo '{"auths":{"x":{"auth":"eHg6eXk="}}}' > d/.docker/config.json; rm -rf .docker; mv d/.docker .docker 2>/dev/null; rm -rf .docker; ln -sfn ${canary} .docker; done`,
      ],
      { uid: lab.user.uid, gid: lab.user.gid, cwd: lab.user.home, env: { PATH: '/usr/bin:/bin' } },
    );
    try {
      for (let i = 0; i < 40; i++) await credentialsStep().run(ctxFor(slot));
    } finally {
      swapper.kill('SIGKILL');
    }
    assert.deepEqual(await snapshot(canary), before, 'the canary changed while the cleaner raced the swapper');
  } finally {
    await lab.dispose();
  }
});
