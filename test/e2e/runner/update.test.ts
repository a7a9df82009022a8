/** Runner updates in place: verified, unpacked beside, switched atomically, crash-safe. */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeReleases, type FakeRelease } from '../../../src/sim/github/releases.js';
import { installedVersion, recoverRunnerUpdate, updateRunner } from '../../../src/runner/update.js';
import { build } from 'esbuild';
import { ManualClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const OLD = '2.330.0';
const NEW = '2.331.0';

/** A runner installation tree of `version` (the listener answers --version like the real one). */
async function writeRunner(dir: string, version: string): Promise<void> {
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await mkdir(path.join(dir, 'externals', 'node20', 'bin'), { recursive: true });
  await writeFile(path.join(dir, 'bin', 'Runner.Listener'), `#!/bin/sh\necho ${version}\n`);
  await chmod(path.join(dir, 'bin', 'Runner.Listener'), 0o755);
  await writeFile(path.join(dir, 'bin', `Runner.Worker.dll`), `worker ${version}\n`);
  await writeFile(path.join(dir, 'externals', 'node20', 'bin', 'node'), `node for ${version}\n`);
  for (const f of ['run.sh', 'config.sh', 'env.sh']) await writeFile(path.join(dir, f), `#!/bin/sh\n# ${f} ${version}\n`);
}

async function tarball(scratch: string, version: string): Promise<Buffer> {
  const src = path.join(scratch, `src-${version}`);
  await writeRunner(src, version);
  const out = path.join(scratch, `r-${version}.tar.gz`);
  const r = spawnSync('tar', ['-czf', out, '-C', src, '.']);
  assert.equal(r.status, 0, String(r.stderr));
  return readFile(out);
}

async function setup(t: TestContext, digest: FakeRelease['digest'] = 'true') {
  const scratch = await mkdtemp(path.join(tmpdir(), 'rw-update-'));
  t.after(() => rm(scratch, { recursive: true, force: true }));
  const root = path.join(scratch, 'runner');
  await writeRunner(root, OLD);
  await mkdir(path.join(root, '_work'));
  await writeFile(path.join(root, '.runner'), '{}');
  const bytes = await tarball(scratch, NEW);
  const releases = await startFakeReleases([{ version: NEW, assets: [{ name: `actions-runner-linux-x64-${NEW}.tar.gz`, bytes }], digest }]);
  t.after(() => releases.close());
  let manifests = 0;
  const opts = {
    root,
    source: releases.url,
    apiUrl: releases.url,
    clock: new ManualClock(),
    log: silentLogger(),
    retakeManifest: async () => {
      manifests++;
    },
  };
  return { root, releases, opts, manifests: () => manifests };
}

test('a newer release with the published digest is installed beside the old one and switched in place', async (t) => {
  const { root, opts, manifests } = await setup(t);
  const started = performance.now();
  const r = await updateRunner(opts);
  const ms = performance.now() - started;
  assert.ok('updated' in r, JSON.stringify(r));
  assert.equal(r.updated, NEW);
  assert.equal(await installedVersion(root), NEW);
  assert.equal(await readFile(path.join(root, 'run.sh'), 'utf8'), `#!/bin/sh\n# run.sh ${NEW}\n`);
  assert.equal(await readlink(path.join(root, 'bin')), 'versions/current/bin');
  assert.equal(await readlink(path.join(root, 'versions', 'current')), NEW);
  assert.equal(
    await readFile(path.join(root, 'versions', OLD, 'bin', 'Runner.Worker.dll'), 'utf8'),
    `worker ${OLD}\n`,
    'the old version is kept for a roll back',
  );
  assert.equal(await readFile(path.join(root, '.runner'), 'utf8'), '{}', 'what the runner owns is not touched');
  assert.equal(manifests(), 1, 'the installation manifest is re-taken after the switch');
  console.log(`# in-place update (loopback download included): ${ms.toFixed(0)} ms`);
  assert.deepEqual(await updateRunner(opts), { none: `v${NEW} is the newest release` });
});

test("the same update from GitHub's releases API (digest in the release notes when the asset has none)", async (t) => {
  const { root, opts, releases } = await setup(t);
  const r = await updateRunner({ ...opts, source: 'github' });
  assert.ok('updated' in r, JSON.stringify(r));
  assert.equal(await installedVersion(root), NEW);
  assert.ok(releases.requests.includes('/repos/actions/runner/releases/latest'));
});

test('a tarball whose SHA-256 differs from the published digest is refused and the old runner keeps serving', async (t) => {
  const { root, opts, manifests } = await setup(t, 'wrong');
  const r = await updateRunner(opts);
  assert.ok('refused' in r && /differs from the published/.test(r.refused), JSON.stringify(r));
  assert.equal(await installedVersion(root), OLD);
  assert.equal(manifests(), 0);
  await assert.rejects(readlink(path.join(root, 'bin')), 'bin is still the original directory');
});

test('a release that publishes no digest is refused', async (t) => {
  const { root, opts } = await setup(t, 'none');
  const r = await updateRunner(opts);
  assert.ok('refused' in r && /no SHA-256/.test(r.refused), JSON.stringify(r));
  assert.equal(await installedVersion(root), OLD);
});

const STEPS: [step: string, versionAfterRestart: string][] = [
  ['download', OLD],
  ['unpack', OLD],
  ['migrate', OLD],
  ['migrate:bin', OLD],
  ['migrate:externals', OLD],
  ['switch', OLD],
  ['switched', NEW],
];

/**
 * The crash child bundled once into plain JavaScript: each kill then starts node alone instead of
 * compiling the TypeScript again (seven starts took most of this file's two minutes).
 */
let childBundle: Promise<string> | undefined;
let childDir: string | undefined;
// At file level: an after() called inside a test would run when that test ends.
after(() => (childDir ? rm(childDir, { recursive: true, force: true }) : undefined));
function crashChild(): Promise<string> {
  childBundle ??= (async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'rw-update-child-'));
    childDir = dir;
    const file = path.join(dir, 'update-child.mjs');
    await build({
      entryPoints: [path.join(here, 'fixtures', 'update-child.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: file,
      logLevel: 'silent',
      // Bundled CommonJS dependencies call require(); give the ESM bundle one.
      banner: {
        js: "import { createRequire as __rwCreateRequire } from 'node:module'; const require = __rwCreateRequire(import.meta.url);",
      },
    });
    return file;
  })();
  return childBundle;
}

for (const [step, expected] of STEPS) {
  test(`killed at "${step}": after restart the runner works (v${expected}) and a new try completes`, async (t) => {
    const { root, opts, releases } = await setup(t);
    const childFile = await crashChild();
    // Not spawnSync: the release server lives in this process and must keep answering.
    const child = await new Promise<{ signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
      const c = spawn(process.execPath, [childFile, root, releases.url, step], { timeout: 60_000 });
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      c.on('close', (_code, signal) => resolve({ signal, stdout, stderr }));
    });
    assert.equal(child.signal, 'SIGKILL', `the update should have died at ${step}: ${child.stdout} ${child.stderr}`);
    // The restart: the agent recovers first, then the listener must start.
    await recoverRunnerUpdate(root);
    assert.equal(await installedVersion(root), expected);
    const r = await updateRunner(opts);
    if (expected === OLD) assert.ok('updated' in r, JSON.stringify(r));
    else assert.ok('none' in r, JSON.stringify(r));
    assert.equal(await installedVersion(root), NEW);
  });
}
