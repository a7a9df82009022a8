import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateCommand } from '../../../src/cli/validate.js';
import { captureIo } from '../../helpers/io.js';

const POLICIES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../policies');
const EXAMPLES = ['base.yaml', 'default.yaml', 'container-reuse.yaml', 'docker-heavy.yaml', 'strict.yaml'].map((f) =>
  path.join(POLICIES, f),
);
const HOST = 'github:\n  org: acme\n  token: {env: GH_TOKEN}\nrunner: {root: /opt/actions-runner, user: runner}\n';

/** Runs the command and captures what it printed. */
async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await validateCommand(args, c.io);
  return { code, out: c.out(), err: c.err() };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-policy-cli-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('validate exits 0 for the example policies and a host config, naming the kind it detected', async () => {
  await withDir(async (dir) => {
    await writeFile(path.join(dir, 'config.yaml'), HOST);
    const r = await run([path.join(dir, 'config.yaml'), ...EXAMPLES]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.err, '');
    assert.match(r.out, /config\.yaml: ok \(host config\)/);
    assert.equal(r.out.match(/: ok \(policy\)/g)?.length, EXAMPLES.length);
  });
});

test('validate exits 1 when any file is invalid, listing every problem on stderr', async () => {
  await withDir(async (dir) => {
    const bad = path.join(dir, 'payments.yaml');
    await writeFile(bad, 'version: 1\ncleanup:\n  workdir:\n    keep: [_tool, ../../etc]\nhost: {maxJobs: x}\n');
    const r = await run([EXAMPLES[0] as string, bad]);
    assert.equal(r.code, 1);
    assert.deepEqual(r.err.trim().split('\n'), [
      `${bad}:4:19: cleanup.workdir.keep[1]: expected a path inside _work (relative, no '..'), got "../../etc" ('..' escapes the root)`,
      `${bad}:5:17: host.maxJobs: expected an integer, got "x"`,
      '1 of 2 file(s) invalid',
    ]);
    assert.match(r.out, /base\.yaml: ok/);
  });
});

test('validate exits 1 for a missing file, an unknown option, or no file at all', async () => {
  assert.equal((await run(['/nonexistent/rw/team.yaml'])).code, 1);
  const unknown = await run(['--frobnicate', EXAMPLES[0] as string]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /unknown option --frobnicate/);
  const none = await run([]);
  assert.equal(none.code, 1);
  assert.match(none.err, /usage: runner-warden validate/);
  assert.equal((await run(['--help'])).code, 0);
});

test('--kind forces how a file is read', async () => {
  await withDir(async (dir) => {
    await writeFile(path.join(dir, 'odd.yaml'), HOST);
    const r = await run(['--kind', 'policy', path.join(dir, 'odd.yaml')]);
    assert.equal(r.code, 1);
    assert.match(r.err, /github: unknown key/);
    assert.equal((await run(['--kind=host', '--quiet', path.join(dir, 'odd.yaml')])).out, '', '--quiet prints nothing for valid files');
  });
});

test('--print-effective prints the merged policy with the file of each value', async () => {
  const r = await run(['--print-effective', path.join(POLICIES, 'docker-heavy.yaml')]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^# effective policy of .*docker-heavy\.yaml/);
  assert.match(r.out, /\n {2}maxJobs: 50 +# .*docker-heavy\.yaml\n/);
  assert.match(r.out, /\n {4}paths: +# .*base\.yaml\n/);
  assert.match(r.out, /\n {4}enabled: true +# \(default\)\n/);
});

test('--print-effective exits 1 with the problems of an invalid chain, and takes one file only', async () => {
  await withDir(async (dir) => {
    await writeFile(path.join(dir, 'a.yaml'), 'version: 1\nextends: a.yaml\n');
    const r = await run(['--print-effective', path.join(dir, 'a.yaml')]);
    assert.equal(r.code, 1);
    assert.equal(r.err.trim(), `${path.join(dir, 'a.yaml')}:2:10: extends: expected no cycle of extends, got a.yaml -> a.yaml`);
    assert.equal((await run(['--print-effective', EXAMPLES[0] as string, EXAMPLES[1] as string])).code, 1);
  });
});

test("validate checks the recycle provider's own options, naming the file and the field", async () => {
  await withDir(async (dir) => {
    const file = path.join(dir, 'config.yaml');
    await writeFile(
      file,
      `${HOST}recycle:\n  provider: aws-asg\n  lifecycleHookName: "not a hook name!"\n  fallback:\n    - provider: webhook\n      url: https://hooks.example/recycle\n`,
    );
    const r = await run([file]);
    assert.equal(r.code, 1, r.out);
    assert.ok(r.err.includes(`${file}:7:22: recycle.lifecycleHookName: expected a lifecycle hook name`), r.err);
    assert.ok(r.err.includes(`${file}:9:7: recycle.fallback[0]: missing required key "secretFile"`), r.err);
    await writeFile(file, `${HOST}recycle:\n  provider: aws-asg\n  lifecycleHookName: runner-drain\n`);
    assert.equal((await run([file])).code, 0);
  });
});
