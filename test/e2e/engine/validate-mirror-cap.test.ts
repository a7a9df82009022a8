/**
 * `runner-warden validate` on a host config checks the image cache's cap (docker.mirrorCapGiB)
 * against the filesystems it will live on: larger than the cache's filesystem, smaller than an
 * image the cache holds, or, on the filesystem of the runner's _work, leaving the disk watermark
 * (limits.minFreeDiskPercent) no room. Each line names the policy file, the field and what was
 * expected. The filesystems are tmpfs mounts of the test's own (sizes are limits, not memory),
 * unmounted afterwards.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { captureIo } from '../../helpers/io.js';
import { validateCommand } from '../../../src/cli/validate.js';
import { mirrorCapFitness } from '../../../src/cli/validate-mirror.js';
import { loadHostConfig } from '../../../src/policy/load.js';

let root: string;
const mounts: string[] = [];

/** A tmpfs of `size` at `<root>/<name>`. */
async function tmpfs(name: string, size: string): Promise<string> {
  const dir = path.join(root, name);
  await fsp.mkdir(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, `rw-test-${name}`, dir]);
  mounts.push(dir);
  return dir;
}

before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'rw-validate-cap-'));
});

after(async () => {
  for (const m of mounts.reverse()) execFileSync('umount', [m]);
  await fsp.rm(root, { recursive: true, force: true });
});

/** A host config whose runner root is `runnerRoot`, its team policy `policy`; returns the config's path. */
async function hostConfig(
  name: string,
  runnerRoot: string,
  policy: string,
  user = 'nobody',
): Promise<{ file: string; policyFile: string }> {
  const dir = path.join(root, `cfg-${name}`);
  await fsp.mkdir(path.join(dir, 'policies'), { recursive: true });
  const policyFile = path.join(dir, 'policies', 'team.yaml');
  await fsp.writeFile(policyFile, `version: 1\n${policy}`);
  const file = path.join(dir, 'config.yaml');
  // The host's unprivileged `nobody` as the runner user: the checks run only where the host has that user.
  await fsp.writeFile(
    file,
    `github:\n  org: acme\n  token: {env: GH_TOKEN}\nrunner: {root: ${runnerRoot}, user: ${user}}\nteam: team\npolicyDir: ${path.join(dir, 'policies')}\n`,
  );
  return { file, policyFile };
}

const loopback = 'docker:\n  mirror: http://127.0.0.1:5001\n';

test('a cap larger than the filesystem that holds the cache: validate fails naming the policy file, the field and the most it may be', async () => {
  const store = await tmpfs('store-small', '64m');
  const work = await tmpfs('work-a', '64m');
  const { file, policyFile } = await hostConfig('too-big', work, `${loopback}  mirrorCapGiB: 0.5\n`);
  const storage = path.join(store, 'registry');
  // validateCommand reads the packaged store (last test); the check itself is given the test's.
  const cap = await mirrorCapFitness(await loadHostConfig(file, {}), { storage });
  assert.equal(cap.errors.length, 1, JSON.stringify(cap));
  assert.match(
    cap.errors[0] ?? '',
    new RegExp(
      `^${policyFile}: docker\\.mirrorCapGiB: expected at most 0\\.06 GiB .*, got 0\\.5: 0\\.50 GiB is larger than the filesystem that holds the cache's store ${storage} \\(0\\.06 GiB at ${store}\\)`,
    ),
  );
});

test("a store on the runner's _work filesystem whose full cache leaves the watermark no room is an error; with room, none", async () => {
  const disk = await tmpfs('shared-disk', '1g');
  const storage = path.join(disk, 'image-cache');
  const runnerRoot = path.join(disk, 'actions-runner');
  const bad = await hostConfig('watermark', runnerRoot, `${loopback}  mirrorCapGiB: 0.97\nlimits:\n  minFreeDiskPercent: 10\n`);
  const found = await mirrorCapFitness(await loadHostConfig(bad.file, {}), { storage });
  assert.equal(found.errors.length, 1, JSON.stringify(found));
  assert.match(
    found.errors[0] ?? '',
    new RegExp(
      `^${bad.policyFile}: docker\\.mirrorCapGiB: expected at most 0\\.90 GiB .*got 0\\.97: .*same filesystem as the runner's work directory ${path.join(runnerRoot, '_work')} .*limits\\.minFreeDiskPercent \\(10%, 0\\.10 GiB\\)`,
    ),
  );
  // The same cap with the store on a filesystem of its own: no watermark to collide with.
  const apart = await tmpfs('store-apart', '1g');
  const ok = await mirrorCapFitness(await loadHostConfig(bad.file, {}), { storage: path.join(apart, 'image-cache') });
  assert.deepEqual(ok.errors, [], JSON.stringify(ok));
  assert.match(
    ok.warnings.join('\n'),
    /leaves under 5% of the cache's filesystem/,
    'but a full cache would leave its own disk under 5% free',
  );
  // Room for the watermark on the shared disk, and a cap of at least 1 GiB: nothing to say.
  const fine = await hostConfig('fine', runnerRoot, `${loopback}  mirrorCapGiB: 0.5\n`);
  const small = await mirrorCapFitness(await loadHostConfig(fine.file, {}), { storage });
  assert.deepEqual(small.errors, []);
  assert.match(small.warnings.join('\n'), /0\.50 GiB is under 1\.00 GiB: too small to keep one/, 'an empty cache: the floor is a warning');
});

test('a cap smaller than an image the cache holds is an error naming the image; a cap that holds it is not', async () => {
  const disk = await tmpfs('cache-with-image', '1g');
  const storage = path.join(disk, 'image-cache');
  // A manifest in the store's layout (blobs/sha256/<2>/<hex>/data): 300 MiB of layers by their sizes.
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { size: 1500, digest: `sha256:${'c'.repeat(64)}` },
    layers: [{ size: 200 * 1024 ** 2 }, { size: 100 * 1024 ** 2 }],
  });
  const hex = createHash('sha256').update(manifest).digest('hex');
  const dir = path.join(storage, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex);
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'data'), manifest);
  const work = await tmpfs('work-b', '64m');
  const { file, policyFile } = await hostConfig('image', work, `${loopback}  mirrorCapGiB: 0.2\n`);
  const found = await mirrorCapFitness(await loadHostConfig(file, {}), { storage });
  assert.equal(found.errors.length, 1, JSON.stringify(found));
  assert.match(
    found.errors[0] ?? '',
    new RegExp(
      `^${policyFile}: docker\\.mirrorCapGiB: expected at least 0\\.33 GiB .*got 0\\.2: 0\\.20 GiB cannot hold the largest image the cache holds now \\(sha256:${hex}, 0\\.29 GiB`,
    ),
  );
  const roomy = await hostConfig('image-ok', work, `${loopback}  mirrorCapGiB: 0.4\n`);
  assert.deepEqual(await mirrorCapFitness(await loadHostConfig(roomy.file, {}), { storage }), { errors: [], warnings: [] });
});

test('no loopback mirror: the cap is not this host’s to keep and nothing is checked; the default cap is named by the team file', async () => {
  const work = await tmpfs('work-c', '16m');
  const none = await hostConfig('no-mirror', work, 'docker:\n  mirrorCapGiB: 50000\n');
  assert.deepEqual(await mirrorCapFitness(await loadHostConfig(none.file, {})), { errors: [], warnings: [] });
  const remote = await hostConfig('remote', work, 'docker:\n  mirror: http://cache.example.test:5000\n  mirrorCapGiB: 50000\n');
  assert.deepEqual(await mirrorCapFitness(await loadHostConfig(remote.file, {})), { errors: [], warnings: [] });
  // Validate run where the runner user does not exist (a workstation) measures no disk.
  const elsewhere = await hostConfig('elsewhere', work, `${loopback}  mirrorCapGiB: 100000\n`, 'rw-no-such-user');
  assert.deepEqual(await mirrorCapFitness(await loadHostConfig(elsewhere.file, {})), { errors: [], warnings: [] });
  // The default cap (20 GiB) on a 16 MiB disk: the line names the team's file and says the value is the default.
  const dflt = await hostConfig('default-cap', work, loopback);
  const found = await mirrorCapFitness(await loadHostConfig(dflt.file, {}), { storage: path.join(work, 'store') });
  assert.match(found.errors[0] ?? '', new RegExp(`^${dflt.policyFile} \\(default value\\): docker\\.mirrorCapGiB: expected at most`));
  // Through the command: exit 1, the host config's name first.
  const { io, err } = captureIo();
  const big = await hostConfig('cmd', work, `${loopback}  mirrorCapGiB: 100000\n`);
  assert.equal(await validateCommand([big.file], io), 1);
  assert.match(err(), new RegExp(`^${big.file}: ${big.policyFile}: docker\\.mirrorCapGiB: expected at most .* got 100000`, 'm'));
});
