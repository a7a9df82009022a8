import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, access } from 'node:fs/promises';
import path from 'node:path';
import { ADMIN_PATH } from '../../../src/recycle/argv.js';
import { commandProvider } from '../../../src/recycle/command.js';
import { shutdownProvider } from '../../../src/recycle/shutdown.js';
import { never, sampleEvent, tempRoot } from './fixtures.js';

/** Variables a shell may add by itself; anything else in the child's environment came from us. */
const SHELL_ADDED = new Set(['PWD', 'SHLVL', '_', 'OLDPWD']);

test('the command sees the event as JSON and as flat variables, and nothing of the agent environment', async () => {
  const { root, dispose } = await tempRoot();
  try {
    const out = path.join(root, 'env.txt');
    const event = sampleEvent();
    // A string command runs through /bin/sh -c, which also covers that form.
    const result = await commandProvider({
      provider: 'command',
      command: `/usr/bin/env > '${out}'`,
      env: { EXTRA: 'from-config' },
    }).recycle(event, never);
    assert.equal(result.ok, true, result.detail);
    const env = Object.fromEntries(
      (await readFile(out, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    assert.deepEqual(JSON.parse(env.RUNNER_WARDEN_EVENT ?? '{}'), event, 'the whole event must be in RUNNER_WARDEN_EVENT');
    assert.equal(env.RUNNER_WARDEN_REASON, 'max-jobs');
    assert.equal(env.RUNNER_WARDEN_HOST, 'runner-host-1');
    assert.equal(env.RUNNER_WARDEN_TEAM, 'payments');
    assert.equal(env.RUNNER_WARDEN_RUNNER_NAME, 'runner-host-1-7');
    assert.equal(env.RUNNER_WARDEN_RUNNER_ID, '42');
    assert.equal(env.RUNNER_WARDEN_JOBS_SERVED, '1');
    assert.equal(env.RUNNER_WARDEN_IDEMPOTENCY_KEY, event.idempotencyKey);
    assert.equal(env.EXTRA, 'from-config');
    assert.equal(env.PATH, ADMIN_PATH);
    const unexpected = Object.keys(env).filter(
      (k) => !k.startsWith('RUNNER_WARDEN_') && k !== 'EXTRA' && k !== 'PATH' && !SHELL_ADDED.has(k),
    );
    assert.deepEqual(unexpected, [], 'the agent environment (and its secrets) must not leak into admin commands');
  } finally {
    await dispose();
  }
});

test('a non-zero exit is a failure with the end of stderr in the detail', async () => {
  const out = await commandProvider({ provider: 'command', command: ['/bin/sh', '-c', 'echo "controller said no" >&2; exit 3'] }).recycle(
    sampleEvent(),
    never,
  );
  assert.equal(out.ok, false);
  assert.equal(out.detail, '/bin/sh exited 3: controller said no');
});

test('a command that outlives its timeout is killed with its process group and reported', async () => {
  // Real time: runCommand's timer is not clock-injected; 0.3 s keeps the test short.
  const started = Date.now();
  const out = await commandProvider({
    provider: 'command',
    command: ['/bin/sh', '-c', 'sleep 30 & sleep 30'],
    timeoutSeconds: 0.3,
  }).recycle(sampleEvent(), never);
  assert.equal(out.ok, false);
  assert.match(out.detail, /timed out after 300 ms/);
  assert.ok(Date.now() - started < 5_000, 'the timeout must not wait for the command (or its background child)');
});

test('a command that cannot start is a failure, not a throw', async () => {
  const out = await commandProvider({ provider: 'command', command: ['/nonexistent/recycle-me'] }).recycle(sampleEvent(), never);
  assert.equal(out.ok, false);
  assert.match(out.detail, /could not start: Error: spawn \/nonexistent\/recycle-me ENOENT/);
});

test('shutdown runs exactly the configured command and reports success', async () => {
  const { root, dispose } = await tempRoot();
  try {
    const marker = path.join(root, 'poweroff-called');
    const script = path.join(root, 'fake-poweroff');
    await writeFile(script, `#!/bin/sh\necho "$@" > '${marker}'\n`, { mode: 0o700 });
    const out = await shutdownProvider({ provider: 'shutdown', command: [script, '--no-wall'] }).recycle(sampleEvent(), never);
    assert.equal(out.ok, true, out.detail);
    assert.equal((await readFile(marker, 'utf8')).trim(), '--no-wall', 'the configured argv must be passed as given');
    assert.match(out.detail, /^shutdown requested/);
  } finally {
    await dispose();
  }
});

test('a failing shutdown command is reported so that a fallback runs', async () => {
  const out = await shutdownProvider({ provider: 'shutdown', command: ['false'] }).recycle(sampleEvent(), never);
  assert.equal(out.ok, false);
  assert.equal(out.detail, 'false exited 1');
});

test('an abort kills the running command and rejects', async () => {
  const { root, dispose } = await tempRoot();
  try {
    const ac = new AbortController();
    const started = path.join(root, 'started');
    const pending = commandProvider({ provider: 'command', command: ['/bin/sh', '-c', `touch '${started}'; exec sleep 30`] }).recycle(
      sampleEvent(),
      ac.signal,
    );
    for (let i = 0; i < 200; i++) {
      try {
        await access(started);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 10)); // polling a real child's start; no clock involved
      }
    }
    ac.abort();
    await assert.rejects(pending, (err: unknown) => err instanceof Error && err.name === 'AbortError');
  } finally {
    await dispose();
  }
});
