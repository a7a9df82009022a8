/**
 * The runner simulator against the real fake GitHub (src/sim/github): the same wire both sides of
 * the project use in the agent's tests and in `demo`.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { startFakeGitHub, DEFAULT_FAKE_TOKEN, type FakeGitHub } from '../../../src/sim/github/server.js';
import { createRunnerLab, type RunnerLab } from './runner-harness.js';

async function rest<T>(fake: FakeGitHub, route: string, body: unknown): Promise<T> {
  const res = await fetch(`${fake.url}${route}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${DEFAULT_FAKE_TOKEN}`, 'content-type': 'application/json', accept: 'application/vnd.github+json' },
    body: JSON.stringify(body),
  });
  assert.ok(res.ok, `POST ${route} should succeed, got ${res.status}: ${await res.clone().text()}`);
  return (await res.json()) as T;
}

async function jit(fake: FakeGitHub, name: string): Promise<{ id: number; encoded: string }> {
  const r = await rest<{ runner: { id: number }; encoded_jit_config: string }>(fake, '/repos/octo/app/actions/runners/generate-jitconfig', {
    name,
    runner_group_id: 1,
    labels: ['self-hosted', 'linux'],
  });
  return { id: r.runner.id, encoded: r.encoded_jit_config };
}

/**
 * A cancelled step gets SIGINT, then SIGTERM after 7.5 s (the real runner's ladder, tested with
 * short waits in runner-signals.test.ts); a `sleep` under bash outlives the SIGINT, so the cancel
 * tests here shorten the first wait: what they check is the service's cancel and the result.
 */
const SHORT_CANCEL = { RUNNER_SIM_STEP_SIGINT_TIMEOUT_SECONDS: '0.5' };

async function waitForFile(file: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} did not appear within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the runner simulator works against the fake GitHub', () => {
  let rl: RunnerLab;
  let fake: FakeGitHub;
  before(async () => {
    rl = await createRunnerLab();
    fake = await startFakeGitHub();
  });
  after(async () => {
    await fake.close();
    await rl.dispose();
  });
  const cleanConfig = async (): Promise<void> => {
    for (const f of ['.runner', '.credentials', '.credentials_rsaparams', 'update.finished']) {
      await rm(path.join(rl.root, f), { force: true });
    }
  };

  test('a JIT runner takes one job, the fake records its result and removes the registration', async () => {
    await cleanConfig();
    const { id, encoded } = await jit(fake, 'fake-jit-1');
    const proc = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await proc.waitFor(/Listening for Jobs/);
    assert.equal(fake.runners().find((r) => r.id === id)?.status, 'online', 'a live session makes the runner online');
    const jobId = fake.enqueueJob({ repository: 'octo/app', labels: ['self-hosted'], steps: [{ name: 'Hi', run: 'echo hi' }] });
    const { code } = await proc.exited;
    assert.equal(code, 0, `stderr: ${proc.err()}`);
    const job = fake.job(jobId);
    assert.equal(job?.result, 'Succeeded');
    assert.equal(job?.exitCode, 100);
    assert.equal(
      fake.runners().some((r) => r.id === id),
      false,
      'the ephemeral registration is gone after its job',
    );
    assert.equal(existsSync(path.join(rl.root, '.runner')), false);
  });

  test('a forced update exits 4 and the same jitconfig then takes the job', async () => {
    await cleanConfig();
    const { id, encoded } = await jit(fake, 'fake-jit-2');
    fake.requestUpdate(id, '2.337.0');
    // update.sh looks for the listener's exit every 0.5 s here (2 s, the real wait, by default).
    const first = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, RUNNER_SIM_UPDATE_POLL_SECONDS: '0.5' });
    assert.equal((await first.exited).code, 4);
    await waitForFile(path.join(rl.root, 'update.finished'));
    await rm(path.join(rl.root, 'update.finished'));
    const second = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    await second.waitFor(/Current runner version: '2\.337\.0'/);
    const jobId = fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'Hi', run: 'true' }] });
    assert.equal((await second.exited).code, 0, `stderr: ${second.err()}`);
    assert.equal(fake.job(jobId)?.result, 'Succeeded');
    assert.equal(
      fake.runners().find((r) => r.id === id),
      undefined,
    );
  });

  test('the crash message exits 2 and a one-off session conflict is retried', async () => {
    await cleanConfig();
    const { id, encoded } = await jit(fake, 'fake-jit-3');
    fake.crashNext(id);
    const crashed = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
    assert.equal((await crashed.exited).code, 2);
    fake.faults.sessionConflict();
    const again = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, RUNNER_SIM_SESSION_CONFLICT_RETRY_SECONDS: '0.2' });
    await again.waitFor(/Listening for Jobs/);
    assert.match(again.err(), /A session for this runner already exists\./);
    fake.deleteRunnerServerSide(id);
    assert.equal((await again.exited).code, 0, 'a registration deleted while idle ends the runner with 0');
    assert.match(again.err(), /The runner no longer exists on the server\. Cleaning up local configuration\./);
  });

  test('a deprecated runner version is refused messages: exit 1, or 7 with the env var, and run.sh passes 7 on', async () => {
    await cleanConfig();
    fake.deprecateRunnerVersionsBelow('99.0.0');
    try {
      const { encoded } = await jit(fake, 'fake-jit-deprecated');
      const plain = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded });
      assert.equal((await plain.exited).code, 1, 'without the env var the listener says TerminatedError');
      assert.match(plain.out(), /Listening for Jobs/, 'the session is created; the refusal comes with the first message');
      assert.match(plain.err(), /^An error occurred: Runner version v2\.\d+\.\d+ is deprecated and cannot receive messages\.$/m);
      const seven = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE: '1' });
      assert.equal((await seven.exited).code, 7, 'RunnerVersionDeprecated');
      const wrapped = rl.start(
        [],
        { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE: '1' },
        'run.sh',
      );
      assert.equal((await wrapped.exited).code, 7, 'run-helper.sh and run.sh hand 7 on (docs/runner-contract.md §6)');
      const newestRunnerLog =
        readdirSync(path.join(rl.root, '_diag'))
          .filter((f) => f.startsWith('Runner_'))
          .sort()
          .at(-1) ?? '';
      const diag = await readFile(path.join(rl.root, '_diag', newestRunnerLog), 'utf8');
      assert.match(diag, /AccessDeniedException: Runner version v\S+ is deprecated/);
    } finally {
      fake.deprecateRunnerVersionsBelow(undefined);
    }
  });

  test('a job cancelled in the fake ends Canceled', async () => {
    await cleanConfig();
    const { encoded } = await jit(fake, 'fake-jit-4');
    const proc = rl.start(['run'], {
      ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
      RUNNER_SIM_JOB_RENEW_INTERVAL_SECONDS: '0.2',
      ...SHORT_CANCEL,
    });
    await proc.waitFor(/Listening for Jobs/);
    const marker = path.join(rl.out, 'fake-cancel.started');
    const jobId = fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'Long', run: `touch ${marker}\nsleep 30` }] });
    await waitForFile(marker);
    fake.cancelJob(jobId);
    assert.equal((await proc.exited).code, 0);
    assert.equal(fake.job(jobId)?.result, 'Canceled');
  });

  test("a job past its timeout-minutes, or cancelled by a user, is cancelled by the service at the runner's next renew", async () => {
    for (const [spec, reason] of [
      [
        { timeoutMinutes: 0.02 },
        /^The job running on runner fake-jit-timeout-0 has exceeded the maximum execution time of 0\.02 minutes\.$/,
      ],
      [{ cancelAfterMs: 800 }, /^The run was canceled by @octocat\.$/],
    ] as const) {
      await cleanConfig();
      const name = `fake-jit-timeout-${'timeoutMinutes' in spec ? 0 : 1}`;
      const { encoded } = await jit(fake, name);
      const proc = rl.start(['run'], {
        ACTIONS_RUNNER_INPUT_JITCONFIG: encoded,
        RUNNER_SIM_JOB_RENEW_INTERVAL_SECONDS: '0.2',
        ...SHORT_CANCEL,
      });
      await proc.waitFor(/Listening for Jobs/);
      const started = Date.now();
      const jobId = fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'Long', run: 'sleep 60' }], ...spec });
      assert.equal((await proc.exited).code, 0);
      const rec = fake.job(jobId);
      assert.equal(rec?.result, 'Canceled', JSON.stringify(rec));
      assert.match(rec?.cancelReason ?? '', reason);
      assert.ok(Date.now() - started < 20_000, 'the 60 s step must have been cut short');
    }
  });

  test('config.sh registers with a registration token and config.sh remove unregisters with a remove token', async () => {
    await cleanConfig();
    const api = { RUNNER_SIM_API_URL: fake.origin };
    const reg = await rest<{ token: string }>(fake, '/repos/octo/app/actions/runners/registration-token', {});
    const cfg = rl.start(
      ['--unattended', '--url', 'https://github.com/octo/app', '--token', reg.token, '--name', 'cfg-1', '--ephemeral'],
      api,
      'config.sh',
    );
    assert.equal((await cfg.exited).code, 0, `stderr: ${cfg.err()}`);
    assert.match(cfg.out(), /√ Runner successfully added\n/);
    const runner = fake.runners().find((r) => r.name === 'cfg-1');
    assert.ok(runner?.ephemeral, 'the registration is ephemeral');
    const settings = JSON.parse(await readFile(path.join(rl.root, '.runner'), 'utf8')) as { agentId: number };
    assert.equal(settings.agentId, runner?.id);

    const dup = rl.start(
      ['--unattended', '--url', 'https://github.com/octo/app', '--token', reg.token, '--name', 'cfg-1'],
      api,
      'config.sh',
    );
    assert.equal((await dup.exited).code, 1, 'configure refuses an already configured root');

    const rm1 = await rest<{ token: string }>(fake, '/repos/octo/app/actions/runners/remove-token', {});
    const removal = rl.start(['remove', '--token', rm1.token], api, 'config.sh');
    assert.equal((await removal.exited).code, 0, `stderr: ${removal.err()}`);
    assert.match(removal.out(), /√ Runner removed successfully\n/);
    assert.equal(
      fake.runners().some((r) => r.name === 'cfg-1'),
      false,
    );
  });
});
