/**
 * `runner-warden validate` on a host config checks whether this host can give the team policy's
 * docker.mode to the runner user, and says how to fix each gap: binaries, setuid id mappers,
 * subordinate ids, the kernel's user-namespace switches, /dev/net/tun. `isolated` makes the file
 * invalid; `auto` only notes that jobs would get no engine. Host files are the test's own.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { captureIo } from '../../helpers/io.js';
import { readSubids, type EngineHostPaths } from '../../../src/engine/host-checks.js';
import { engineFitness } from '../../../src/cli/engine-fitness.js';
import { validateCommand } from '../../../src/cli/validate.js';
import { loadHostConfig } from '../../../src/policy/load.js';
import { fitHostPaths } from './fixture.js';

let lab: Lab;
let good: EngineHostPaths;

before(async () => {
  lab = await createLab('rw-validate-engine-');
  const sys = path.join(lab.root, 'sys');
  await fsp.mkdir(sys);
  for (const [f, v] of [
    ['max', '15000'],
    ['clone', '1'],
    ['apparmor', '0'],
  ] as const)
    await fsp.writeFile(path.join(sys, f), `${v}\n`);
  good = {
    ...(await fitHostPaths(lab)),
    userns: {
      maxUserNamespaces: path.join(sys, 'max'),
      unprivilegedClone: path.join(sys, 'clone'),
      apparmorRestrict: path.join(sys, 'apparmor'),
    },
  };
});

after(async () => {
  await lab.dispose();
});

/** A host config (and its team policy with `docker.mode`) in the lab; returns the config's path. */
async function hostConfig(mode: string): Promise<string> {
  const dir = path.join(lab.root, `cfg-${mode}`);
  await fsp.mkdir(path.join(dir, 'policies'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'policies', 'team.yaml'), `version: 1\ndocker:\n  mode: ${mode}\n`);
  const file = path.join(dir, 'config.yaml');
  await fsp.writeFile(
    file,
    `github:\n  org: acme\n  token: {env: GH_TOKEN}\nrunner: {root: ${path.join(lab.root, 'runner')}, user: ${lab.user.name}}\nteam: team\npolicyDir: ${path.join(dir, 'policies')}\n`,
  );
  return file;
}

async function fitness(mode: string, paths: EngineHostPaths): Promise<{ errors: string[]; notes: string[] }> {
  const file = await hostConfig(mode);
  return engineFitness(await loadHostConfig(file, {}), file, { paths });
}

/** A bin directory with every binary the engine needs, newuidmap as given by `mapperMode`. */
async function fakeBin(name: string, mapperMode: number): Promise<string> {
  const dir = path.join(lab.root, name);
  await fsp.mkdir(dir);
  for (const b of ['dockerd', 'containerd', 'rootlesskit', 'slirp4netns', 'newuidmap', 'newgidmap']) {
    const f = path.join(dir, b);
    await fsp.writeFile(f, '#!/bin/sh\nexit 0\n');
    await fsp.chmod(f, b === 'newuidmap' ? mapperMode : 0o4755);
  }
  return dir;
}

test('isolated: each gap of the host is an error naming what is missing and the fix', async () => {
  assert.deepEqual(await fitness('isolated', good), { errors: [], notes: [] }, 'a fit host has no finding');
  const sys = path.join(lab.root, 'sys');
  const zero = path.join(sys, 'zero');
  const one = path.join(sys, 'one');
  await fsp.writeFile(zero, '0\n');
  await fsp.writeFile(one, '1\n');
  const tun600 = path.join(lab.root, 'tun600');
  execFileSync('mknod', ['-m', '600', tun600, 'c', '10', '200']);
  const cases: Array<{ name: string; paths: () => Promise<EngineHostPaths>; what: RegExp; fix: RegExp }> = [
    {
      name: 'newuidmap not setuid',
      paths: async () => ({ ...good, binDirs: [await fakeBin('bin-nosetuid', 0o755)] }),
      what: /newuidmap is neither setuid root nor given cap_setuid/,
      fix: /chmod u\+s .*newuidmap/,
    },
    {
      name: 'user namespaces off',
      paths: async () => ({ ...good, userns: { ...(good.userns as NonNullable<EngineHostPaths['userns']>), maxUserNamespaces: zero } }),
      what: /user namespaces are disabled/,
      fix: /sysctl -w user\.max_user_namespaces=/,
    },
    {
      name: "Debian's unprivileged switch off",
      paths: async () => ({ ...good, userns: { ...(good.userns as NonNullable<EngineHostPaths['userns']>), unprivilegedClone: zero } }),
      what: /unprivileged user namespaces are disabled/,
      fix: /kernel\.unprivileged_userns_clone=1/,
    },
    {
      name: "Ubuntu's AppArmor restriction on",
      paths: async () => ({ ...good, userns: { ...(good.userns as NonNullable<EngineHostPaths['userns']>), apparmorRestrict: one } }),
      what: /AppArmor restricts unprivileged user namespaces/,
      fix: /AppArmor profile for .*rootlesskit/,
    },
    { name: 'tun 0600', paths: async () => ({ ...good, tun: tun600 }), what: /tun600 is mode 600/, fix: /chmod 666 .*tun600/ },
    {
      name: 'no subordinate gids',
      paths: async () => {
        const f = path.join(lab.root, 'etc', 'subgid-empty');
        await fsp.writeFile(f, '');
        return { ...good, subgid: f };
      },
      what: /no range of 65536 subordinate gids/,
      fix: /usermod --add-subgids/,
    },
  ];
  for (const c of cases) {
    const r = await fitness('isolated', await c.paths());
    assert.equal(r.errors.length, 1, `${c.name}: expected one error, got ${JSON.stringify(r.errors)}`);
    const line = r.errors[0] as string;
    assert.match(line, /config\.yaml: docker\.mode isolated: /, `${c.name}: the line names the file and the key`);
    assert.match(line, c.what, `${c.name}: what is missing`);
    assert.match(line, c.fix, `${c.name}: how to fix it`);
  }
});

test('auto: the same gap is a note (jobs get no engine), not an error; host mode checks nothing', async () => {
  const r = await fitness('auto', { ...good, tun: path.join(lab.root, 'tun600') });
  assert.deepEqual(r.errors, []);
  assert.equal(r.notes.length, 1);
  assert.match(r.notes[0] as string, /tun600 is mode 600.*jobs on this host get no engine/);
  assert.deepEqual(await fitness('host', { ...good, tun: path.join(lab.root, 'tun600') }), { errors: [], notes: [] });
});

test('validate of a host config fails when this host cannot give isolated to its runner user, and prints the fix', async () => {
  for (const [file, flag] of [
    ['/etc/subuid', '--del-subuids'],
    ['/etc/subgid', '--del-subgids'],
  ] as const) {
    for (const r of await readSubids(file, lab.user)) execFileSync('usermod', [flag, `${r.start}-${r.start + r.count - 1}`, lab.user.name]);
  }
  const c = captureIo();
  const code = await validateCommand([await hostConfig('isolated')], c.io);
  assert.equal(code, 1, `validate accepted a host that cannot give isolated: ${c.out()}`);
  assert.match(
    c.err(),
    /config\.yaml: docker\.mode isolated: runner user \S+ has no range of 65536 subordinate uids .*\(fix: usermod --add-subuids/,
  );
});
