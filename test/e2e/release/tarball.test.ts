/**
 * The release tarball unpacked into a clean directory, run with this machine's Node: what it
 * holds, every command's --help and a bad config, the agent under a stand-in for systemd
 * (readiness after /healthz answers, watchdog pings that stop when the process is wedged,
 * journald priorities), and `demo` from the bundle. Also what `npm pack` would publish.
 *
 * The tests share one build and one unpacked tree, which they only read, and run at once: the demo
 * alone (a whole-host integrity baseline and a job) takes most of the file's time.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile, stat } from 'node:fs/promises';
import { openSync, closeSync, fstatSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { release } from '../../../scripts/release.js';
import { stringify } from 'yaml';
import { createWorld, testPolicy, type World } from '../../helpers/world.js';
import { createLab, type Lab } from '../../helpers/lab.js';
import { startNotifySocket } from './notify-socket.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const COMMANDS = ['run', 'validate', 'cleanup', 'baseline', 'status', 'journal', 'drain', 'demo', 'version'];

let lab: Lab;
let inst: string;
let tarball: string;

function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 420_000, ...opts }, (err, stdout, stderr) => {
      resolve({
        code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0,
        stdout,
        stderr,
      });
    });
  });
}

describe('the release tarball, unpacked and run', { concurrency: true }, () => {
  before(async () => {
    lab = await createLab('rw-tarball-');
    const rel = await release(path.join(lab.root, 'out'), { deb: false });
    tarball = rel.tarball;
    inst = path.join(lab.root, 'clean');
    await mkdir(inst);
    const x = await run('tar', ['-xzf', tarball, '-C', inst, '--strip-components=1']);
    assert.equal(x.code, 0, x.stderr);
  });

  after(async () => {
    await lab?.dispose();
  });

  test('the tarball holds the bundle, bin, unit, example config, policies, man page, completions and LICENSE, and nothing else', async () => {
    const list = (await run('tar', ['-tzf', tarball])).stdout.split('\n').filter((l) => l !== '' && !l.endsWith('/'));
    const rel = list.map((l) => l.replace(/^runner-warden-[^/]+\//, '')).sort();
    assert.deepEqual(rel, [
      'LICENSE',
      'README.md',
      'bin/runner-warden.js',
      'completions/_runner-warden',
      'completions/runner-warden.bash',
      'config.example.yaml',
      'dist/THIRD-PARTY-NOTICES.txt',
      'dist/container-hooks.js',
      'dist/runner-warden-aws.mjs',
      'dist/runner-warden-demo.mjs',
      'dist/runner-warden-si.mjs',
      'dist/runner-warden.mjs',
      'man/runner-warden.1',
      'package.json',
      ...['base', 'container-reuse', 'default', 'docker-heavy', 'strict'].map((p) => `policies/${p}.yaml`),
      'systemd/runner-warden.service',
    ]);
    const bash = await run('bash', [
      '-c',
      `source ${path.join(inst, 'completions/runner-warden.bash')}; COMP_WORDS=(runner-warden va); COMP_CWORD=1; _runner_warden; echo "\${COMPREPLY[@]}"`,
    ]);
    assert.equal(bash.stdout.trim(), 'validate');
    // The unit starts the command the packages install, and waits for readiness.
    const unit = await readFile(path.join(inst, 'systemd/runner-warden.service'), 'utf8');
    assert.match(unit, /^Type=notify$/m);
    assert.match(unit, /^WatchdogSec=\d+s$/m);
    assert.match(unit, /^ExecStart=\/usr\/bin\/runner-warden run /m);
  });

  test('every command answers --help, and a bad config is refused naming the file, line and field', async () => {
    const bin = path.join(inst, 'bin/runner-warden.js');
    // Each command is its own process: they start at once rather than one after the other.
    const helps = await Promise.all(COMMANDS.map(async (cmd) => ({ cmd, h: await run(process.execPath, [bin, cmd, '--help']) })));
    for (const { cmd, h } of helps) {
      assert.equal(h.code, 0, `${cmd} --help: ${h.stderr}`);
      assert.match(h.stdout, new RegExp(`^usage: runner-warden ${cmd}`, 'm'));
    }
    const ok = await run(process.execPath, [
      bin,
      'validate',
      path.join(inst, 'config.example.yaml'),
      ...['base', 'strict'].map((p) => path.join(inst, 'policies', `${p}.yaml`)),
    ]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const bad = path.join(lab.root, 'bad.yaml');
    await writeFile(bad, 'github:\n  org: acme\n  token: { file: /nonexistent }\nrunner:\n  root: opt/actions-runner\n  user: runner\n');
    const refusals = await Promise.all(
      ['run', 'cleanup', 'baseline', 'journal'].map(async (cmd) => ({ cmd, r: await run(process.execPath, [bin, cmd, '--config', bad]) })),
    );
    for (const { cmd, r } of refusals) {
      assert.equal(r.code, 78, `${cmd}: exit ${r.code} ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${bad.replaceAll('/', '\\/')}:5:\\d+: runner\\.root: expected an absolute path`));
    }
    const v = await run(process.execPath, [bin, 'validate', bad]);
    assert.equal(v.code, 1);
    assert.match(v.stdout + v.stderr, /runner\.root: expected an absolute path, got "opt\/actions-runner" \(relative\)/);
    const version = await run(process.execPath, [bin, 'version']);
    assert.equal(
      version.stdout.trim(),
      (JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version,
    );
  });

  test('the bundled container hooks run with node alone and refuse what the agent did not allow, naming why', async () => {
    const hooks = path.join(inst, 'dist/container-hooks.js');
    const call = (input: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((resolve) => {
        const c = execFile(
          process.execPath,
          [hooks],
          { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } },
          (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
        );
        c.stdin?.end(input);
      });
    const garbled = await call('not json\n', {});
    assert.equal(garbled.code, 1, garbled.stderr);
    assert.match(garbled.stdout, /^::error::stdin: expected one JSON document/m);
    // A host whose policy gives jobs no engine (docker.mode none): the agent's root-owned policy file.
    const policy = path.join(lab.root, 'hooks-policy.json');
    await writeFile(policy, JSON.stringify({ mode: 'none' }), { mode: 0o644 });
    const none = await call(
      `${JSON.stringify({ command: 'prepare_job', responseFile: path.join(lab.root, 'response.json'), args: {}, state: {} })}\n`,
      { CONTAINER_HOOKS_DOCKER_POLICY: policy },
    );
    assert.equal(none.code, 1, none.stderr);
    assert.match(none.stdout, /^::error::.*no container engine \(docker\.mode: none\)/m);
    assert.equal(none.stderr, '', 'no stack trace: the job log gets one ::error:: line');
  });

  test(
    'under a stand-in for systemd: READY=1 after /healthz answers, pings stop while wedged, journald priorities, STOPPING=1',
    { timeout: 420_000 },
    async () => {
      let world: World | undefined;
      const sock = await startNotifySocket(lab.root);
      try {
        world = await createWorld();
        // What this test is about is the agent's systemd wiring: no container engine, and no
        // whole-host integrity baseline (minutes on a loaded machine; tested on its own elsewhere).
        await writeFile(
          path.join(world.policyDir, 'test.yaml'),
          stringify(testPolicy(world.lab, { docker: { mode: 'none' }, host: { maxJobs: 50, integrity: { enabled: false } } })),
        );
        await (await world.runtime()).close(); // the image build's baseline
        const logFile = path.join(lab.root, 'agent.log');
        const fd = openSync(logFile, 'w');
        const st = fstatSync(fd);
        const agent = spawn(process.execPath, [path.join(inst, 'bin/runner-warden.js'), 'run', '--config', world.configFile], {
          stdio: ['ignore', fd, 'inherit'],
          env: { PATH: process.env.PATH, NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '1500000', JOURNAL_STREAM: `${st.dev}:${st.ino}` },
        });
        closeSync(fd);
        const exited = new Promise<number | null>((r) => agent.once('exit', (c) => r(c)));
        const until = async (what: string, pred: () => Promise<boolean>, ms = 150_000): Promise<void> => {
          for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) if (await pred()) return;
          throw new Error(`timed out waiting for ${what}; log:\n${await readFile(logFile, 'utf8')}`);
        };
        await until('READY=1', async () => (await sock.messages()).some((m) => m.vars.includes('READY=1')));
        const log = await readFile(logFile, 'utf8');
        const listening = log.split('\n').find((l) => l.includes('health server listening'));
        assert.ok(listening, 'the health server logged its address');
        assert.match(listening, /^<6>\{"level":30,/, 'info lines carry priority 6 for journald');
        const port = Number(/"port":(\d+)/.exec(listening)?.[1]);
        const readyAt = (await sock.messages()).find((m) => m.vars.includes('READY=1'))?.at ?? 0;
        const health = await fetch(`http://127.0.0.1:${port}/healthz`);
        assert.ok([200, 503].includes(health.status));
        // READY=1 came after the agent logged that /healthz listens.
        assert.ok(readyAt >= Date.parse(JSON.parse(listening.slice(3)).time as string));
        assert.ok(
          log
            .split('\n')
            .filter((l) => l !== '')
            .every((l) => /^<[2-7]>\{/.test(l)),
          'every line carries its priority',
        );

        await until('watchdog pings', async () => (await sock.messages()).filter((m) => m.vars.includes('WATCHDOG=1')).length >= 3);
        // Wedged: the process cannot run at all (as a blocked event loop): no ping reaches systemd.
        process.kill(agent.pid as number, 'SIGSTOP');
        const stoppedAt = Date.now() + 300; // a ping already in flight may land
        await new Promise((r) => setTimeout(r, 3_500)); // more than two watchdog intervals
        const during = (await sock.messages()).filter((m) => m.at > stoppedAt && m.vars.includes('WATCHDOG=1'));
        process.kill(agent.pid as number, 'SIGCONT');
        assert.deepEqual(during, [], 'pings while wedged');
        await until('pings again', async () =>
          (await sock.messages()).some((m) => m.at > stoppedAt + 3_500 && m.vars.includes('WATCHDOG=1')),
        );
        agent.kill('SIGTERM');
        assert.equal(await exited, 0);
        assert.ok((await sock.messages()).some((m) => m.vars.includes('STOPPING=1')));
      } finally {
        await sock.close();
        await world?.dispose();
      }
    },
  );

  test('demo runs from the unpacked bundle (simulator included, no esbuild, no sources)', { timeout: 480_000 }, async () => {
    const r = await run(process.execPath, [path.join(inst, 'bin/runner-warden.js'), 'demo', '--jobs', '1']);
    assert.equal(r.code, 0, `demo:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /agent stopped: .*\(exit 0\)/);
    await assert.rejects(stat(path.join(inst, 'node_modules')));
    await assert.rejects(stat(path.join(inst, 'src')));
  });

  test('npm pack publishes only what runs', async () => {
    const r = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    assert.equal(r.code, 0, r.stderr);
    const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]?.files.map((f) => f.path) ?? [];
    assert.ok(files.includes('bin/runner-warden.js') && files.includes('LICENSE') && files.includes('package.json'));
    const allowed =
      /^(bin\/runner-warden\.js|dist\/[^/]+\.mjs|dist\/container-hooks\.js|dist\/THIRD-PARTY-NOTICES\.txt|policies\/[^/]+\.yaml|packaging\/(config\.example\.yaml|systemd\/runner-warden\.service|man\/runner-warden\.1|completions\/[^/]+)|LICENSE|README\.md|package\.json)$/;
    assert.deepEqual(
      files.filter((f) => !allowed.test(f)),
      [],
    );
  });
});
