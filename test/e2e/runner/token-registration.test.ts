/**
 * Registration-token mode through the runner simulator's real config.sh (run as the lab's runner
 * user) and the fake GitHub API: registration, removal, failures, the token's expiry, and where
 * the token may never appear (argv, logs).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, stat, symlink, writeFile, rm, mkdir, chown } from 'node:fs/promises';
import { Writable } from 'node:stream';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { startFakeGitHub, type FakeGitHub } from '../../../src/sim/github/server.js';
import { installSimulatedRunner } from '../../../src/sim/runner/install.js';
import { createOctokitPort } from '../../../src/github/octokit.js';
import { ManualClock, systemClock } from '../../../src/lib/clock.js';
import { createLogger, silentLogger } from '../../../src/lib/log.js';
import {
  ConfigShError,
  RunnerTokenCache,
  TOKEN_REFRESH_MARGIN_MS,
  TokenRegistrar,
  configShEnv,
  configureArgs,
  readLocalRegistration,
  registerWithToken,
  removeWithToken,
  classify,
  type ConfigShTarget,
  type RunnerToken,
} from '../../../src/runner/token-registration.js';

let lab: Lab;
let fake: FakeGitHub;
let root: string;
let target: ConfigShTarget;
let home: string;

/**
 * How long config.sh's first request may be held while the /proc scan looks for config.sh: a hang
 * bound only (a pass over /proc takes well under a second on a quiet host).
 */
const SEEN_WAIT_MS = 60_000;

/** The fake's org scope, as `config.sh --url` takes it. */
const scopeUrl = (): string => `${fake.origin}/octo`;

before(async () => {
  lab = await createLab('rw-tokenreg-');
  fake = await startFakeGitHub();
  root = path.join(lab.root, 'actions-runner');
  await installSimulatedRunner(root, { owner: { uid: lab.user.uid, gid: lab.user.gid } });
  home = path.join(lab.root, 'cfg-home');
  await mkdir(home);
  await chown(home, lab.user.uid, lab.user.gid);
  target = {
    runnerRoot: root,
    user: lab.user,
    // RUNNER_SIM_API_URL: the simulator's `remove` finds the API through it (its .runner has no gitHubUrl).
    env: configShEnv({ user: lab.user, home, tmp: home, extra: { RUNNER_SIM_API_URL: fake.origin } }),
  };
});

after(async () => {
  await fake.close();
  await lab.dispose();
});

/** TokenRegistrar settings shared by the tests. */
function registrarBase() {
  return { runnerRoot: root, user: lab.user, extraEnv: { RUNNER_SIM_API_URL: fake.origin }, log: silentLogger() };
}

async function restToken(kind: 'registration-token' | 'remove-token'): Promise<string> {
  const res = await fetch(`${fake.url}/orgs/octo/actions/runners/${kind}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${fake.defaultToken}` },
  });
  assert.equal(res.status, 201, `the fake refused to issue a ${kind}`);
  return ((await res.json()) as { token: string }).token;
}

/** A pino logger at debug level whose lines are kept in memory (pino's test sink pattern). */
function captureLog(): { log: ReturnType<typeof createLogger>; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', destination: sink }), text: () => lines.join('') };
}

test('config.sh argv never carries the token; empty labels and the default group are left out', () => {
  const args = configureArgs({ scopeUrl: 'https://ghes.example/octo', name: 'r-1', labels: [], group: null });
  assert.deepEqual(args, [
    '--unattended',
    '--ephemeral',
    '--disableupdate',
    '--url',
    'https://ghes.example/octo',
    '--name',
    'r-1',
    '--work',
    '_work',
  ]);
  const full = configureArgs({ scopeUrl: 'u', name: 'n', labels: ['a', 'b'], group: 'g', workFolder: 'w' });
  assert.deepEqual(full.slice(-6), ['--labels', 'a,b', '--runnergroup', 'g', '--work', 'w']);
  assert.equal(full.includes('--token'), false, 'the token must never be an argument');
  assert.equal(full.includes('--replace'), false, "--replace would take over another host's registration of the same name");
});

test('config.sh environment drops ACTIONS_RUNNER_INPUT_* from runner.env and keeps the agent variables on top', () => {
  const env = configShEnv({
    user: { name: 'runner' },
    home: '/h',
    tmp: '/t',
    extra: { HTTPS_PROXY: 'http://proxy:3128', ACTIONS_RUNNER_INPUT_TOKEN: 'x', actions_runner_input_url: 'y', HOME: '/evil' },
  });
  assert.equal(env.HTTPS_PROXY, 'http://proxy:3128');
  assert.equal(env.HOME, '/h', 'runner.env must not override HOME');
  assert.equal(
    Object.keys(env).some((k) => k.toUpperCase().startsWith('ACTIONS_RUNNER_INPUT_')),
    false,
  );
});

test('a runner registers through config.sh as the runner user with the token only in its environment, and config.sh remove unregisters it', async () => {
  const token = await restToken('registration-token');
  // config.sh's first request to the fake is held until the scan below has seen config.sh running,
  // so the scan proves something however long one pass over /proc takes (a fixed 1 s latency per
  // call was not enough: at load 18 a config.sh run of 9 s went unseen). Bounded: a config.sh the
  // scan never sees is let go after SEEN_WAIT_MS, and the assertion below fails.
  let sawConfigSh!: () => void;
  const seenOnce = new Promise<void>((r) => (sawConfigSh = r));
  const bound = new Promise<void>((r) => setTimeout(r, SEEN_WAIT_MS).unref());
  const hold = fake.faults.add({ match: { kind: 'any' }, times: 1, completeWhen: Promise.race([seenOnce, bound]) });
  const seen = { configSh: 0, leaks: [] as string[] };
  const scanning = new AbortController();
  const scan = (async () => {
    while (!scanning.signal.aborted) {
      for (const pid of await readdir('/proc').catch(() => [] as string[])) {
        if (!/^\d+$/.test(pid)) continue;
        const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmd.includes(root)) {
          seen.configSh += 1;
          sawConfigSh();
        }
        if (cmd.includes(token)) seen.leaks.push(cmd.replaceAll('\0', ' '));
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const cap = captureLog();
  let reg;
  try {
    reg = await registerWithToken({
      ...target,
      log: cap.log,
      token,
      scopeUrl: scopeUrl(),
      name: 'tok-1',
      labels: ['self-hosted', 'gpu'],
      group: null,
    });
  } finally {
    scanning.abort();
    await scan;
    hold.remove();
  }
  assert.ok(seen.configSh > 0, 'the /proc scan never saw config.sh running, so it proved nothing');
  assert.deepEqual(seen.leaks, [], 'the registration token appeared in a process command line');
  const onServer = fake.runners().find((r) => r.name === 'tok-1');
  assert.ok(onServer, 'config.sh did not register the runner with the fake');
  assert.deepEqual(reg, { id: onServer.id, name: 'tok-1' }, 'the id must come from the .runner config.sh wrote');
  assert.equal(onServer.ephemeral, true, 'the registration must be --ephemeral');
  assert.ok(
    onServer.labels.some((l) => l.name === 'gpu'),
    'the labels were not passed',
  );
  assert.equal((await stat(path.join(root, '.runner'))).uid, lab.user.uid, 'config.sh must run as the runner user');
  const logged = cap.text();
  assert.match(logged, /config\.sh output/, 'config.sh output should reach the debug log');
  assert.equal(logged.includes(token), false, 'the registration token was logged');

  const removeToken = await restToken('remove-token');
  const cap2 = captureLog();
  const out = await removeWithToken({ ...target, log: cap2.log, token: removeToken });
  assert.deepEqual(out, { outcome: 'removed' });
  assert.equal(
    fake.runners().some((r) => r.id === reg.id),
    false,
    'config.sh remove left the registration on the server',
  );
  assert.equal(await readLocalRegistration(root), undefined, 'config.sh remove must delete the local .runner');
  assert.equal(cap2.text().includes(removeToken), false, 'the remove token was logged');
});

test('config.sh failures are classified and the message never contains the token', async () => {
  const token = await restToken('registration-token');
  const cases: { name: string; opts: { group?: string; token?: string }; reason: string; text: RegExp }[] = [
    {
      name: 'unknown group',
      opts: { group: 'no-such-group' },
      reason: 'group-not-found',
      text: /Could not find any self-hosted runner group named "no-such-group"/,
    },
    { name: 'refused token', opts: { token: `${token}x` }, reason: 'token-refused', text: /Http response code/ },
  ];
  for (const c of cases) {
    const used = c.opts.token ?? token;
    await assert.rejects(
      registerWithToken({
        ...target,
        token: used,
        scopeUrl: scopeUrl(),
        name: `fail-${c.reason}`,
        labels: [],
        group: c.opts.group ?? null,
      }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigShError, `${c.name}: expected a ConfigShError, got ${String(err)}`);
        assert.equal(err.reason, c.reason, `${c.name}: misclassified (${err.message})`);
        assert.equal(err.exitCode, 1, `${c.name}: config.sh exits 1 on failure`);
        assert.match(err.message, c.text, `${c.name}: the message should carry config.sh's stderr`);
        assert.equal(err.message.includes(used), false, `${c.name}: the token leaked into the error message`);
        return true;
      },
    );
  }
});

test('the registration token is reused within its hour and fetched again five minutes before it expires', async () => {
  const clock = new ManualClock(Date.now());
  const fakeClocked = await startFakeGitHub({ clock });
  try {
    const github = createOctokitPort({
      apiUrl: fakeClocked.url,
      scope: { kind: 'org', org: 'octo' },
      auth: { kind: 'token', token: fakeClocked.defaultToken },
      clock,
      log: silentLogger(),
    });
    const registrar = new TokenRegistrar({
      ...registrarBase(),
      github,
      scopeUrl: `${fakeClocked.origin}/octo`,
      clock,
      extraEnv: { RUNNER_SIM_API_URL: fakeClocked.origin },
    });
    const tokenCalls = (): number => fakeClocked.restCalls({ path: /registration-token$/ });
    const t = { home, tmp: home };
    await registrar.register({ ...t, name: 'exp-1', labels: [], group: null });
    assert.equal(tokenCalls(), 1);
    clock.advance(50 * 60_000);
    await registrar.register({ ...t, name: 'exp-2', labels: [], group: null });
    assert.equal(tokenCalls(), 1, 'a token with 10 minutes left must be reused (no API call per job)');
    clock.advance(6 * 60_000);
    await registrar.register({ ...t, name: 'exp-3', labels: [], group: null });
    assert.equal(tokenCalls(), 2, 'a token with 4 minutes left must be replaced before use');
    assert.deepEqual(
      fakeClocked
        .runners()
        .map((r) => r.name)
        .sort(),
      ['exp-1', 'exp-2', 'exp-3'],
    );
  } finally {
    await fakeClocked.close();
  }
});

test('a token the server refuses is dropped, so the next registration fetches a fresh one', async () => {
  let calls = 0;
  const github = {
    createRegistrationToken: async (): Promise<RunnerToken> => {
      calls += 1;
      // The first token is one the fake never issued (as if revoked): the exchange answers 404.
      const token = calls === 1 ? 'AAAAREVOKEDTOKEN0000000000000' : await restToken('registration-token');
      return { token, expiresAt: new Date(Date.now() + 3_600_000).toISOString() };
    },
    createRemoveToken: async (): Promise<RunnerToken> => ({
      token: await restToken('remove-token'),
      expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    }),
  };
  const registrar = new TokenRegistrar({ ...registrarBase(), github, scopeUrl: scopeUrl(), clock: systemClock });
  const call = { home, tmp: home, name: 'ref-1', labels: [], group: null };
  await assert.rejects(registrar.register(call), (e: unknown) => e instanceof ConfigShError && e.reason === 'token-refused');
  const reg = await registrar.register(call);
  assert.equal(calls, 2, 'the refused token must not be used again');
  assert.equal(
    await registrar.remove(reg.id + 1, { home, tmp: home }),
    'not-local',
    'remove must only act on the registration the root holds',
  );
  assert.equal(await registrar.remove(reg.id, { home, tmp: home }), 'removed');
  assert.equal(
    fake.runners().some((r) => r.id === reg.id),
    false,
  );
});

test('RunnerTokenCache: cached while fresh, refetched near or past expiry, never cached without a readable expiry', async () => {
  const clock = new ManualClock();
  const cases: { name: string; expiresInMs: number | 'garbage'; advanceMs: number; fetches: number }[] = [
    { name: 'fresh token reused', expiresInMs: 3_600_000, advanceMs: 30 * 60_000, fetches: 1 },
    { name: 'inside the margin', expiresInMs: 3_600_000, advanceMs: 3_600_000 - TOKEN_REFRESH_MARGIN_MS + 1, fetches: 2 },
    { name: 'past expiry', expiresInMs: 3_600_000, advanceMs: 2 * 3_600_000, fetches: 2 },
    { name: 'unreadable expiry', expiresInMs: 'garbage', advanceMs: 0, fetches: 2 },
    { name: 'issued already near expiry', expiresInMs: 60_000, advanceMs: 0, fetches: 2 },
  ];
  for (const c of cases) {
    let n = 0;
    const cache = new RunnerTokenCache(async () => {
      n += 1;
      const expiresAt = c.expiresInMs === 'garbage' ? 'soon' : new Date(clock.now() + c.expiresInMs).toISOString();
      return { token: `t${n}`, expiresAt };
    }, clock);
    assert.equal(await cache.get(), 't1');
    clock.advance(c.advanceMs);
    await cache.get();
    assert.equal(n, c.fetches, `${c.name}: wrong number of token fetches`);
  }
});

test('the local registration is read without following a link at .runner and despite a byte order mark', async () => {
  const dir = path.join(lab.root, 'local-reg');
  await mkdir(dir);
  await writeFile(path.join(dir, '.runner'), `\uFEFF${JSON.stringify({ agentId: 42, agentName: 'bom' })}`);
  assert.deepEqual(await readLocalRegistration(dir), { id: 42, name: 'bom' });
  await rm(path.join(dir, '.runner'));
  await writeFile(path.join(dir, 'elsewhere'), JSON.stringify({ agentId: 7, agentName: 'x' }));
  await symlink(path.join(dir, 'elsewhere'), path.join(dir, '.runner'));
  assert.equal(await readLocalRegistration(dir), undefined, 'a symlinked .runner must not be trusted');
});

test('a taken name fails config.sh as name-exists without touching the other registration; only the final line decides', async () => {
  const token = await restToken('registration-token');
  const first = await registerWithToken({ ...target, token, scopeUrl: scopeUrl(), name: 'same-name', labels: [], group: null });
  // Another host (here: the same root, reconfigured) asks for the same name.
  await assert.rejects(
    registerWithToken({ ...target, token, scopeUrl: scopeUrl(), name: 'same-name', labels: [], group: null }),
    (err: unknown) => err instanceof ConfigShError && err.reason === 'name-exists',
  );
  const same = fake.runners().filter((r) => r.name === 'same-name');
  assert.deepEqual(
    same.map((r) => r.id),
    [first.id],
    'the first registration must be neither replaced nor duplicated',
  );
  // config.sh prints the stdout line whenever the name is taken; a later, other failure is not name-exists.
  assert.equal(classify('A runner exists with the same name same-name.\n', 'A runner exists with the same name\n'), 'name-exists');
  assert.equal(classify("Http response code: 500 from 'POST https://x/agents'\n", 'A runner exists with the same name\n'), 'failed');
  await rm(path.join(root, '.runner'), { force: true });
  await rm(path.join(root, '.credentials'), { force: true });
  await rm(path.join(root, '.credentials_rsaparams'), { force: true });
});

test('config.sh remove: a registration already deleted on the server is already-gone; with .credentials missing nothing was deleted', async () => {
  const token = await restToken('registration-token');
  const reg = await registerWithToken({ ...target, token, scopeUrl: scopeUrl(), name: 'rm-gone', labels: [], group: null });
  fake.deleteRunnerServerSide(reg.id);
  // exit 1, "Http response code: NotFound from 'DELETE ...'": gone already, and its local files are removed.
  assert.deepEqual(await removeWithToken({ ...target, token: await restToken('remove-token') }), { outcome: 'already-gone' });
  assert.equal(await readLocalRegistration(root), undefined);

  const reg2 = await registerWithToken({ ...target, token, scopeUrl: scopeUrl(), name: 'rm-nocreds', labels: [], group: null });
  await rm(path.join(root, '.credentials'));
  // exit 0 having deleted nothing on the server: never read as removed.
  assert.deepEqual(await removeWithToken({ ...target, token: await restToken('remove-token') }), { outcome: 'nothing-deleted' });
  assert.ok(
    fake.runners().some((r) => r.id === reg2.id),
    'the registration is still on the server: the REST delete must follow',
  );
  // A remove token the server refuses is not "already gone".
  assert.equal(classify("Http response code: NotFound from 'POST http://h/api/v3/actions/runner-registration'\n", ''), 'token-refused');
});
