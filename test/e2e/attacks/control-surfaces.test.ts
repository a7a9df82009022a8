/**
 * The runner user against the agent's own files and ports, before or between the agent's runs: a
 * state, trash or job directory the runner user owns or can replace (so it could drop the
 * quarantine fact or plant links for root to write through), and the health port taken by a
 * process a job left behind while the agent was down. Each is played for real with the lab's runner
 * user and a real `runner-warden run`, then checked from outside.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { createWorld, type World } from '../../helpers/world.js';
import { runAs } from '../../helpers/lab.js';
import { agentLockDir, cliCommand, startAgentProcess, waitForState } from '../../helpers/agent-process.js';

/** A refused start ends in seconds; an agent that starts and serves is stopped at this bound (the bug). */
const START_LIMIT_MS = 60_000;

/** Runs the CLI as root; kills it if it still runs after `timeoutMs` (then `code` is null: it served). */
function runCli(args: string[], configFile: string, timeoutMs = START_LIMIT_MS): Promise<{ code: number | null; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...cliCommand(), ...args, '--config', configFile], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', RUNNER_WARDEN_LOG_LEVEL: 'warn', RUNNER_WARDEN_LOCK_DIR: agentLockDir(configFile) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, err });
    });
  });
}

/** `runner-warden validate FILE` as root. */
function validateCli(file: string): Promise<{ code: number | null; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...cliCommand(), 'validate', file], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('close', (code) => resolve({ code, err }));
  });
}

async function withConfig(w: World, over: (cfg: Record<string, unknown>) => Record<string, unknown>): Promise<string> {
  const cfg = parse(await readFile(w.configFile, 'utf8')) as Record<string, unknown>;
  const file = path.join(w.lab.root, 'etc', `variant-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, stringify(over(cfg)), { mode: 0o600 });
  return file;
}

test('a state, trash or job directory the runner user owns or could replace is refused with exit 78 naming the field, for run, cleanup and baseline', async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  const u = w.lab.user;
  // A directory the runner user owns (a runner root's neighbour, an operator's mkdir as that user).
  const theirs = path.join(w.lab.root, 'theirs');
  await mkdir(theirs, { mode: 0o755 });
  await chown(theirs, u.uid, u.gid);
  runAs(u, `mkdir -m 0700 ${theirs}/state`);
  // A root directory the runner user's group may write.
  const groupWritable = path.join(w.lab.root, 'group-writable');
  await mkdir(groupWritable, { mode: 0o775 });
  await chown(groupWritable, 0, u.gid);
  await chmod(groupWritable, 0o775);
  // A root directory every user may write, without the sticky bit.
  const open = path.join(w.lab.root, 'open');
  await mkdir(open);
  await chmod(open, 0o777);
  const runner = (cfg: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> => ({
    ...cfg,
    runner: { ...(cfg.runner as object), ...extra },
  });
  const cases: { name: string; field: RegExp; over: (cfg: Record<string, unknown>) => Record<string, unknown> }[] = [
    { name: 'stateDir made by the runner user', field: /stateDir: .*owned by uid/, over: (c) => ({ ...c, stateDir: `${theirs}/state` }) },
    {
      name: 'stateDir not there yet, in a directory the runner user owns',
      field: /stateDir: .*owned by uid/,
      over: (c) => ({ ...c, stateDir: `${theirs}/new` }),
    },
    {
      name: 'stateDir below a group-writable directory',
      field: /stateDir: .*writable by group/,
      over: (c) => ({ ...c, stateDir: `${groupWritable}/a/state` }),
    },
    {
      name: 'stateDir below a world-writable directory without the sticky bit',
      field: /stateDir: .*writable by every user/,
      over: (c) => ({ ...c, stateDir: `${open}/state` }),
    },
    {
      name: 'runner.trashDir in a directory the runner user owns',
      field: /runner\.trashDir: .*owned by uid/,
      over: (c) => runner(c, { trashDir: `${theirs}/trash` }),
    },
    {
      name: 'runner.jobRoot below a group-writable directory',
      field: /runner\.jobRoot: .*writable by group/,
      over: (c) => runner(c, { jobRoot: `${groupWritable}/jobs` }),
    },
  ];
  for (const c of cases) {
    const file = await withConfig(w, c.over);
    for (const cmd of c.name.startsWith('stateDir made') ? ['run', 'cleanup', 'baseline'] : ['run']) {
      const r = await runCli([cmd], file);
      assert.equal(r.code, 78, `${c.name}: ${cmd} must refuse with 78 (null: it started and served)\n${r.err}`);
      assert.match(r.err, c.field, `${c.name}: ${cmd} must name the field and why`);
    }
    // validate, in the image pipeline or on the host, says so before any agent runs.
    const v = await validateCli(file);
    assert.equal(v.code, 1, `${c.name}: validate must refuse\n${v.err}`);
    assert.match(v.err, c.field, `${c.name}: validate must name the field and why`);
  }
  // Nothing was written into the runner user's directory: no quarantine fact, state or journal for it to edit.
  assert.deepEqual(runAs(u, `ls -A ${theirs}/state`).trim(), '', 'the agent wrote into a state dir the runner user owns');
  assert.equal(runAs(u, `ls -A ${theirs}`).trim(), 'state', 'the agent made a directory inside one the runner user owns');
});

/** A process of the runner user answering every request as a healthy, idle agent would. */
const FAKE_HEALTH = `
const http = require('node:http');
const s = http.createServer((req, res) => {
  const body = req.url === '/status' ? JSON.stringify({ state: 'idle', fake: true }) + '\\n' : 'ok\\n';
  res.writeHead(200, { 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
s.listen(Number(process.argv[1]), '127.0.0.1', () => process.stdout.write('listening\\n'));
`;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(10_000) });
  return { status: r.status, body: await r.text() };
}

test("the health port taken by the runner user's process while the agent was down (a job's leftover) is taken back: the squatter is killed and the agent's own health answers", async (t) => {
  const w = await createWorld();
  const live: { squatter?: ChildProcess; agent?: ReturnType<typeof startAgentProcess> } = {};
  t.after(async () => {
    live.squatter?.kill('SIGKILL');
    await live.agent?.kill('SIGKILL');
    await w.dispose();
  });
  const port = await freePort();
  const u = w.lab.user;
  const sq = spawn(process.execPath, ['-e', FAKE_HEALTH, String(port)], {
    uid: u.uid,
    gid: u.gid,
    cwd: '/',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  live.squatter = sq;
  await new Promise<void>((resolve, reject) => {
    sq.stdout?.once('data', () => resolve());
    sq.once('exit', (code) => reject(new Error(`the squatter exited (${code})`)));
  });
  const gone = new Promise<void>((r) => sq.once('exit', () => r()));
  assert.match((await get(port, '/status')).body, /"fake":true/, 'the squatter answers before the agent starts');

  const file = await withConfig(w, (c) => ({ ...c, health: { ...(c.health as object), listen: `127.0.0.1:${port}` } }));
  const agent = startAgentProcess(file);
  live.agent = agent;
  await waitForState(w.stateDir, 'idle', { agent, timeoutMs: 90_000 });
  const status = await get(port, '/status');
  assert.doesNotMatch(status.body, /"fake"/, `the runner user's fake health still answers on the agent's port:\n${status.body}`);
  assert.match(status.body, /"state":"idle"/, 'the agent answers /status itself');
  await Promise.race([gone, new Promise((_, reject) => setTimeout(() => reject(new Error('the squatter still runs')), 10_000))]);
  assert.ok(
    agent.indexOf((l) => /health port/.test(String(l.msg)) && l.level >= 40) >= 0,
    `the agent must warn that it took its port back from the runner user\n${agent.tail()}`,
  );
});
