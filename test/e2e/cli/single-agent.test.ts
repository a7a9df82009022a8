/**
 * One agent per host: a second `runner-warden run` (same state dir, only the same runner root, or
 * only the same runner user)
 * is refused with exit 75 naming the pid that holds the lock, and touches nothing of the first.
 * `drain` reaches the agent through its root-only control socket, never a pid file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify, parse } from 'yaml';
import { createWorld, type World } from '../../helpers/world.js';
import { agentLockDir, cliCommand, startAgentProcess, waitForState, type AgentProcess } from '../../helpers/agent-process.js';

function lockEnv(args: string[]): Record<string, string> {
  const i = args.indexOf('--config');
  const file = i >= 0 ? args[i + 1] : undefined;
  return file !== undefined ? { RUNNER_WARDEN_LOCK_DIR: agentLockDir(file) } : {};
}

function cli(args: string[], env: Record<string, string> = {}): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [...cliCommand(), ...args], {
    encoding: 'utf8',
    // The runner-user locks beside the config (inside the test's root, never the host's /run).
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', RUNNER_WARDEN_LOG_LEVEL: 'warn', ...lockEnv(args), ...env },
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// One host and one agent for the whole file, in order: the refusals while it serves, then the drain
// that stops it, then a drain with no agent left (a world and an agent start each cost seconds).
describe('one agent per host', () => {
  let w: World;
  let first: AgentProcess;
  before(async () => {
    w = await createWorld();
    first = startAgentProcess(w.configFile);
  });
  after(async () => {
    await first?.kill('SIGKILL');
    await w?.dispose();
  });

  test("a second agent on the same state dir or runner root exits 75 naming the first agent's pid, and the first keeps serving", async () => {
    const idle = await waitForState(w.stateDir, 'idle', { agent: first, timeoutMs: 60_000 });
    const runnerName = idle.runner?.name;

    const sameState = cli(['run', '--config', w.configFile]);
    assert.equal(sameState.code, 75, `a second agent on the same state dir must be refused\n${sameState.err}`);
    assert.match(sameState.err, new RegExp(`pid ${first.pid}\\b`), 'the refusal names the holder');
    assert.equal(sameState.err.trim().split('\n').length, 1, `one message:\n${sameState.err}`);

    // Another state dir (and health port), the same runner installation.
    const cfg = parse(await readFile(w.configFile, 'utf8')) as Record<string, unknown>;
    const other = path.join(w.lab.root, 'etc', 'other.yaml');
    await writeFile(other, stringify({ ...cfg, stateDir: path.join(w.lab.root, 'state2') }), { mode: 0o600 });
    const sameRoot = cli(['run', '--config', other]);
    assert.equal(sameRoot.code, 75, `a second agent on the same runner root must be refused\n${sameRoot.err}`);
    assert.match(sameRoot.err, new RegExp(`pid ${first.pid}\\b`));

    // A manual cleanup or baseline would kill the running job or record its changes: refused too.
    const cleanup = cli(['cleanup', '--config', w.configFile]);
    assert.equal(cleanup.code, 75, `cleanup ran beside a running agent\n${cleanup.out}${cleanup.err}`);
    assert.match(cleanup.err, new RegExp(`pid ${first.pid}\\b`));
    assert.equal(cli(['baseline', '--config', w.configFile]).code, 75);
    assert.equal(cli(['cleanup', '--config', w.configFile, '--dry-run']).code !== 75, true, 'a dry run only reads and may run');

    // Another state dir and another runner installation, the same runner user: its cleanup would kill
    // the first agent's job (every process of that user) and restore the home under it.
    const otherRoot = path.join(w.lab.root, 'runner2');
    execFileSync('cp', ['-a', w.runnerRoot, otherRoot]);
    await rm(path.join(otherRoot, '.runner-warden.lock'), { force: true });
    const third = path.join(w.lab.root, 'etc', 'third.yaml');
    await writeFile(
      third,
      stringify({ ...cfg, stateDir: path.join(w.lab.root, 'state3'), runner: { ...(cfg.runner as object), root: otherRoot } }),
      { mode: 0o600 },
    );
    // Same lock directory as the first agent's (a real host has one, /run/runner-warden).
    const sameLockDir = { RUNNER_WARDEN_LOCK_DIR: agentLockDir(w.configFile) };
    const sameUser = cli(['run', '--config', third], sameLockDir);
    assert.equal(sameUser.code, 75, `a second agent for the same runner user must be refused\n${sameUser.err}`);
    assert.match(sameUser.err, new RegExp(`pid ${first.pid}\\b`), sameUser.err);
    const sameUserCleanup = cli(['cleanup', '--config', third], sameLockDir);
    assert.equal(sameUserCleanup.code, 75, `a cleanup of the same runner user ran beside the agent\n${sameUserCleanup.err}`);

    const still = await waitForState(w.stateDir, 'idle', { agent: first, timeoutMs: 5_000 });
    assert.equal(still.runner?.name, runnerName, 'the first agent kept its registration (nothing recovered it away)');
    assert.equal(w.fake.runners().length, 1, 'exactly one runner registered on the fake');
  });

  test('a stale agent.pid is never signalled, and drain reaches the agent through its control socket', async (t) => {
    const agent = first;
    await waitForState(w.stateDir, 'idle', { agent, timeoutMs: 60_000 });
    // A pid file naming this test process: the old drain would have sent it SIGUSR2 (and killed it).
    await writeFile(path.join(w.stateDir, 'agent.pid'), `${process.pid}\n`);
    let signalled = false;
    const onUsr2 = (): void => {
      signalled = true;
    };
    process.on('SIGUSR2', onUsr2);
    t.after(() => process.off('SIGUSR2', onUsr2));
    const r = cli(['drain', '--config', w.configFile]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`agent ${agent.pid}\\b`));
    const exit = await agent.waitForExit(60_000);
    assert.equal(signalled, false, 'drain signalled the pid in a stale pid file');
    assert.notEqual(exit.code, null, 'the agent stopped by itself after the drain');
  });

  test('drain with no agent running exits 75 and says so', async () => {
    // The agent the test above drained has exited: nothing listens on its control socket any more.
    await first.waitForExit(60_000);
    const r = cli(['drain', '--config', w.configFile]);
    assert.equal(r.code, 75);
    assert.match(r.err, /no running agent/);
  });
});
