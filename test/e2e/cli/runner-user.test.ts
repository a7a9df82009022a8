/** runner.user must be unprivileged: validate and run refuse root and root-reaching groups unless the policy grants them. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { main } from '../../../src/cli/main.js';
import { privilegeProblems } from '../../../src/cli/runner-user.js';
import { captureIo } from '../../helpers/io.js';

async function tmp(t: TestContext): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'rw-user-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('privileged accounts and groups are named; a policy grant lifts only its own group', async (t) => {
  const d = await tmp(t);
  const groups = path.join(d, 'group');
  await writeFile(
    groups,
    [
      'root:x:0:',
      'sudo:x:27:alice,carol',
      'docker:x:998:bob,carol',
      'lxd:x:997:dave',
      'users:x:100:',
      'alice:x:1001:',
      'bob:x:1002:',
      'carol:x:1003:',
      'dave:x:1004:',
      'erin:x:1005:',
      '',
    ].join('\n'),
  );
  const u = (name: string, uid: number, gid = uid): { name: string; uid: number; gid: number; home: string; shell: string } => ({
    name,
    uid,
    gid,
    home: `/home/${name}`,
    shell: '/bin/bash',
  });
  const cases: [string, ReturnType<typeof u>, Parameters<typeof privilegeProblems>[1], RegExp[]][] = [
    ['root', u('root', 0), {}, [/uid 0/, /group "root"/]],
    ['sudo member, policy silent', u('alice', 1001), {}, [/group "sudo"/]],
    ['sudo member, runner.sudo deny', u('alice', 1001), { sudo: 'deny' }, [/group "sudo"/]],
    ['sudo member, runner.sudo allow', u('alice', 1001), { sudo: 'allow' }, []],
    ['docker member, docker.mode isolated', u('bob', 1002), { dockerMode: 'isolated' }, [/group "docker"/]],
    ['docker member, docker.mode host', u('bob', 1002), { dockerMode: 'host' }, []],
    ['sudo and docker, only sudo granted', u('carol', 1003), { sudo: 'recycle' }, [/group "docker"/]],
    ['lxd member, everything granted', u('dave', 1004), { sudo: 'allow', dockerMode: 'host' }, [/group "lxd"/]],
    ['primary group root', u('erin', 1005, 0), {}, [/group "root"/]],
    ['plain user', u('erin', 1005), {}, []],
  ];
  for (const [name, user, grants, want] of cases) {
    const got = await privilegeProblems(user, grants, groups);
    assert.equal(got.length, want.length, `${name}: ${JSON.stringify(got)}`);
    for (const re of want)
      assert.ok(
        got.some((p) => re.test(p)),
        `${name}: expected ${re} in ${JSON.stringify(got)}`,
      );
  }
});

async function rootConfig(d: string): Promise<string> {
  await mkdir(path.join(d, 'policies'));
  await writeFile(path.join(d, 'policies', 'default.yaml'), 'version: 1\n');
  const f = path.join(d, 'config.yaml');
  await writeFile(
    f,
    `github:\n  url: https://github.com\n  org: acme\n  token: { file: ${d}/token }\nrunner:\n  root: ${d}/runner\n  user: root\nstateDir: ${d}/state\npolicyDir: ${d}/policies\n`,
  );
  return f;
}

test('validate refuses runner.user root, naming the file and the field', async (t) => {
  const d = await tmp(t);
  const f = await rootConfig(d);
  const c = captureIo();
  assert.equal(await main(['validate', f], c.io, {}), 1, c.out());
  assert.match(
    c.err(),
    new RegExp(`${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: runner\\.user: expected an unprivileged user, got "root" \\(uid 0`),
  );
});

test('run refuses runner.user root with exit 78 before touching the host', async (t) => {
  const d = await tmp(t);
  const f = await rootConfig(d);
  const c = captureIo();
  assert.equal(await main(['run', '--config', f], c.io, {}), 78, c.err());
  assert.match(c.err(), /runner\.user: expected an unprivileged user, got "root"/);
  await assert.rejects(
    import('node:fs/promises').then((fs) => fs.stat(path.join(d, 'state'))),
    'the state dir was created',
  );
});
