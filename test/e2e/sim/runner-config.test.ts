import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { createRunnerLab, processGone } from './runner-harness.js';

const URL_ARGS = ['--unattended', '--url', 'https://github.com/octo/app'];

test("token mode: a taken name fails without --replace; with --replace it takes over the other host's live registration", async () => {
  const rl = await createRunnerLab();
  try {
    const api = { RUNNER_SIM_API_URL: rl.broker.url };
    rl.broker.registrationTokens.add('REG');
    const first = rl.start([...URL_ARGS, '--token', 'REG', '--name', 'shared'], api, 'config.sh');
    assert.equal((await first.exited).code, 0, first.err());
    const hostA = rl.start(['run']);
    await hostA.waitFor(/Listening for Jobs/);

    const hostB = await rl.addRoot('runner-b');
    const refused = rl.start([...URL_ARGS, '--token', 'REG', '--name', 'shared'], api, 'config.sh', hostB);
    assert.equal((await refused.exited).code, 1);
    assert.match(refused.out(), /^A runner exists with the same name$/m);
    assert.equal(refused.err().trim(), 'A runner exists with the same name shared.');
    assert.equal(existsSync(path.join(hostB, '.runner')), false, 'nothing is written');

    const replaced = rl.start([...URL_ARGS, '--token', 'REG', '--name', 'shared', '--replace'], api, 'config.sh', hostB);
    assert.equal((await replaced.exited).code, 0, replaced.err());
    assert.match(replaced.out(), /^A runner exists with the same name\n√ Successfully replaced the runner$/m);
    // host A's registration is gone from under it: its poll ends, it deletes its config and exits 0
    assert.equal((await hostA.exited).code, 0);
    assert.match(hostA.err(), /The runner no longer exists on the server\. Cleaning up local configuration\./);
    assert.equal(existsSync(path.join(rl.root, '.runner')), false);
    assert.deepEqual(rl.broker.agentNames(), ['shared'], "one registration of that name is left: host B's");
  } finally {
    await rl.dispose();
  }
});

test('config.sh remove: an already-deleted registration exits 1 with "Failed: Removing runner from the server" and keeps the files; without .credentials it exits 0 having deleted nothing', async () => {
  const rl = await createRunnerLab();
  try {
    const api = { RUNNER_SIM_API_URL: rl.broker.url };
    rl.broker.registrationTokens.add('REG');
    rl.broker.registrationTokens.add('RM');
    const cfg = rl.start([...URL_ARGS, '--token', 'REG', '--name', 'gone'], api, 'config.sh');
    assert.equal((await cfg.exited).code, 0, cfg.err());
    const settings = JSON.parse(await readFile(path.join(rl.root, '.runner'), 'utf8')) as { agentId: number };
    rl.broker.deleteRunner(settings.agentId);

    const rmGone = rl.start(['remove', '--token', 'RM'], api, 'config.sh');
    assert.equal((await rmGone.exited).code, 1, 'a 404 on DELETE is a failure in the runner-admin flow');
    assert.match(
      rmGone.err(),
      /^Http response code: NotFound from 'DELETE http:\/\/127\.0\.0\.1:\d+\/_broker\/agents\/\d+' \(Request Id: .+\)$/m,
    );
    assert.match(rmGone.err(), /^Failed: Removing runner from the server$/m);
    assert.doesNotMatch(rmGone.out(), /Runner removed successfully|Does not exist\. Skipping Removing runner/);
    assert.ok(
      existsSync(path.join(rl.root, '.runner')) && existsSync(path.join(rl.root, '.credentials')),
      'a failed remove keeps the files',
    );

    // a live registration whose .credentials is missing: nothing is asked of the server
    await rm(path.join(rl.root, '.runner'));
    await rm(path.join(rl.root, '.credentials'));
    await rm(path.join(rl.root, '.credentials_rsaparams'), { force: true });
    const cfg2 = rl.start([...URL_ARGS, '--token', 'REG', '--name', 'alive'], api, 'config.sh');
    assert.equal((await cfg2.exited).code, 0, cfg2.err());
    await rm(path.join(rl.root, '.credentials'));
    const deletes = rl.broker.events.filter((e) => e.method === 'DELETE' && e.path.startsWith('/_broker/agents/')).length;
    const rmNoCreds = rl.start(['remove', '--token', 'RM'], api, 'config.sh');
    assert.equal((await rmNoCreds.exited).code, 0);
    assert.match(
      rmNoCreds.out(),
      /^Cannot connect to server, because config files are missing\. Skipping removing runner from the server\.$/m,
    );
    assert.match(rmNoCreds.out(), /^√ Removed \.runner$/m);
    assert.ok(rl.broker.agentNames().includes('alive'), 'exit 0, yet the registration is still on the server');
    assert.equal(rl.broker.events.filter((e) => e.method === 'DELETE' && e.path.startsWith('/_broker/agents/')).length, deletes);
  } finally {
    await rl.dispose();
  }
});

test('config.sh sources env.sh: .path and .env are written in the root as the config user', async () => {
  const rl = await createRunnerLab();
  try {
    rl.broker.registrationTokens.add('REG');
    const pathValue = '/opt/tool/bin:/usr/local/bin:/usr/bin:/bin';
    const cfg = rl.start(
      [...URL_ARGS, '--token', 'REG', '--name', 'envsh'],
      {
        RUNNER_SIM_API_URL: rl.broker.url,
        PATH: pathValue,
        LANG: 'C.UTF-8',
        JAVA_HOME: '/opt/jdk',
      },
      'config.sh',
    );
    assert.equal((await cfg.exited).code, 0, cfg.err());
    assert.equal((await readFile(path.join(rl.root, '.path'), 'utf8')).trim(), pathValue);
    const env = await readFile(path.join(rl.root, '.env'), 'utf8');
    assert.match(env, /^LANG=C\.UTF-8$/m);
    assert.match(env, /^JAVA_HOME=\/opt\/jdk$/m);
    for (const f of ['.path', '.env'])
      assert.equal((await stat(path.join(rl.root, f))).uid, rl.lab.user.uid, `${f} belongs to the runner user`);
  } finally {
    await rl.dispose();
  }
});

test("ACTIONS_RUNNER_INPUT_ matches in any case, and the JIT config stays in the listener's /proc/<pid>/environ (not the worker's)", async () => {
  const rl = await createRunnerLab();
  try {
    const { encoded } = rl.broker.jitRunner({ ephemeral: false });
    const proc = rl.start(['run'], { actions_runner_input_jitconfig: encoded, Actions_Runner_Input_Once: 'true' });
    await proc.waitFor(/Listening for Jobs/);
    assert.match(proc.out(), /Warning: '--once' is going to be deprecated/, 'a mixed-case input is a flag too');
    const pid = proc.child.pid ?? 0;
    const environ = (await readFile(`/proc/${pid}/environ`, 'latin1')).split('\0');
    assert.ok(environ.includes(`actions_runner_input_jitconfig=${encoded}`), 'the original environment keeps the JIT config');
    const st = await stat(`/proc/${pid}/environ`);
    assert.equal(st.uid, rl.lab.user.uid, 'readable by the runner user, who owns the process');
    rl.broker.enqueueJob({ steps: [{ name: 'Env', run: `env > ${rl.out}/step.env` }] });
    assert.equal((await proc.exited).code, 0, '--once from the env input ends after the job');
    assert.doesNotMatch(
      await readFile(path.join(rl.out, 'step.env'), 'utf8'),
      /jitconfig/i,
      'the worker and steps get the managed environment, without it',
    );
    assert.ok(processGone(pid));
  } finally {
    await rl.dispose();
  }
});
