import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { deriveApiUrl, detectKind, effectiveWithSources, loadHostConfig, loadPolicy, parsePolicyText } from '../../../src/policy/load.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import { ConfigError, PolicyError } from '../../../src/lib/errors.js';

const POLICIES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../policies');

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'rw-policy-load-'));
}

async function withFiles<T>(files: Record<string, string>, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await tempDir();
  try {
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), content);
    }
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The provisional hand-written DEFAULT_POLICY the agent and cleanup engine were built against. */
const PROVISIONAL_DEFAULT: Policy = {
  version: 1,
  team: 'default',
  host: {
    maxJobs: 1,
    maxLifetimeMinutes: null,
    maxIdleMinutes: null,
    integrity: {
      enabled: true,
      surfaces: [
        'etc',
        'usr-local',
        'opt-srv',
        'root-home',
        'authorized-keys',
        'cron',
        'systemd',
        'setuid',
        'accounts',
        'modules',
        'mounts',
        'netfilter',
        'routes',
        'sysctl',
        'listeners',
        'processes',
        'package-state',
        'boot',
        'bpf',
      ],
      exceptions: [],
      allowPackages: false,
      forensicsMaxMiB: 64,
    },
  },
  runner: { labels: [], group: null, sudo: 'deny' },
  limits: { maxJobMinutes: 360, maxRegistrationMinutes: 60, minFreeDiskPercent: 10, minFreeInodesPercent: 5 },
  recycle: { onJobFailed: false, crashLoopThreshold: 3 },
  docker: {
    mode: 'auto',
    mirror: null,
    mirrorCapGiB: 20,
    warm: { images: [], learn: false, max: 5 },
    allow: { privileged: false, hostNamespaces: false, hostPaths: [], devices: [], capabilities: [] },
  },
  cleanup: {
    processes: { enabled: true, graceSeconds: 5 },
    containers: {
      enabled: true,
      socket: '/var/run/docker.sock',
      containers: true,
      volumes: true,
      networks: true,
      images: 'keep',
      buildCache: true,
    },
    workdir: { enabled: true, keep: [] },
    credentials: { enabled: true, extraPaths: [], extraGlobs: [] },
    home: { enabled: true, keep: [] },
    temp: { enabled: true, paths: ['/tmp', '/var/tmp', '/dev/shm', '/run/lock', '/var/crash'] },
    system: { enabled: true },
    runnerInstall: { enabled: true },
    commands: { before: [], after: [] },
  },
};

test('the schema-derived DEFAULT_POLICY equals the provisional one the other modules were built against', () => {
  assert.deepEqual(DEFAULT_POLICY, PROVISIONAL_DEFAULT, 'a schema default changed the meaning of DEFAULT_POLICY');
});

test('a policy of only "version: 1" is the default policy named after its file', async () => {
  await withFiles({ 'payments.yaml': 'version: 1\n' }, async (dir) => {
    const { policy, sources } = await loadPolicy(path.join(dir, 'payments.yaml'));
    assert.deepEqual(policy, { ...DEFAULT_POLICY, team: 'payments' });
    assert.equal(sources.get('cleanup.processes.graceSeconds'), undefined, 'a default was attributed to a file');
  });
});

const EXAMPLES: [string, (p: Policy) => void][] = [
  [
    'default.yaml',
    (p) => {
      assert.equal(p.host.maxJobs, 1);
      assert.equal(p.host.maxIdleMinutes, 60);
    },
  ],
  [
    'container-reuse.yaml',
    (p) => {
      assert.equal(p.host.maxJobs, 20);
      assert.equal(p.recycle.onJobFailed, true);
      assert.equal(p.cleanup.containers.images, 'job');
      assert.deepEqual(p.cleanup.workdir.keep, ['_tool']);
      for (const step of ['processes', 'workdir', 'credentials', 'home', 'temp', 'system', 'runnerInstall'] as const) {
        assert.equal(p.cleanup[step].enabled, true, `${step} must stay on when hosts are reused`);
      }
    },
  ],
  [
    'docker-heavy.yaml',
    (p) => {
      const c = p.cleanup.containers;
      assert.deepEqual([c.images, c.containers, c.volumes, c.networks, c.buildCache], ['keep', true, true, true, true]);
      assert.deepEqual(p.cleanup.home.keep, ['.cache/docker-buildx']);
    },
  ],
  [
    'strict.yaml',
    (p) => {
      assert.equal(p.host.maxJobs, 1);
      assert.equal(p.limits.maxJobMinutes, 60);
      assert.equal(p.recycle.crashLoopThreshold, 1);
      assert.equal(p.cleanup.containers.images, 'all');
      assert.deepEqual(
        p.cleanup.credentials.extraGlobs,
        ['.config/acme-*/token*', '.config/**/credentials*', '.*_history'],
        'strict appends to the base globs',
      );
    },
  ],
  ['base.yaml', (p) => assert.equal(p.limits.minFreeDiskPercent, 15)],
];

for (const [file, check] of EXAMPLES) {
  test(`the example policy ${file} is valid and says what its name promises`, async () => {
    const loaded = await loadPolicy(path.join(POLICIES, file));
    check(loaded.policy);
    if (file !== 'base.yaml') assert.equal(loaded.files[1], path.join(POLICIES, 'base.yaml'), `${file} should extend base.yaml`);
    assert.equal(loaded.policy.team, file.replace('.yaml', ''));
  });
}

test('lists replace, append and remove along a three-file chain, each value remembering its file', async () => {
  await withFiles(
    {
      'org.yaml':
        'version: 1\ncleanup:\n  home:\n    keep: [.cache/a, .cache/b]\n  temp:\n    paths: {append: [/scratch]}\nrunner:\n  labels: [org]\n',
      'common/base.yaml':
        'version: 1\nextends: ../org.yaml\ncleanup:\n  home:\n    keep: {remove: [.cache/a], append: [.cache/c]}\nlimits:\n  maxJobMinutes: 90\n',
      'team.yaml':
        'version: 1\nextends: common/base.yaml\nrunner:\n  labels: [team]\ncleanup:\n  home:\n    keep: {append: [.cache/d, .cache/b]}\n',
    },
    async (dir) => {
      const { policy, sources, files } = await loadPolicy(path.join(dir, 'team.yaml'));
      assert.deepEqual(
        files.map((f) => path.relative(dir, f)),
        ['team.yaml', 'common/base.yaml', 'org.yaml'],
      );
      assert.deepEqual(policy.cleanup.home.keep, ['.cache/b', '.cache/c', '.cache/d'], 'remove/append did not compose');
      assert.deepEqual(
        policy.cleanup.temp.paths,
        ['/tmp', '/var/tmp', '/dev/shm', '/run/lock', '/var/crash', '/scratch'],
        'a patch without a base should patch the default list',
      );
      assert.deepEqual(policy.runner.labels, ['team'], 'a plain list should replace the inherited one');
      assert.equal(policy.limits.maxJobMinutes, 90);
      const rel = (p: string): string | undefined => {
        const s = sources.get(p);
        return s === undefined ? undefined : path.relative(dir, s);
      };
      assert.equal(rel('cleanup.home.keep[0]'), 'org.yaml');
      assert.equal(rel('cleanup.home.keep[1]'), 'common/base.yaml');
      assert.equal(rel('cleanup.home.keep[2]'), 'team.yaml');
      assert.equal(rel('cleanup.temp.paths[0]'), undefined, 'default items have no file');
      assert.equal(rel('cleanup.temp.paths[5]'), 'org.yaml');
      assert.equal(rel('limits.maxJobMinutes'), 'common/base.yaml');
      assert.equal(rel('runner.labels[0]'), 'team.yaml');
    },
  );
});

test('team is not inherited: the most specific file names it, or its file name does', async () => {
  await withFiles(
    {
      'base.yaml': 'version: 1\nteam: platform\n',
      'web.yaml': 'version: 1\nextends: base.yaml\n',
      'api.yaml': 'version: 1\nextends: base.yaml\nteam: api-team\n',
    },
    async (dir) => {
      assert.equal((await loadPolicy(path.join(dir, 'web.yaml'))).policy.team, 'web');
      assert.equal((await loadPolicy(path.join(dir, 'api.yaml'))).policy.team, 'api-team');
    },
  );
});

test('a symlink that stays inside the policy directory may be extended', async () => {
  await withFiles(
    { 'real/base.yaml': 'version: 1\nlimits: {maxJobMinutes: 30}\n', 'team.yaml': 'version: 1\nextends: linked/base.yaml\n' },
    async (dir) => {
      await symlink(path.join(dir, 'real'), path.join(dir, 'linked'));
      assert.equal((await loadPolicy(path.join(dir, 'team.yaml'))).policy.limits.maxJobMinutes, 30);
    },
  );
});

test('a JSON policy indented with tabs loads like YAML', async () => {
  await withFiles({ 'team.json': '{\n\t"version": 1,\n\t"host": {\n\t\t"maxJobs": 20\n\t}\n}\n' }, async (dir) => {
    assert.equal((await loadPolicy(path.join(dir, 'team.json'))).policy.host.maxJobs, 20);
  });
});

test('the version hash changes with the content of any file of the chain', async () => {
  await withFiles({ 'base.yaml': 'version: 1\n', 'team.yaml': 'version: 1\nextends: base.yaml\n' }, async (dir) => {
    const a = (await loadPolicy(path.join(dir, 'team.yaml'))).version;
    await writeFile(path.join(dir, 'base.yaml'), 'version: 1\nlimits: {maxJobMinutes: 5}\n');
    const b = (await loadPolicy(path.join(dir, 'team.yaml'))).version;
    assert.notEqual(a, b, 'a base change must change the version');
  });
});

test('--print-effective text annotates every value with its file or (default)', async () => {
  const text = await effectiveWithSources(path.join(POLICIES, 'container-reuse.yaml'));
  const line = (key: string): string => text.split('\n').find((l) => l.trimStart().startsWith(key)) ?? '';
  assert.match(line('maxJobs:'), /maxJobs: 20 +# .*container-reuse\.yaml$/);
  assert.match(line('minFreeDiskPercent:'), /# .*base\.yaml$/);
  assert.match(line('socket:'), /# \(default\)$/);
  assert.match(line('- _tool'), /# .*container-reuse\.yaml$/);
});

test('parsePolicyText validates text without a directory', () => {
  assert.equal(parsePolicyText('x.yaml', 'version: 1\nhost: {maxJobs: 3}\n').host.maxJobs, 3);
  assert.throws(() => parsePolicyText('x.yaml', 'version: 1\nextends: b.yaml\n'), PolicyError);
  assert.throws(
    () => parsePolicyText('x.yaml', 'version: 1\nhost: {maxJobs: 3}\ncleanup: {home: {enabled: false}}\n'),
    (e: unknown) => {
      return (
        e instanceof PolicyError &&
        e.problems[0] ===
          'x.yaml:3:27: cleanup.home.enabled: expected true when host.maxJobs > 1 (a reused host must be cleaned), got false'
      );
    },
  );
});

const MINIMAL_HOST =
  'github:\n  org: acme\n  token: {file: /etc/runner-warden/token}\nrunner:\n  root: /opt/actions-runner\n  user: runner\n';

test('a minimal host config gets every default and its derived API URL', async () => {
  await withFiles({ 'config.yaml': MINIMAL_HOST }, async (dir) => {
    const config = await loadHostConfig(path.join(dir, 'config.yaml'));
    assert.deepEqual(config, {
      github: {
        org: 'acme',
        token: { file: '/etc/runner-warden/token' },
        url: 'https://github.com',
        apiUrl: 'https://api.github.com',
        registration: 'jit',
      },
      runner: { root: '/opt/actions-runner', user: 'runner', name: '{hostname}-{seq}', labels: [], group: null, prefetch: false, env: {} },
      team: 'default',
      policyDir: '/etc/runner-warden/policies',
      stateDir: '/var/lib/runner-warden',
      journal: { maxFileMiB: 16, keep: 4 },
      health: { listen: '127.0.0.1:9469' },
      recycle: { provider: 'none' },
      interruptions: { imds: false, imdsUrl: 'http://169.254.169.254', intervalSeconds: 5 },
    });
  });
});

test('the API URL is derived for github.com, ghe.com and servers, and an explicit one wins', async () => {
  assert.equal(deriveApiUrl('https://github.com'), 'https://api.github.com');
  assert.equal(deriveApiUrl('https://octo.ghe.com'), 'https://api.octo.ghe.com');
  assert.equal(deriveApiUrl('https://ghes.example.com/'), 'https://ghes.example.com/api/v3');
  assert.equal(deriveApiUrl('http://127.0.0.1:8080'), 'http://127.0.0.1:8080/api/v3');
  await withFiles(
    { 'config.yaml': MINIMAL_HOST.replace('github:\n', 'github:\n  url: https://ghes.example.com\n  apiUrl: http://127.0.0.1:9999/api\n') },
    async (dir) => {
      assert.equal((await loadHostConfig(path.join(dir, 'config.yaml'))).github.apiUrl, 'http://127.0.0.1:9999/api');
    },
  );
});

test('RUNNER_WARDEN_ variables from the given env override the file, typed, and replace exclusive choices', async () => {
  await withFiles({ 'config.yaml': MINIMAL_HOST }, async (dir) => {
    const config = await loadHostConfig(path.join(dir, 'config.yaml'), {
      RUNNER_WARDEN_GITHUB_URL: 'https://ghes.example.com',
      RUNNER_WARDEN_GITHUB_REPO: 'acme/app',
      RUNNER_WARDEN_GITHUB_TOKEN_ENV: 'GH_TOKEN',
      RUNNER_WARDEN_STATEDIR: '/srv/rw',
      RUNNER_WARDEN_RUNNER_MAXJOBS: '3',
      RUNNER_WARDEN_RUNNER_LABELS: 'linux, x64',
      RUNNER_WARDEN_RUNNER_GROUP: '',
      RUNNER_WARDEN_RECYCLE_PROVIDER: 'exit',
      RUNNER_WARDEN_RECYCLE_EXITCODE: '0',
      RUNNER_WARDEN_LOG_LEVEL: 'debug',
      RUNNER_WARDEN_UNSET: undefined,
    });
    assert.equal(config.github.url, 'https://ghes.example.com');
    assert.equal(config.github.apiUrl, 'https://ghes.example.com/api/v3', 'apiUrl must be derived from the overridden url');
    assert.equal(config.github.repo, 'acme/app');
    assert.equal(config.github.org, undefined, 'the env repo should replace the file org');
    assert.deepEqual(config.github.token, { env: 'GH_TOKEN' }, 'the env token variable should replace the file token file');
    assert.equal(config.stateDir, '/srv/rw');
    assert.equal(config.runner.maxJobs, 3);
    assert.deepEqual(config.runner.labels, ['linux', 'x64']);
    assert.equal(config.runner.group, null);
    assert.deepEqual(config.recycle, { provider: 'exit', exitCode: 0 });
  });
});

test("the recycle section's provider options are checked with the rest of the host config", async () => {
  await withFiles(
    {
      'config.yaml': `${MINIMAL_HOST}recycle:\n  provider: webhook\n  url: https://hooks.example.com/replace\n  secretFile: /etc/runner-warden/hook.key\n  fallback: [{provider: shutdown, command: [systemctl, poweroff]}]\n`,
      'bad.yaml': `${MINIMAL_HOST}recycle:\n  provider: webhook\n  url: https://hooks.example.com/replace\n  exitCode: 3\n`,
    },
    async (dir) => {
      const config = await loadHostConfig(path.join(dir, 'config.yaml'));
      assert.deepEqual(config.recycle, {
        provider: 'webhook',
        url: 'https://hooks.example.com/replace',
        secretFile: '/etc/runner-warden/hook.key',
        fallback: [{ provider: 'shutdown', command: ['systemctl', 'poweroff'] }],
      });
      const bad = path.join(dir, 'bad.yaml');
      const line = MINIMAL_HOST.split('\n').length;
      await assert.rejects(loadHostConfig(bad), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, [
          `${bad}:${line + 1}:3: recycle: missing required key "secretFile"`,
          `${bad}:${line + 3}:3: recycle.exitCode: unknown key (expected one of: provider, fallback, url, secretFile, headers, caFile, maxAttempts, initialBackoffMs, maxBackoffMs, timeoutSeconds)`,
        ]);
        return true;
      });
    },
  );
});

test('detectKind tells host configs from policies by their keys, then by name', async () => {
  await withFiles(
    {
      'config.yaml': MINIMAL_HOST,
      'team.yaml': 'version: 1\n',
      'host.json': '{"github": {}, "stateDir": "/x"}',
      'config.json': '{}',
      'odd.yaml': 'runner: {}\n',
    },
    async (dir) => {
      assert.equal(await detectKind(path.join(dir, 'config.yaml')), 'host-config');
      assert.equal(await detectKind(path.join(dir, 'team.yaml')), 'policy');
      assert.equal(await detectKind(path.join(dir, 'host.json')), 'host-config');
      assert.equal(await detectKind(path.join(dir, 'config.json')), 'host-config');
      assert.equal(await detectKind(path.join(dir, 'odd.yaml')), 'policy');
      assert.equal(await detectKind(path.join(dir, 'missing.yaml')), 'policy');
    },
  );
});
