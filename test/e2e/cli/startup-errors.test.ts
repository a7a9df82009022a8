/**
 * How `runner-warden run` ends when it cannot start, as systemd sees it: a real process, one
 * message naming the field, exit 78 for what an operator must fix, and no process left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { createWorld, type World } from '../../helpers/world.js';
import { agentLockDir, cliCommand, MAIN } from '../../helpers/agent-process.js';
import { main } from '../../../src/cli/main.js';

/** The installed command's launcher (runs the bundle when built, else the sources through tsx). */
const LAUNCHER = new URL('../../../bin/runner-warden.js', import.meta.url).pathname;

/** The runner-user lock directory beside the config file (inside the test's root, never the host's /run). */
function lockEnv(args: string[]): Record<string, string> {
  const i = args.indexOf('--config');
  const file = i >= 0 ? args[i + 1] : undefined;
  return file !== undefined ? { RUNNER_WARDEN_LOCK_DIR: agentLockDir(file) } : {};
}

/** Runs the CLI; kills it (and fails) if it is still alive after `timeoutMs`. */
function runCli(args: string[], timeoutMs = 60_000, entry = MAIN): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(entry === MAIN ? cliCommand() : [entry]), ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', RUNNER_WARDEN_LOG_LEVEL: 'warn', ...lockEnv(args) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`runner-warden ${args.join(' ')} was still running after ${timeoutMs} ms (a process left doing nothing)\n${err}`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

async function withConfig(w: World, over: Record<string, unknown>): Promise<string> {
  const cfg = parse(await readFile(w.configFile, 'utf8')) as Record<string, unknown>;
  const file = path.join(w.lab.root, 'etc', `variant-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, stringify({ ...cfg, ...over }), { mode: 0o600 });
  return file;
}

test('a config error is printed once, names the field, and exits 78', async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  const file = await withConfig(w, { runner: { root: 'relative/path', user: w.lab.user.name } });
  const r = await runCli(['run', '--config', file]);
  assert.equal(r.code, 78, r.err);
  const hits = r.err.split('\n').filter((l) => /runner\.root: expected an absolute path/.test(l));
  assert.equal(hits.length, 1, `the problem must be printed once:\n${r.err}`);
});

test('a health port in use exits 78 naming health.listen, without a stack, and leaves no process running', async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.after(() => new Promise<void>((r) => blocker.close(() => r())));
  const port = (blocker.address() as net.AddressInfo).port;
  const file = await withConfig(w, { health: { listen: `127.0.0.1:${port}` } });
  const r = await runCli(['run', '--config', file]);
  assert.equal(r.code, 78, r.err);
  assert.match(r.err, /health\.listen: .*in use/);
  assert.doesNotMatch(r.err, /\n\s+at /, `a raw stack was printed:\n${r.err}`);
  // The lock went with the process: a second start gets as far as the same error, not "locked".
  const again = await runCli(['run', '--config', file]);
  assert.equal(again.code, 78, again.err);
});

test('a read-only stateDir exits 78 naming stateDir', async (t) => {
  const w = await createWorld();
  const ro = path.join(w.lab.root, 'ro-state');
  await mkdir(ro);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro]);
  t.after(async () => {
    execFileSync('umount', [ro]);
    await w.dispose();
  });
  const file = await withConfig(w, { stateDir: ro });
  const r = await runCli(['run', '--config', file]);
  assert.equal(r.code, 78, r.err);
  assert.match(r.err, /stateDir: expected a directory root can write, got ".*ro-state" \(EROFS\)/);
  assert.equal(r.err.trim().split('\n').length <= 2, true, `one message:\n${r.err}`);
});

test('a command that throws gets one message and exit 70 from main, never a rejection (the installed launcher would print a raw stack and exit 1)', async () => {
  let err = '';
  const io = {
    stdout: {
      write: (): boolean => {
        throw new Error('stdout is gone');
      },
    },
    stderr: { write: (s: string) => (err += s) },
  };
  const code = await main(['version'], io, {});
  assert.equal(code, 70, err);
  assert.equal(err.match(/stdout is gone/g)?.length, 1, `one message:\n${err}`);
});

test('the installed launcher (bin/runner-warden.js) exits with the code main gives: 78 and one message for a missing config', async () => {
  const r = await runCli(['run', '--config', '/nonexistent/runner-warden.yaml'], 60_000, LAUNCHER);
  assert.equal(r.code, 78, r.err);
  assert.doesNotMatch(r.err, /\n\s+at /, `a raw stack was printed:\n${r.err}`);
  assert.equal(r.err.match(/expected a file, got nothing/g)?.length, 1, `the problem is printed once:\n${r.err}`);
});
