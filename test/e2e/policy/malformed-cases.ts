/**
 * Malformed config and policy files, each with the exact problems it must produce.
 * Paths in `expect` are relative to the case's own temporary policy directory.
 */
import { ALIAS_BOMB } from '../../../src/sim/alias-bomb.js';

/** One malformed input. */
export interface BadCase {
  name: string;
  kind: 'policy' | 'host';
  /** Files of the policy directory; `entry` is validated. A function builds special content. */
  files: Record<string, string | Buffer>;
  entry: string;
  /** Symlinks to create: link name (in the dir) → target (absolute, `$OUTSIDE` = a dir outside). */
  links?: Record<string, string>;
  /** A sparse file of this many bytes is written as the entry. */
  sparseBytes?: number;
  env?: Record<string, string>;
  expect: string[];
}

const garbage = Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0xff, 0xfe, 0x10, 0x80]);

const host = (body: string): string => body;

export const BAD_CASES: BadCase[] = [
  {
    name: 'a string where an integer is expected',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nhost:\n  maxJobs: "3"\n' },
    expect: ['team.yaml:3:12: host.maxJobs: expected an integer, got "3"'],
  },
  {
    name: 'a YAML 1.1 boolean word where true or false is expected',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nrecycle: {onJobFailed: yes}\n' },
    expect: ['team.yaml:2:24: recycle.onJobFailed: expected true or false, got "yes"'],
  },
  {
    name: 'a misspelt top-level key',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nclenaup: {}\n' },
    expect: [
      'team.yaml:2:1: clenaup: unknown key (expected one of: version, extends, team, description, host, runner, limits, recycle, docker, cleanup)',
    ],
  },
  {
    name: 'an unknown nested key with no near match',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  workdir:\n    wipe: true\n' },
    expect: ['team.yaml:4:5: cleanup.workdir.wipe: unknown key (expected one of: enabled, keep)'],
  },
  {
    name: 'a file without version',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'host:\n  maxJobs: 1\n' },
    expect: ['team.yaml:1:1: (root): missing required key "version"'],
  },
  {
    name: 'a later format version',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 2\n' },
    expect: ['team.yaml:1:10: version: expected 1, got 2'],
  },
  {
    name: 'an admin command without run',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  commands:\n    before:\n      - timeoutSeconds: 5\n' },
    expect: ['team.yaml:5:9: cleanup.commands.before[0]: missing required key "run"'],
  },
  {
    name: 'a workdir keep path escaping _work with ..',
    kind: 'policy',
    entry: 'payments.yaml',
    files: { 'payments.yaml': 'version: 1\ncleanup:\n  workdir:\n    keep:\n      - _tool\n      - ../../etc\n' },
    expect: [
      "payments.yaml:6:9: cleanup.workdir.keep[1]: expected a path inside _work (relative, no '..'), got \"../../etc\" ('..' escapes the root)",
    ],
  },
  {
    name: 'an absolute workdir keep path',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  workdir:\n    keep: [/etc/passwd]\n' },
    expect: ['team.yaml:4:12: cleanup.workdir.keep[0]: expected a path inside _work (relative, no \'..\'), got "/etc/passwd" (absolute)'],
  },
  {
    name: 'a home keep path naming the whole home',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  home:\n    keep: ["./"]\n' },
    expect: [
      'team.yaml:4:12: cleanup.home.keep[0]: expected a path inside the home directory (relative, no \'..\'), got "./" (names the root itself)',
    ],
  },
  {
    name: 'an absolute extra credential path',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  credentials:\n    extraPaths: [/root/.ssh/id_rsa]\n' },
    expect: [
      'team.yaml:4:18: cleanup.credentials.extraPaths[0]: expected a path inside the home directory (relative, no \'..\'), got "/root/.ssh/id_rsa" (absolute)',
    ],
  },
  {
    name: 'a relative temp path',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  temp:\n    paths: [tmp]\n' },
    expect: ['team.yaml:4:13: cleanup.temp.paths[0]: expected an absolute temp directory, got "tmp" (relative)'],
  },
  {
    name: 'a system root as temp path',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  temp:\n    paths: [/tmp, /etc/]\n' },
    expect: ['team.yaml:4:19: cleanup.temp.paths[1]: expected an absolute temp directory, got "/etc/" (a system directory)'],
  },
  {
    name: 'a glob with an unclosed class',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  credentials:\n    extraGlobs: [".config/[ab"]\n' },
    expect: [
      'team.yaml:4:18: cleanup.credentials.extraGlobs[0]: expected a glob inside the home directory, got ".config/[ab" (unclosed \'[\')',
    ],
  },
  {
    name: 'a glob with an unbalanced brace',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  credentials:\n    extraGlobs: [".config/a}"]\n' },
    expect: [
      'team.yaml:4:18: cleanup.credentials.extraGlobs[0]: expected a glob inside the home directory, got ".config/a}" (unbalanced \'}\')',
    ],
  },
  {
    name: 'a glob matching the whole home',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  credentials:\n    extraGlobs: ["**/*"]\n' },
    expect: [
      'team.yaml:4:18: cleanup.credentials.extraGlobs[0]: expected a glob inside the home directory, got "**/*" (matches the whole home directory)',
    ],
  },
  {
    name: 'a glob escaping home',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  credentials:\n    extraGlobs: ["../*/.ssh/*"]\n' },
    expect: [
      'team.yaml:4:18: cleanup.credentials.extraGlobs[0]: expected a glob inside the home directory, got "../*/.ssh/*" (\'..\' escapes the root)',
    ],
  },
  {
    name: 'a negative grace period',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  processes: {graceSeconds: -1}\n' },
    expect: ['team.yaml:3:29: cleanup.processes.graceSeconds: expected an integer from 0 to 300, got -1'],
  },
  {
    name: 'a huge maxJobs',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nhost:\n  maxJobs: 1e20\n' },
    expect: ['team.yaml:3:12: host.maxJobs: expected an integer from 1 to 10000, got 100000000000000000000'],
  },
  {
    name: 'a fraction where an integer is expected',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nlimits:\n  maxJobMinutes: 1.5\n' },
    expect: ['team.yaml:3:18: limits.maxJobMinutes: expected an integer, got 1.5'],
  },
  {
    name: 'a percentage above 100',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nlimits:\n  minFreeDiskPercent: 250\n' },
    expect: ['team.yaml:3:23: limits.minFreeDiskPercent: expected a number from 0 to 100, got 250'],
  },
  {
    name: 'an unknown image mode',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  containers: {images: some}\n' },
    expect: ['team.yaml:3:24: cleanup.containers.images: expected one of "keep", "job", "all", got "some"'],
  },
  {
    name: 'a misspelt list patch',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\ncleanup:\n  home:\n    keep: {apend: [.cache]}\n' },
    expect: ['team.yaml:4:12: cleanup.home.keep.apend: unknown key, did you mean "append"?'],
  },
  {
    name: 'an empty list patch',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nrunner:\n  labels: {}\n' },
    expect: ['team.yaml:3:11: runner.labels: expected a list, or a patch {append: [...], remove: [...]}, got an empty mapping'],
  },
  {
    name: 'a YAML syntax error',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nrunner:\n  labels: [a, b\nhost: {}\n' },
    expect: [
      'team.yaml:4:1: runner.labels[1]: expected valid YAML, got a syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ],
  },
  {
    name: 'a tab used for indentation',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nhost:\n\tmaxJobs: 2\n' },
    expect: ['team.yaml:3:1: (root): expected valid YAML, got a syntax error: Tabs are not allowed as indentation'],
  },
  {
    name: 'a duplicate key',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nhost:\n  maxJobs: 1\n  maxJobs: 20\n' },
    expect: ['team.yaml:4:3: host.maxJobs: expected unique keys, got a duplicate key'],
  },
  {
    name: 'two YAML documents in one file',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\n---\nversion: 1\n' },
    expect: ['team.yaml:2:1: (root): expected one document, got several (---)'],
  },
  {
    name: 'a cycle of extends',
    kind: 'policy',
    entry: 'a.yaml',
    files: {
      'a.yaml': 'version: 1\nextends: b.yaml\n',
      'b.yaml': 'version: 1\nextends: c.yaml\n',
      'c.yaml': 'version: 1\nextends: a.yaml\n',
    },
    expect: ['c.yaml:2:10: extends: expected no cycle of extends, got a.yaml -> b.yaml -> c.yaml -> a.yaml'],
  },
  {
    name: 'extends naming a missing file',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nextends: nope.yaml\n' },
    expect: ['team.yaml:2:10: extends: expected an existing policy file, got "nope.yaml" (not found)'],
  },
  {
    name: 'extends leaving the policy directory with ..',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nextends: ../outside/base.yaml\n' },
    expect: [
      'team.yaml:2:10: extends: expected a file inside the policy directory $ROOT/policies, got "../outside/base.yaml" (resolves to $ROOT/outside/base.yaml)',
    ],
  },
  {
    name: 'extends through a symlinked directory that escapes the policy directory',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': 'version: 1\nextends: common/base.yaml\n' },
    links: { common: '$OUTSIDE' },
    expect: [
      'team.yaml:2:10: extends: expected a file inside the policy directory $ROOT/policies, got "common/base.yaml" (resolves to $ROOT/outside/base.yaml)',
    ],
  },
  {
    name: "a base policy with its own errors, listed with the extending file's",
    kind: 'policy',
    entry: 'team.yaml',
    files: {
      'team.yaml': 'version: 1\nextends: base.yaml\nhost: {maxJobs: 0}\n',
      'base.yaml': 'version: 1\nlimits: {maxJobMinutes: "1h"}\n',
    },
    expect: [
      'base.yaml:2:25: limits.maxJobMinutes: expected an integer, got "1h"',
      'team.yaml:3:17: host.maxJobs: expected an integer from 1 to 10000, got 0',
    ],
  },
  {
    name: 'host reuse inherited together with a cleanup step a base turned off',
    kind: 'policy',
    entry: 'team.yaml',
    files: {
      'team.yaml': 'version: 1\nextends: base.yaml\nhost: {maxJobs: 20}\n',
      'base.yaml': 'version: 1\ncleanup:\n  credentials: {enabled: false}\n',
    },
    expect: ['base.yaml:3:26: cleanup.credentials.enabled: expected true when host.maxJobs > 1 (a reused host must be cleaned), got false'],
  },
  {
    name: 'a file of 50 MB',
    kind: 'policy',
    entry: 'team.yaml',
    files: {},
    sparseBytes: 50 * 1024 * 1024,
    expect: ['team.yaml:1:1: (root): expected at most 262144 bytes, got a file of 52428800 bytes'],
  },
  {
    name: 'a YAML alias bomb',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': ALIAS_BOMB },
    expect: ['team.yaml:1:1: (root): expected at most 50 alias expansions, got an alias bomb (excessive aliasing)'],
  },
  {
    name: 'deeply nested brackets',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': `version: 1\nrunner: {labels: ${'['.repeat(10000)}${']'.repeat(10000)}}\n` },
    expect: ['team.yaml:2:81: (root): expected at most 64 levels of nesting, got more'],
  },
  {
    name: 'binary garbage',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': garbage },
    expect: ['team.yaml:1:8: (root): expected YAML or JSON text, got binary data (a NUL byte)'],
  },
  {
    name: 'text that is not UTF-8',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': Buffer.concat([Buffer.from('version: 1\ndescription: caf'), Buffer.from([0xe9]), Buffer.from('\n')]) },
    expect: ['team.yaml:2:18: (root): expected UTF-8 text, got bytes that are not UTF-8'],
  },
  {
    name: 'an empty file',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': '' },
    expect: ['team.yaml:1:1: (root): expected a mapping, got an empty document'],
  },
  {
    name: 'a file of comments only',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': '# nothing here yet\n\n' },
    expect: ['team.yaml:1:1: (root): expected a mapping, got an empty document'],
  },
  {
    name: 'a list at the top level',
    kind: 'policy',
    entry: 'team.yaml',
    files: { 'team.yaml': '- version: 1\n' },
    expect: ['team.yaml:1:1: (root): expected a mapping, got a list'],
  },
  {
    name: 'a __proto__ key',
    kind: 'policy',
    entry: 'team.json',
    files: { 'team.json': '{"version": 1, "__proto__": {"polluted": true}}\n' },
    expect: [
      'team.json:1:16: __proto__: unknown key (expected one of: version, extends, team, description, host, runner, limits, recycle, docker, cleanup)',
    ],
  },
  {
    name: 'a JSON policy with several errors, all listed',
    kind: 'policy',
    entry: 'team.json',
    files: { 'team.json': '{\n  "version": 1,\n  "host": {"maxJobs": -5, "ttl": 3},\n  "cleanup": {"temp": {"paths": ["rel"]}}\n}\n' },
    expect: [
      'team.json:3:23: host.maxJobs: expected an integer from 1 to 10000, got -5',
      'team.json:3:27: host.ttl: unknown key (expected one of: maxJobs, maxLifetimeMinutes, maxIdleMinutes, integrity)',
      'team.json:4:34: cleanup.temp.paths[0]: expected an absolute temp directory, got "rel" (relative)',
    ],
  },
  {
    name: 'a host config without github and runner',
    kind: 'host',
    entry: 'config.yaml',
    files: { 'config.yaml': host('team: payments\n') },
    expect: ['config.yaml:1:1: (root): missing required key "github"', 'config.yaml:1:1: (root): missing required key "runner"'],
  },
  {
    name: 'a host config naming both an org and a repo',
    kind: 'host',
    entry: 'config.yaml',
    files: {
      'config.yaml': host('github:\n  org: acme\n  repo: acme/app\n  token: {env: GH_TOKEN}\nrunner: {root: /opt/r, user: runner}\n'),
    },
    expect: ['config.yaml:2:3: github: expected exactly one of "org", "repo", "enterprise", got "org" and "repo"'],
  },
  {
    name: 'a host config with no credentials',
    kind: 'host',
    entry: 'config.yaml',
    files: { 'config.yaml': host('github:\n  org: acme\nrunner: {root: /opt/r, user: runner}\n') },
    expect: ['config.yaml:2:3: github: expected exactly one of "token", "app", got none'],
  },
  {
    name: 'a host config whose token names both a file and a variable, the file relative',
    kind: 'host',
    entry: 'config.yaml',
    files: {
      'config.yaml': host('github:\n  org: acme\n  token: {file: token.txt, env: GH_TOKEN}\nrunner: {root: /opt/r, user: runner}\n'),
    },
    expect: [
      'config.yaml:3:10: github.token: expected exactly one of "file", "env", got "file" and "env"',
      'config.yaml:3:17: github.token.file: expected an absolute path, got "token.txt" (relative)',
    ],
  },
  {
    name: 'a host config whose app lacks its installation',
    kind: 'host',
    entry: 'config.yaml',
    files: {
      'config.yaml': host(
        'github:\n  enterprise: acme\n  app: {appId: 12, privateKeyFile: /etc/rw/app.pem}\nrunner: {root: /opt/r, user: runner}\n',
      ),
    },
    expect: ['config.yaml:3:8: github.app: missing required key "installationId"'],
  },
  {
    name: 'a host config with a non-http URL, a bad listen port and an unknown recycle provider',
    kind: 'host',
    entry: 'config.yaml',
    files: {
      'config.yaml': host(
        'github:\n  url: ftp://ghes.example.com\n  org: acme\n  token: {env: GH_TOKEN}\nrunner: {root: /opt/r, user: runner, name: "{hostname}-{user}"}\nhealth: {listen: "0.0.0.0:70000"}\nrecycle: {provider: terminate}\ntimeouts: {drainGraceMs: -1, "Bad-Name": 3}\n',
      ),
    },
    expect: [
      'config.yaml:2:8: github.url: expected an http(s) URL, got "ftp://ghes.example.com"',
      "config.yaml:5:44: runner.name: expected a name of letters, digits, '.', '_', '-' and the placeholders {hostname}, {seq}, {random}, got \"{hostname}-{user}\"",
      'config.yaml:6:18: health.listen: expected host:port, got "0.0.0.0:70000" (port above 65535)',
      'config.yaml:7:21: recycle.provider: expected one of "none", "exit", "shutdown", "aws-asg", "gcp-mig", "azure-vmss", "kubernetes", "webhook", "command", got "terminate"',
      'config.yaml:8:11: timeouts: expected one of "listenerStopGraceMs", "updateFinishedWaitMs", "registerBackoffBaseMs", "registerBackoffMaxMs", "authFailureBackoffMs", "retryableRestartDelayMs", "retryableRestartLimit", "cleanupTimeoutMs", "drainGraceMs", "heartbeatMs", "recoveryDeleteTries", "registrationRecheckAfterMs", "lateRegistrationMs", "recycleWaitMs", "engineWaitMs", got "Bad-Name"',
      'config.yaml:8:26: timeouts.drainGraceMs: expected a number from 0 to 604800000, got -1',
    ],
  },
  {
    name: 'environment overrides with bad values, named by variable',
    kind: 'host',
    entry: 'config.yaml',
    files: { 'config.yaml': host('github:\n  org: acme\n  token: {env: GH_TOKEN}\nrunner: {root: /opt/r, user: runner}\n') },
    env: { RUNNER_WARDEN_RUNNER_MAXJOBS: 'many', RUNNER_WARDEN_STATEDIR: 'var/lib/rw', RUNNER_WARDEN_GITHUB_REGISTRATION: 'pat' },
    expect: [
      '$RUNNER_WARDEN_GITHUB_REGISTRATION: github.registration: expected one of "jit", "token", got "pat"',
      '$RUNNER_WARDEN_RUNNER_MAXJOBS: runner.maxJobs: expected an integer, got "many"',
      '$RUNNER_WARDEN_STATEDIR: stateDir: expected an absolute path, got "var/lib/rw" (relative)',
    ],
  },
];
