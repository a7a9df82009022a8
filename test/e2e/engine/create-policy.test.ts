/** The create-option policy: every escape is refused by default and names the key that allows it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, symlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { askFromCliArgs, askFromHostConfig, checkCreate, describeRefusals, type DockerAllow } from '../../../src/engine/create-policy.js';

const DENY: DockerAllow = { privileged: false, hostNamespaces: false, hostPaths: [], devices: [], capabilities: [] };
const WORK = '/home/runner/_work';

const cases: Array<{ name: string; args: string[]; key: RegExp }> = [
  { name: 'privileged', args: ['--privileged'], key: /docker\.allow\.privileged/ },
  { name: 'pid=host', args: ['--pid=host'], key: /docker\.allow\.hostNamespaces/ },
  { name: 'network host (two words)', args: ['--network', 'host'], key: /docker\.allow\.hostNamespaces/ },
  { name: 'userns=host', args: ['--userns=host'], key: /docker\.allow\.hostNamespaces/ },
  { name: 'root bind', args: ['-v', '/:/host'], key: /docker\.allow\.hostPaths: \[\/\]/ },
  { name: 'host engine socket', args: ['-v', '/var/run/docker.sock:/var/run/docker.sock'], key: /docker\.allow\.hostPaths/ },
  { name: '--mount bind of /etc', args: ['--mount', 'type=bind,source=/etc,target=/x'], key: /docker\.allow\.hostPaths: \[\/etc\]/ },
  { name: 'device', args: ['--device', '/dev/sda:/dev/sda'], key: /docker\.allow\.devices: \[\/dev\/sda\]/ },
  { name: 'cap-add', args: ['--cap-add', 'SYS_ADMIN'], key: /docker\.allow\.capabilities: \[SYS_ADMIN\]/ },
  { name: 'cap-add ALL', args: ['--cap-add=ALL'], key: /docker\.allow\.privileged/ },
  { name: 'seccomp off', args: ['--security-opt', 'seccomp=unconfined'], key: /docker\.allow\.privileged/ },
];

for (const c of cases) {
  test(`a container asking ${c.name} is refused by default, naming the key that would allow it`, () => {
    const refusals = checkCreate(askFromCliArgs(c.args), DENY, [WORK]);
    assert.equal(refusals.length, 1, JSON.stringify(refusals));
    assert.match(describeRefusals(refusals), c.key);
  });
}

test('the workspace, and what the policy allows, pass', () => {
  const allow: DockerAllow = {
    privileged: true,
    hostNamespaces: true,
    hostPaths: ['/opt/data'],
    devices: ['/dev/fuse'],
    capabilities: ['NET_ADMIN'],
  };
  const args = [
    '-v',
    `${WORK}/repo:/src`,
    '-v',
    '/opt/data/x:/x',
    '--device',
    '/dev/fuse',
    '--cap-add',
    'net_admin',
    '--privileged',
    '--pid=host',
    '-v',
    'named:/vol',
  ];
  assert.deepEqual(checkCreate(askFromCliArgs(args), allow, [WORK]), []);
  assert.equal(checkCreate(askFromCliArgs(['-v', `${WORK}/../../.ssh:/k`]), DENY, [WORK]).length, 1, 'a .. escape out of the workspace');
});

test('a symlink inside the workspace that points at /etc is judged by where it points', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'rw-create-'));
  try {
    mkdirSync(path.join(root, 'work'));
    symlinkSync('/etc', path.join(root, 'work', 'etc-link'));
    const refusals = checkCreate(askFromCliArgs(['-v', `${root}/work/etc-link:/x`]), DENY, [path.join(root, 'work')]);
    assert.equal(refusals.length, 1);
    assert.match(refusals[0]?.key ?? '', /\[\/etc\]/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('an Engine API create body is read the same way', () => {
  const ask = askFromHostConfig({
    Privileged: true,
    PidMode: 'host',
    Binds: ['/:/host:rw'],
    Mounts: [{ Type: 'bind', Source: '/root' }],
    Devices: [{ PathOnHost: '/dev/mem' }],
    CapAdd: ['SYS_PTRACE'],
  });
  const keys = checkCreate(ask, DENY, [WORK]).map((r) => r.key);
  assert.equal(keys.length, 6, keys.join(' | '));
});
