/**
 * The agent in registration-token mode, end to end: the real agent, the simulator's
 * config.sh and listener as real processes of a throwaway runner user, and the fake GitHub API.
 * Slower than a unit test (about 10-20 s in all): every registration starts config.sh, and the
 * side-by-side test runs two agents.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { createWorld, jobRecords, until, SIM_ENV, type World, type WorldOptions } from './agent-world.js';
import { createLogger, type Logger } from '../../../src/lib/log.js';
import { GitHubApiError } from '../../../src/lib/errors.js';
import { createOctokitPort } from '../../../src/github/octokit.js';
import { systemClock } from '../../../src/lib/clock.js';
import type { GitHubPort } from '../../../src/github/port.js';

/**
 * What a hostile job looks for: every readable command line and environment on the host. One cat
 * for all of them (a cat and a tr per process took most of a minute on a loaded machine); an
 * unreadable or vanished file is skipped and the next one read.
 */
const SNOOP = (drop: string): string =>
  `cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' > ${drop}/proc.$GITHUB_RUN_ID || true`;

/** A world whose host config says `github.registration: token`; config.sh reaches the fake through RUNNER_SIM_API_URL. */
async function tokenWorld(o: WorldOptions = {}, mode: 'token' | 'jit' = 'token'): Promise<World> {
  const w = await createWorld(o);
  const cfg = parse(await readFile(w.configFile, 'utf8')) as {
    github: Record<string, unknown>;
    runner: { env?: Record<string, string> };
  };
  cfg.github.registration = mode;
  cfg.runner.env = { ...SIM_ENV, ...cfg.runner.env, RUNNER_SIM_API_URL: w.fake.origin };
  await writeFile(w.configFile, stringify(cfg), { mode: 0o600 });
  return w;
}

/** A debug-level logger whose lines are kept (pino's sink pattern). */
function captureLog(): { log: Logger; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', destination: sink }), text: () => lines.join('') };
}

/** Every registration token the fake handed out. */
function issuedTokens(w: World): string[] {
  return w.fake.requests
    .filter((r) => r.kind === 'rest' && /\/actions\/runners\/(registration|remove)-token$/.test(r.apiPath) && r.status === 201)
    .map((r) => (r.resBody as { token: string }).token);
}

/** The runner ids the fake created, by way of creation. */
function creations(w: World): { via: string }[] {
  const out: { via: string }[] = [];
  w.fake.events.on('runner-created', (e) => out.push({ via: e.via }));
  return out;
}

test('in token mode the agent registers through config.sh, serves jobs, and the token never shows in a command line or a log', async (t) => {
  const w = await tokenWorld({ runner: { maxJobs: 2 } });
  t.after(() => w.dispose());
  const created = creations(w);
  for (let i = 0; i < 2; i++) {
    w.fake.enqueueJob({ repository: 'octo/app', runId: 700 + i, steps: [{ name: 'snoop', run: SNOOP(w.dropDir) }] });
  }
  const cap = captureLog();
  const rt = await w.runtime({ log: cap.log });
  const exit = await rt.agent.run(AbortSignal.timeout(150_000));
  await rt.close();
  assert.equal(exit.code, 0, `agent exit: ${exit.reason}`);

  const jobs = jobRecords(await w.journal());
  assert.deepEqual(
    jobs.map((j) => j.result),
    ['Succeeded', 'Succeeded'],
  );
  for (const j of jobs) assert.equal(j.cleanup.clean, true, `cleanup not clean: ${JSON.stringify(j.cleanup.verify.problems)}`);
  assert.deepEqual(
    created.map((c) => c.via),
    ['registration', 'registration'],
    'every runner must come from config.sh, not JIT',
  );
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 0, 'token mode must not call generate-jitconfig');
  assert.equal(w.fake.restCalls({ path: /registration-token$/ }), 1, 'one registration token serves both jobs within its hour');
  assert.equal(w.fake.runners().length, 0, 'the service removes each ephemeral runner after its job: no ghosts');

  const secrets = issuedTokens(w);
  assert.ok(secrets.length > 0);
  const logged = cap.text();
  assert.match(logged, /config\.sh output/, 'the capture should hold config.sh output, or it proves nothing');
  const drops = await readdir(w.dropDir);
  assert.equal(drops.length, 2, 'each job should have left its /proc scan');
  for (const secret of secrets) {
    assert.equal(logged.includes(secret), false, 'a registration token appeared in the agent log');
    for (const f of drops) {
      const text = await readFile(path.join(w.dropDir, f), 'utf8');
      assert.equal(text.includes(secret), false, `${f}: the job could read a registration token`);
    }
  }
  for (const f of drops) {
    const text = await readFile(path.join(w.dropDir, f), 'utf8');
    assert.equal(/ACTIONS_RUNNER_INPUT_/.test(text), false, `${f}: an ACTIONS_RUNNER_INPUT_ variable reached the job`);
  }
});

test('a JIT agent and a token agent serve jobs side by side, each through its own path', async (t) => {
  const [jit, tok] = await Promise.all([tokenWorld({ runner: { maxJobs: 1 } }, 'jit'), tokenWorld({ runner: { maxJobs: 1 } })]);
  t.after(async () => {
    await jit.dispose();
    await tok.dispose();
  });
  const made = { jit: creations(jit), token: creations(tok) };
  for (const w of [jit, tok]) w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'build', run: 'echo built > out.txt' }] });
  const [a, b] = await Promise.all([jit.runtime(), tok.runtime()]);
  const exits = await Promise.all([a.agent.run(AbortSignal.timeout(150_000)), b.agent.run(AbortSignal.timeout(150_000))]);
  await Promise.all([a.close(), b.close()]);
  for (const e of exits) assert.equal(e.code, 0, e.reason);
  for (const w of [jit, tok]) {
    const jobs = jobRecords(await w.journal());
    assert.equal(jobs[0]?.result, 'Succeeded');
    assert.equal(jobs[0]?.cleanup.clean, true, JSON.stringify(jobs[0]?.cleanup.verify.problems));
    assert.equal(w.fake.runners().length, 0, 'no registration left');
  }
  assert.deepEqual(
    made.jit.map((c) => c.via),
    ['jit'],
  );
  assert.deepEqual(
    made.token.map((c) => c.via),
    ['registration'],
  );
  assert.equal(jit.fake.restCalls({ path: /registration-token$/ }), 0);
  assert.equal(tok.fake.restCalls({ path: /generate-jitconfig/ }), 0);
});

test('a config.sh that fails (unknown runner group) is retried with backoff until the group exists', async (t) => {
  const w = await tokenWorld({ runner: { maxJobs: 1, group: 'builders' } });
  t.after(() => w.dispose());
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'build', run: 'true' }] });
  const cap = captureLog();
  const rt = await w.runtime({ log: cap.log });
  const running = rt.agent.run(AbortSignal.timeout(150_000));
  await until(() => (cap.text().match(/registration failed; backing off/g) ?? []).length >= 2, 'two failed config.sh runs');
  assert.match(cap.text(), /Could not find any self-hosted runner group named/, 'the log should name what config.sh refused');
  w.fake.runnerGroups.push({ id: 2, name: 'builders' });
  const exit = await running;
  await rt.close();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobRecords(await w.journal())[0]?.result, 'Succeeded', 'the job must run once the group exists');
  for (const secret of issuedTokens(w)) assert.equal(cap.text().includes(secret), false, 'a token reached the log');
});

test('when the API refuses DELETE, draining an idle token-mode runner removes it with config.sh remove', async (t) => {
  const w = await tokenWorld();
  t.after(() => w.dispose());
  const port = createOctokitPort({
    apiUrl: w.fake.url,
    scope: { kind: 'org', org: 'octo' },
    auth: { kind: 'token', token: w.fake.defaultToken },
    clock: systemClock,
    log: createLogger({ level: 'silent' }),
  });
  const refusing: GitHubPort = {
    ...port,
    deleteRunner: async () => {
      throw new GitHubApiError('GitHub API DELETE failed with 503: unavailable', 503, 'DELETE /orgs/octo/actions/runners/{runner_id}');
    },
  };
  const cap = captureLog();
  const rt = await w.runtime({ github: refusing, log: cap.log });
  const shutdown = new AbortController();
  const running = rt.agent.run(shutdown.signal);
  await until(() => rt.agent.snapshot().state === 'idle' && w.fake.runners().some((r) => r.status === 'online'), 'an idle, online runner');
  shutdown.abort();
  const exit = await running;
  await rt.close();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(w.fake.runners().length, 0, 'config.sh remove should have deleted the registration');
  assert.equal(w.fake.restCalls({ path: /remove-token$/ }), 1, 'one remove token for config.sh remove');
  assert.match(cap.text(), /"via":"config\.sh remove"/);
  for (const secret of issuedTokens(w)) assert.equal(cap.text().includes(secret), false, 'a token reached the log');
});

test("two hosts with the same runner name in token mode: the second takes the next name and never the first host's registration", async (t) => {
  const w = await tokenWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  // The other host: a live registration named as this host's first runner (test-1).
  const res = await fetch(`${w.fake.url}/orgs/octo/actions/runners/generate-jitconfig`, {
    method: 'POST',
    headers: { authorization: `Bearer ${w.fake.defaultToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'test-1', runner_group_id: 1, labels: ['self-hosted'] }),
  });
  assert.equal(res.status, 201);
  const other = ((await res.json()) as { runner: { id: number } }).runner.id;
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'build', run: 'true' }] });
  const { exit, jobs } = await w.runToEnd();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(jobs[0]?.result, 'Succeeded');
  assert.equal(jobs[0]?.runnerName, 'test-2', 'a taken name must move the agent to the next one');
  assert.deepEqual(
    w.fake.runners().map((r) => [r.id, r.name]),
    [[other, 'test-1']],
    "the other host's registration must be untouched (neither replaced nor deleted)",
  );
});
