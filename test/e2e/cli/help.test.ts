/** `<command> --help` (and `-h`) prints the command's usage and does nothing else, for every command. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { main } from '../../../src/cli/main.js';
import { COMMAND_USAGE } from '../../../src/cli/usage.js';
import { controlSocketPath, startControlSocket } from '../../../src/cli/control-socket.js';
import { captureIo } from '../../helpers/io.js';

const COMMANDS = Object.keys(COMMAND_USAGE);

test('every command main lists has a usage text (so the table below covers it)', async () => {
  const c = captureIo();
  assert.equal(await main(['help'], c.io, {}), 0);
  const listed = [...c.out().matchAll(/^ {2}([a-z][a-z-]*) /gm)].map((m) => m[1] as string);
  assert.ok(listed.length >= 9, `could not read the command list from: ${c.out()}`);
  for (const cmd of listed) assert.ok(COMMAND_USAGE[cmd] !== undefined, `${cmd} has no entry in COMMAND_USAGE (src/cli/usage.ts)`);
});

for (const flag of ['--help', '-h']) {
  for (const cmd of COMMANDS) {
    test(`${cmd} ${flag} prints its usage, exits 0 and reads no config`, async () => {
      const c = captureIo();
      // A config path that does not exist: a command that loads it before reading --help fails.
      const env = { RUNNER_WARDEN_CONFIG: '/nonexistent/runner-warden/config.yaml' };
      const code = await main([cmd, '--config', '/nonexistent/config.yaml', flag], c.io, env);
      assert.equal(code, 0, `${cmd} ${flag} exited ${code}: ${c.err()}`);
      assert.match(c.out(), new RegExp(`^usage: runner-warden ${cmd}`));
      assert.equal(c.err(), '', `${cmd} ${flag} wrote to stderr`);
    });
  }
}

test('drain --help does not drain a running agent (and drain without it does)', async (t) => {
  const d = await mkdtemp(path.join(os.tmpdir(), 'rw-help-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  const stateDir = path.join(d, 'state');
  await mkdir(stateDir, { mode: 0o711 });
  const config = path.join(d, 'config.yaml');
  await writeFile(
    config,
    `github:\n  url: https://github.com\n  org: acme\n  token: { file: ${d}/token }\nrunner:\n  root: ${d}/runner\n  user: nobody\nstateDir: ${stateDir}\n`,
  );
  let drains = 0;
  const control = await startControlSocket(controlSocketPath(stateDir), { drain: () => void drains++ }, 4242);
  t.after(() => control.close());
  const c = captureIo();
  assert.equal(await main(['drain', '--config', config, '--help'], c.io, {}), 0);
  assert.equal(drains, 0, 'drain --help drained the agent');
  const d2 = captureIo();
  assert.equal(await main(['drain', '--config', config], d2.io, {}), 0, d2.err());
  assert.equal(drains, 1, 'the control socket was not reached: the test above proves nothing');
  assert.match(d2.out(), /agent 4242/);
});

test('an argument after -- is not a help flag', async () => {
  const c = captureIo();
  const code = await main(['validate', '--', '--help'], c.io, {});
  assert.equal(code, 1, 'validate treats "--help" after -- as a file name (which does not exist)');
});

test('unquarantine without --reason prints the one usage text of usage.ts on stderr and fails', async () => {
  const c = captureIo();
  const code = await main(['unquarantine', '--config', '/nonexistent/config.yaml'], c.io, {});
  assert.notEqual(code, 0);
  assert.ok(c.err().endsWith(COMMAND_USAGE.unquarantine ?? '<none>'), `stderr was: ${c.err()}`);
  assert.match(c.err(), /--reason TEXT is required/);
});
