/** `runner-warden run` with bad input: exit 78 with a message naming the file, the field and what was expected. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { main } from '../../../src/cli/main.js';
import { captureIo } from '../../helpers/io.js';

async function tmp(t: TestContext): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'rw-cli-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('a missing config file exits 78 naming the file', async (t) => {
  const d = await tmp(t);
  const c = captureIo();
  const code = await main(['run', '--config', path.join(d, 'nope.yaml')], c.io, {});
  assert.equal(code, 78);
  assert.match(c.err(), /nope\.yaml/);
});

test('an invalid config exits 78 naming the file, line, field and what was expected', async (t) => {
  const d = await tmp(t);
  const f = path.join(d, 'config.yaml');
  await writeFile(
    f,
    'github:\n  url: https://github.com\n  org: acme\n  token: { file: /etc/x }\nrunner:\n  root: relative/path\n  user: runner\n',
  );
  const c = captureIo();
  const code = await main(['run', '--config', f], c.io, {});
  assert.equal(code, 78);
  assert.match(c.err(), /config\.yaml:6:\d+: runner\.root: .*absolute/);
});

test('a runner root that is not a runner installation exits 78 naming the path', async (t) => {
  const d = await tmp(t);
  const root = path.join(d, 'not-a-runner');
  await mkdir(root);
  await writeFile(path.join(d, 'token'), 'x', { mode: 0o600 });
  const f = path.join(d, 'config.yaml');
  await writeFile(
    f,
    `github:\n  url: https://github.com\n  org: acme\n  token: { file: ${d}/token }\nrunner:\n  root: ${root}\n  user: nobody\nstateDir: ${d}/state\npolicyDir: ${d}/policies\n`,
  );
  const c = captureIo();
  const code = await main(['run', '--config', f], c.io, { RUNNER_WARDEN_LOCK_DIR: path.join(d, 'locks') });
  assert.equal(code, 78);
  assert.match(c.err(), new RegExp(`${root}.*not a runner installation.*bin/Runner\\.Listener`));
});

test('an unknown runner user exits 78 naming runner.user', async (t) => {
  const d = await tmp(t);
  const f = path.join(d, 'config.yaml');
  await writeFile(
    f,
    `github:\n  url: https://github.com\n  org: acme\n  token: { env: GH_TOKEN }\nrunner:\n  root: ${d}\n  user: no-such-user-rw\nstateDir: ${d}/state\n`,
  );
  const c = captureIo();
  const code = await main(['run', '--config', f], c.io, { GH_TOKEN: 'x' });
  assert.equal(code, 78);
  assert.match(c.err(), /runner\.user.*no-such-user-rw/);
});

test('unknown commands and options are usage errors', async () => {
  const c = captureIo();
  assert.equal(await main(['frobnicate'], c.io, {}), 64);
  assert.match(c.err(), /unknown command/);
  assert.equal(await main(['run', '--bogus'], c.io, {}), 64);
});
