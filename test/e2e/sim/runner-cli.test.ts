import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CommandSettings, parseArgv } from '../../../src/sim/runner/args.js';
import { applyJitConfig, BAD_BASE64_MESSAGE, parseDotEnv } from '../../../src/sim/runner/files.js';
import { createRunnerLab, type RunnerLab } from './runner-harness.js';

describe('the command-line parser follows CommandLineParser.cs', () => {
  const cases: Array<[string, string[], { commands: string[]; args: Record<string, string>; flags: string[] }]> = [
    ['a run with a jitconfig', ['run', '--jitconfig', 'X'], { commands: ['run'], args: { jitconfig: 'X' }, flags: [] }],
    [
      'flags before and after args',
      ['run', '--once', '--jitconfig', 'X', '--x'],
      { commands: ['run'], args: { jitconfig: 'X' }, flags: ['once', 'x'] },
    ],
    ['--name=value is a flag called name=value', ['run', '--name=value'], { commands: ['run'], args: {}, flags: ['name=value'] }],
    [
      'the first value of a repeated arg wins',
      ['configure', '--name', 'a', '--name', 'b'],
      { commands: ['configure'], args: { name: 'a' }, flags: ['name'] },
    ],
    ['a value starting with - is ignored', ['configure', '--labels', '-x'], { commands: ['configure'], args: {}, flags: ['labels'] }],
    ['/? means help', ['/?'], { commands: [], args: {}, flags: ['help'] }],
    [
      'every bare word before the first --x is a command',
      ['run', 'extra', '--once', 'stray'],
      { commands: ['run', 'extra'], args: { once: 'stray' }, flags: [] },
    ],
  ];
  for (const [name, argv, want] of cases) {
    test(`it parses ${name}`, () => {
      const got = parseArgv(argv);
      assert.deepEqual(got.commands, want.commands);
      assert.deepEqual(Object.fromEntries(got.args), want.args);
      assert.deepEqual(got.flags, want.flags);
    });
  }

  test('names are case-insensitive and the command line wins over ACTIONS_RUNNER_INPUT_ env', () => {
    const env = {
      ACTIONS_RUNNER_INPUT_JITCONFIG: 'from-env',
      ACTIONS_RUNNER_INPUT_ONCE: 'True',
      ACTIONS_RUNNER_INPUT_NAME: ' n1 ',
      PATH: '/bin',
    };
    const a = new CommandSettings(['RUN', '--JitConfig', 'from-argv'], env);
    assert.ok(a.isCommand('run'));
    assert.equal(a.arg('jitconfig'), 'from-argv');
    assert.equal(a.flag('once'), true, 'an env flag must parse as the bool true');
    assert.equal(a.arg('name'), 'n1', 'env values are trimmed');
    assert.deepEqual(a.consumedEnv.sort(), ['ACTIONS_RUNNER_INPUT_JITCONFIG', 'ACTIONS_RUNNER_INPUT_NAME', 'ACTIONS_RUNNER_INPUT_ONCE']);
    const b = new CommandSettings(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: 'from-env', ACTIONS_RUNNER_INPUT_ONCE: 'yes' });
    assert.equal(b.arg('jitconfig'), 'from-env');
    assert.equal(b.flag('once'), false, '"yes" is not a .NET bool');
    assert.deepEqual(b.secretValues(), ['from-env']);
  });

  test('unknown options produce the exact warning for the command', () => {
    const s = new CommandSettings(['run', '--ephemeral', '--Foo', 'x'], {});
    assert.equal(
      s.unknownOptionsWarning(),
      "Unrecognized command-line input arguments for command run: 'ephemeral, Foo'. For usage refer to: .\\config.cmd --help or ./config.sh --help",
    );
    assert.equal(new CommandSettings(['run', '--once', '--jitconfig', 'j', '--version'], {}).unknownOptionsWarning(), undefined);
    assert.match(
      new CommandSettings(['bogus'], {}).unknownOptionsWarning() ?? '',
      /^This command does not recognize the command-line input arguments: 'bogus'\./,
    );
  });
});

describe('.env and jitconfig decoding keep the real runner quirks', () => {
  test('.env lines are split at the first = with no trimming, quotes or comments', () => {
    const got = parseDotEnv('#COMMENT=1\r\n SPACED = v \nQUOTED="q"\nEMPTY=\nnoequals\n=novalue\nA=b=c\n');
    assert.deepEqual(got, [
      ['#COMMENT', '1'],
      [' SPACED ', ' v '],
      ['QUOTED', '"q"'],
      ['EMPTY', undefined],
      ['A', 'b=c'],
    ]);
  });

  test('a jitconfig that is not base64 or not JSON fails with the runner message', () => {
    assert.throws(() => applyJitConfig('/nonexistent', 'not base64!'), { message: BAD_BASE64_MESSAGE });
    assert.throws(
      () => applyJitConfig('/nonexistent', Buffer.from('nope').toString('base64')),
      /Unexpected character encountered while parsing value: n/,
    );
    assert.throws(
      () => applyJitConfig('/nonexistent', Buffer.from(JSON.stringify({ '../x': 'eA==' })).toString('base64')),
      /Invalid file name/,
      'the simulator refuses names that leave the root',
    );
  });
});

describe('the simulated binaries and scripts behave like the real ones', () => {
  let rl: RunnerLab;
  before(async () => {
    rl = await createRunnerLab();
  });
  after(async () => {
    await rl.dispose();
  });

  test('--version prints the installed version and exits 0', async () => {
    const p = rl.start(['--version']);
    assert.equal((await p.exited).code, 0);
    assert.equal(p.out(), '2.336.0\n');
  });

  test('run without configuration warns about unknown options, says it is not configured and exits 1', async () => {
    const p = rl.start(['run', '--ephemeral']);
    assert.equal((await p.exited).code, 1);
    const err = p.err().split('\n');
    assert.equal(
      err[0],
      "Unrecognized command-line input arguments for command run: 'ephemeral'. For usage refer to: .\\config.cmd --help or ./config.sh --help",
    );
    assert.equal(err[1], 'Runner is not configured.');
  });

  test('a bad jitconfig exits 1 with the decoding error and writes nothing', async () => {
    const p = rl.start(['run', '--jitconfig', '@@@']);
    assert.equal((await p.exited).code, 1);
    assert.match(p.err(), /The input is not a valid Base-64 string/);
    assert.equal(existsSync(path.join(rl.root, '.runner')), false);
    const q = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: Buffer.from('{"a":').toString('base64') });
    assert.equal((await q.exited).code, 1);
    assert.match(q.err(), /Unexpected character encountered while parsing value/);
  });

  test('.env is loaded at start with its quirks and reaches the job environment', async () => {
    const { encoded } = rl.broker.jitRunner();
    const dump = path.join(rl.out, 'env.dump');
    await writeFile(path.join(rl.root, '.env'), '#COMMENT=1\r\n SPACED = v \nQUOTED="q"\nDROP_ME=\nFROM_DOTENV=yes\n');
    try {
      const p = rl.start(['run'], { ACTIONS_RUNNER_INPUT_JITCONFIG: encoded, DROP_ME: 'should-vanish' });
      await p.waitFor(/Listening for Jobs/);
      // bash passes names that are not identifiers through to its children; `env -0` shows them
      rl.broker.enqueueJob({ steps: [{ name: 'Dump', run: `env -0 > ${dump}` }] });
      assert.equal((await p.exited).code, 0);
    } finally {
      await rm(path.join(rl.root, '.env'), { force: true });
    }
    const vars = (await readFile(dump, 'utf8')).split('\0');
    for (const kv of ['#COMMENT=1', ' SPACED = v ', 'QUOTED="q"', 'FROM_DOTENV=yes']) {
      assert.ok(vars.includes(kv), `the job should see ${JSON.stringify(kv)}`);
    }
    assert.ok(!vars.some((v) => v.startsWith('DROP_ME=')), 'an empty value in .env unsets the variable');
  });

  test('config.sh refuses to run as root unless RUNNER_ALLOW_RUNASROOT is set', () => {
    const r = spawnSync(path.join(rl.root, 'config.sh'), ['--version'], { cwd: rl.root, env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stdout, 'Must not run with sudo\n');
  });

  test('config.sh registers with a token, refuses a second configure, and remove unregisters and deletes the files', async () => {
    const api = { RUNNER_SIM_API_URL: rl.broker.url, LANG: 'C.UTF-8' };
    rl.broker.registrationTokens.add('REGTOKEN');
    const bad = rl.start(['--unattended', '--url', 'https://github.com/octo/app', '--token', 'WRONG', '--name', 'r1'], api, 'config.sh');
    assert.equal((await bad.exited).code, 1);
    assert.match(bad.err(), /Http response code: NotFound from 'POST http:\/\/127\.0\.0\.1:\d+\/actions\/runner-registration'/);

    const noGroup = rl.start(
      ['--unattended', '--url', 'https://github.com/octo/app', '--token', 'REGTOKEN', '--runnergroup', 'nope'],
      api,
      'config.sh',
    );
    assert.equal((await noGroup.exited).code, 1);
    assert.match(noGroup.err(), /Could not find any self-hosted runner group named "nope"\./);

    const ok = rl.start(
      [
        '--unattended',
        '--url',
        'https://github.com/octo/app',
        '--token',
        'REGTOKEN',
        '--name',
        'r1',
        '--labels',
        'gpu,big',
        '--work',
        '_w',
      ],
      api,
      'config.sh',
    );
    assert.equal((await ok.exited).code, 0, `configure should succeed; stderr: ${ok.err()}`);
    const lines = ok.out().split('\n');
    for (const l of ['# Authentication', '√ Connected to GitHub', '√ Runner successfully added', '√ Settings Saved.']) {
      assert.ok(lines.includes(l), `config output should include ${l}:\n${ok.out()}`);
    }
    const runner = JSON.parse(await readFile(path.join(rl.root, '.runner'), 'utf8')) as { agentName: string; workFolder: string };
    assert.equal(runner.agentName, 'r1');
    assert.equal(runner.workFolder, '_w');
    assert.ok(existsSync(path.join(rl.root, '.path')), 'env.sh writes .path');
    assert.match(await readFile(path.join(rl.root, '.env'), 'utf8'), /^LANG=C\.UTF-8$/m, 'env.sh appends LANG to .env');
    const reg = rl.broker.events.filter((e) => e.path === '/_broker/agents').at(-1);
    assert.deepEqual((reg?.body as { labels: string[] }).labels, [
      'self-hosted',
      'Linux',
      process.arch === 'arm64' ? 'ARM64' : 'X64',
      'gpu',
      'big',
    ]);

    const again = rl.start(['--unattended', '--url', 'https://github.com/octo/app', '--token', 'REGTOKEN'], api, 'config.sh');
    assert.equal((await again.exited).code, 1);
    assert.equal(
      again.err().trim(),
      "Cannot configure the runner because it is already configured. To reconfigure the runner, run 'config.cmd remove' or './config.sh remove' first.",
    );

    // the configured runner runs a job with --once and keeps its files
    const run = rl.start(['run', '--once']);
    await run.waitFor(/Listening for Jobs/);
    rl.broker.enqueueJob({ labels: ['gpu'] });
    assert.equal((await run.exited).code, 0);
    assert.ok(existsSync(path.join(rl.root, '_w', 'app', 'app')), 'the job used the configured work folder');
    assert.ok(existsSync(path.join(rl.root, '.runner')));

    rl.broker.registrationTokens.add('REMOVETOKEN');
    const rm = rl.start(['remove', '--token', 'REMOVETOKEN'], api, 'config.sh');
    assert.equal((await rm.exited).code, 0, `remove should succeed; stderr: ${rm.err()}`);
    for (const l of ['√ Runner removed successfully', '√ Removed .credentials', '√ Removed .runner']) {
      assert.ok(rm.out().split('\n').includes(l), `remove output should include ${l}:\n${rm.out()}`);
    }
    assert.equal(rl.broker.agentNames().includes('r1'), false, 'the registration is deleted on the server');
    assert.equal(existsSync(path.join(rl.root, '.runner')), false);

    const none = rl.start(['remove', '--local'], {}, 'config.sh');
    assert.equal((await none.exited).code, 0);
    assert.match(none.out(), /Does not exist\. Skipping Removing \.credentials\nDoes not exist\. Skipping Removing \.runner/);
  });
});
