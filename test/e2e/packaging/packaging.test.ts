/**
 * The packaging (packaging/): shell scripts parse, install.sh lays out a staging root with the
 * right modes and is idempotent, the systemd unit verifies and matches the agent's timers, the
 * configs that ship (example, container, Packer, Kubernetes) validate with the agent's own
 * validator, and the Kubernetes manifests grant and wire exactly what the recycle provider needs.
 * Offline and fast (about two seconds): install.sh runs with --skip-build from a copy of this
 * checkout whose node_modules is a symlink, so nothing is downloaded or copied in bulk.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { validateCommand } from '../../../src/cli/validate.js';
import { loadHostConfig } from '../../../src/policy/load.js';
import { parseRecycleConfig, SERVICE_ACCOUNT_DIR } from '../../../src/recycle/config.js';
import { createRecycler } from '../../../src/recycle/chain.js';
import { DEFAULT_TIMEOUTS } from '../../../src/agent/timeouts.js';
import { CONTAINER_HOOKS_FILE } from '../../../scripts/build.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const PKG = path.join(REPO, 'packaging');
const INSTALL = path.join(PKG, 'install.sh');
const ENTRYPOINT = path.join(PKG, 'container', 'entrypoint.sh');
const PROVISION = path.join(PKG, 'packer', 'provision.sh');

/** What the agent may need, at most, between SIGTERM and its exit (systemd and Kubernetes must wait that long). */
const DRAIN_BUDGET_MS = DEFAULT_TIMEOUTS.drainGraceMs + DEFAULT_TIMEOUTS.listenerStopGraceMs + DEFAULT_TIMEOUTS.cleanupTimeoutMs;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; never rejects for a non-zero exit. */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Output collectors for validateCommand. */
function collect(): { io: { stdout: { write(s: string): boolean }; stderr: { write(s: string): boolean } }; out: () => string } {
  let text = '';
  const w = { write: (s: string) => ((text += s), true) };
  return { io: { stdout: w, stderr: w }, out: () => text };
}

async function validates(files: string[], what: string): Promise<void> {
  const c = collect();
  const code = await validateCommand(files, c.io);
  assert.equal(code, 0, `${what} does not validate:\n${c.out()}`);
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...(await walk(p)));
  }
  return out;
}

const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o7777;
const octal = (m: number): string => m.toString(8).padStart(4, '0');

let tmp: string;
/** A copy of this checkout (the parts install.sh takes), node_modules linked rather than copied. */
let source: string;
/** Environment for the scripts: their mktemp stays inside our temp root. */
let scriptEnv: NodeJS.ProcessEnv;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'rw-packaging-'));
  await mkdir(path.join(tmp, 'tmp'));
  scriptEnv = { ...process.env, TMPDIR: path.join(tmp, 'tmp') };
  source = path.join(tmp, 'src');
  await mkdir(source);
  const entries = [
    'package.json',
    'package-lock.json',
    'tsconfig.json',
    'tsconfig.build.json',
    'bin',
    'src',
    'policies',
    'packaging',
    'README.md',
    'ARCHITECTURE.md',
    'dist',
  ];
  const present = entries.filter((e) => existsSync(path.join(REPO, e)));
  const cp = await run('cp', ['-a', ...present.map((e) => path.join(REPO, e)), source]);
  assert.equal(cp.code, 0, `could not copy the checkout: ${cp.stderr}`);
  await symlink(path.join(REPO, 'node_modules'), path.join(source, 'node_modules'));
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function install(root: string, ...extra: string[]): Promise<Run> {
  return run('bash', [INSTALL, '--from', source, '--root', root, '--skip-build', ...extra], { env: scriptEnv });
}

// ---------------------------------------------------------------------------------------------

test('every shell script in packaging/ parses (bash -n; sh -n as well for the POSIX entrypoint)', async () => {
  const scripts = (await walk(PKG)).filter((p) => p.endsWith('.sh'));
  assert.ok(scripts.length >= 3, `expected install.sh, provision.sh and entrypoint.sh, found ${scripts.join(', ')}`);
  for (const s of scripts) {
    const r = await run('bash', ['-n', s]);
    assert.equal(r.code, 0, `${path.relative(REPO, s)} has a syntax error: ${r.stderr}`);
    const shebang = (await readFile(s, 'utf8')).split('\n', 1)[0];
    if (shebang === '#!/bin/sh') {
      const posix = await run('sh', ['-n', s]);
      assert.equal(posix.code, 0, `${path.relative(REPO, s)} is not POSIX sh: ${posix.stderr}`);
    }
    assert.ok(((await stat(s)).mode & 0o111) !== 0, `${path.relative(REPO, s)} is not executable`);
  }
});

test('install.sh --root --no-systemd lays out the code root-owned, the config root-only and the state traversable', async () => {
  const root = path.join(tmp, 'root-layout');
  const r = await install(root, '--no-systemd');
  assert.equal(r.code, 0, `install.sh failed: ${r.stderr}`);

  const prefix = path.join(root, 'opt/runner-warden');
  assert.equal(await mode(prefix), 0o755, 'the install directory should be 0755');
  assert.equal(await mode(path.join(prefix, 'bin/runner-warden.js')), 0o755, 'the command should be executable');
  for (const p of await walk(prefix)) {
    const st = await lstat(p);
    if (st.isSymbolicLink()) continue;
    assert.equal(st.uid, 0, `${path.relative(root, p)} is not root-owned: a job could change the agent's code`);
    assert.equal(st.mode & 0o022, 0, `${path.relative(root, p)} is group/other-writable (${octal(st.mode & 0o7777)})`);
  }
  for (const absent of ['test', 'bench', '.git']) {
    assert.ok(!existsSync(path.join(prefix, absent)), `${absent}/ should not be installed`);
  }
  assert.equal(await readlink(path.join(root, 'usr/local/bin/runner-warden')), '/opt/runner-warden/bin/runner-warden.js');

  assert.equal(await mode(path.join(root, 'etc/runner-warden')), 0o700, '/etc/runner-warden holds credentials: 0700');
  assert.equal(await mode(path.join(root, 'etc/runner-warden/config.yaml')), 0o600, 'the config should be 0600');
  assert.equal(
    await readFile(path.join(root, 'etc/runner-warden/config.yaml'), 'utf8'),
    await readFile(path.join(PKG, 'config.example.yaml'), 'utf8'),
    'a fresh install should get the example config',
  );
  const policies = (await readdir(path.join(root, 'etc/runner-warden/policies'))).sort();
  assert.deepEqual(policies, (await readdir(path.join(REPO, 'policies'))).filter((f) => f.endsWith('.yaml')).sort());
  assert.equal(await mode(path.join(root, 'var/lib/runner-warden')), 0o711, 'the state directory should be 0711');
  assert.ok(!existsSync(path.join(root, 'etc/systemd')), '--no-systemd should install no unit');

  const version = await run(process.execPath, [path.join(prefix, 'bin/runner-warden.js'), 'version']);
  const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout.trim(), pkg.version, `the installed command does not run: ${version.stderr}`);
});

test('running install.sh again replaces the code and keeps an edited config', async () => {
  const root = path.join(tmp, 'root-again');
  assert.equal((await install(root, '--no-systemd')).code, 0);
  const config = path.join(root, 'etc/runner-warden/config.yaml');
  await writeFile(config, 'edited: by the admin\n', { mode: 0o600 });
  await writeFile(path.join(root, 'opt/runner-warden/stray.js'), 'left by an old version\n');

  const again = await install(root, '--no-systemd');
  assert.equal(again.code, 0, `the second run failed: ${again.stderr}`);
  assert.equal(await readFile(config, 'utf8'), 'edited: by the admin\n', 'the admin config was overwritten');
  assert.ok(!existsSync(path.join(root, 'opt/runner-warden/stray.js')), 'the old tree was not replaced');
  assert.ok(!existsSync(path.join(root, 'opt/runner-warden.old')), 'the previous tree was left behind');
  assert.ok(!existsSync(path.join(root, 'opt/runner-warden.installing')), 'the staging tree was left behind');
  assert.equal(await mode(path.join(root, 'var/lib/runner-warden')), 0o711);
});

test('install.sh installs from a source tarball with one top directory (git archive --prefix)', async () => {
  const tarball = path.join(tmp, 'runner-warden.tar.gz');
  const tar = await run('tar', ['-czf', tarball, '-C', tmp, 'src']);
  assert.equal(tar.code, 0, tar.stderr);
  const root = path.join(tmp, 'root-tarball');
  const r = await run('bash', [INSTALL, '--from', tarball, '--root', root, '--skip-build', '--no-systemd'], { env: scriptEnv });
  assert.equal(r.code, 0, `install.sh from a tarball failed: ${r.stderr}`);
  assert.ok(existsSync(path.join(root, 'opt/runner-warden/bin/runner-warden.js')), 'the tarball was not unpacked into the prefix');
  assert.deepEqual(await readdir(path.join(tmp, 'tmp')), [], 'install.sh left its unpacked tarball behind');
});

test('install.sh refuses a system directory as prefix and a directory it did not create', async () => {
  const root = path.join(tmp, 'root-refuse');
  const system = await install(root, '--no-systemd', '--prefix', '/usr');
  assert.notEqual(system.code, 0, '--prefix /usr must be refused: the install replaces the prefix wholesale');

  const foreign = path.join(root, 'opt/someone-else');
  await mkdir(foreign, { recursive: true });
  await writeFile(path.join(foreign, 'precious'), 'keep me\n');
  const r = await install(root, '--no-systemd', '--prefix', '/opt/someone-else');
  assert.notEqual(r.code, 0, 'a non-empty directory without the install marker must not be replaced');
  assert.equal(await readFile(path.join(foreign, 'precious'), 'utf8'), 'keep me\n');

  const enableWithout = await install(root, '--no-systemd', '--enable');
  assert.notEqual(enableWithout.code, 0, '--enable without the unit is a usage error');
});

test('the installed unit has the prefix substituted, is enabled offline with --enable, and passes systemd-analyze verify', async (t) => {
  const root = path.join(tmp, 'root-unit');
  const r = await install(root, '--prefix', '/opt/rw-test', '--enable');
  assert.equal(r.code, 0, `install.sh failed: ${r.stderr}`);
  const unitPath = path.join(root, 'etc/systemd/system/runner-warden.service');
  assert.equal(await mode(unitPath), 0o644);
  const unit = await readFile(unitPath, 'utf8');
  assert.match(unit, /^ExecStart=\/opt\/rw-test\/bin\/runner-warden\.js run --config \/etc\/runner-warden\/config\.yaml$/m);
  assert.ok(!unit.includes('/opt/runner-warden'), 'the default prefix was left in the unit');
  assert.equal(
    await readlink(path.join(root, 'etc/systemd/system/multi-user.target.wants/runner-warden.service')),
    '/etc/systemd/system/runner-warden.service',
    '--enable under --root should make the symlink systemctl enable makes',
  );

  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
  if (!analyze) {
    t.skip('systemd-analyze is not installed');
    return;
  }
  // verify checks that ExecStart exists: point it at the staged copy (same unit otherwise).
  const copy = path.join(tmp, 'runner-warden.service');
  await writeFile(copy, unit.replaceAll('/opt/rw-test', path.join(root, 'opt/rw-test')));
  // --man=no: the unit's man:runner-warden(1) is installed by the packages, not on this host
  // (test/e2e/release checks the page is in the .deb and verify passes there with it).
  const v = await run(analyze, ['verify', '--man=no', copy]);
  assert.equal(v.code, 0, `systemd-analyze verify failed:\n${v.stderr}`);
  assert.equal(v.stderr.trim(), '', `systemd-analyze verify warned:\n${v.stderr}`);
});

test('the unit signals the agent only, waits out a full drain, and never restarts a configuration error', async () => {
  const text = await readFile(path.join(PKG, 'systemd/runner-warden.service'), 'utf8');
  const settings = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) settings.set(m[1] as string, [...(settings.get(m[1] as string) ?? []), m[2] as string]);
  }
  const one = (k: string): string => {
    const v = settings.get(k);
    assert.ok(v && v.length === 1, `${k}= should be set exactly once`);
    return v[0] as string;
  };
  assert.equal(one('KillMode'), 'process', 'systemd must SIGTERM the agent alone; it stops the listener itself');
  assert.equal(one('Restart'), 'on-failure');
  assert.equal(one('RestartPreventExitStatus').split(/\s+/)[0], '78', 'exit 78 (bad config) must not restart');
  assert.equal(one('User'), 'root');
  const after = one('After').split(/\s+/);
  for (const dep of ['network-online.target', 'docker.service']) assert.ok(after.includes(dep), `After= lacks ${dep}`);
  const stop = /^(\d+)min$/.exec(one('TimeoutStopSec'));
  assert.ok(stop, 'TimeoutStopSec should be in minutes');
  assert.ok(
    Number(stop[1]) * 60_000 > DRAIN_BUDGET_MS,
    `TimeoutStopSec ${one('TimeoutStopSec')} is shorter than a full drain (${DRAIN_BUDGET_MS / 60_000} min)`,
  );
  // Options that give the agent a private mount namespace, or that every job would inherit.
  for (const forbidden of [
    'ProtectSystem',
    'ProtectHome',
    'PrivateTmp',
    'PrivateDevices',
    'ProtectControlGroups',
    'NoNewPrivileges',
    'CapabilityBoundingSet',
    'SystemCallFilter',
    'RestrictNamespaces',
    'MemoryDenyWriteExecute',
    'Delegate',
  ]) {
    assert.ok(!settings.has(forbidden), `${forbidden}= breaks the cleanup or is inherited by every job (see the unit's comments)`);
  }
});

test('the example config, the example policies and the container config validate, and the container recycles by exit', async () => {
  const policies = (await readdir(path.join(REPO, 'policies')))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => path.join(REPO, 'policies', f));
  await validates([path.join(PKG, 'config.example.yaml'), path.join(PKG, 'container/config.yaml'), ...policies], 'the shipped configs');
  const container = await loadHostConfig(path.join(PKG, 'container/config.yaml'), {});
  assert.deepEqual(parseRecycleConfig(container.recycle), { provider: 'exit', exitCode: 0 });
  const example = await loadHostConfig(path.join(PKG, 'config.example.yaml'), {});
  assert.equal(example.health?.listen, '127.0.0.1:9469', 'the VM example should keep the health endpoint local');
});

test('the Packer provisioning script writes a host config that validates, for each recycle provider', async () => {
  const base = {
    ...scriptEnv,
    RUNNER_VERSION: '2.336.0',
    RUNNER_SHA256: 'a'.repeat(64),
    RUNNER_WARDEN_TARBALL: '/nonexistent.tar.gz',
    GITHUB_URL: 'https://ghes.example.com',
    GITHUB_ORG: 'acme',
    RUNNER_LABELS: 'self-hosted,linux,x64,null',
    TEAM: 'payments',
  };
  for (const provider of ['shutdown', 'aws-asg']) {
    const r = await run('bash', [PROVISION, '--print-config'], { env: { ...base, RECYCLE_PROVIDER: provider } });
    assert.equal(r.code, 0, `provision.sh --print-config failed for ${provider}: ${r.stderr}`);
    const file = path.join(tmp, `packer-${provider}.yaml`);
    await writeFile(file, r.stdout);
    await validates([file], `the Packer config for ${provider}`);
    const config = await loadHostConfig(file, {});
    assert.deepEqual(config.runner.labels, ['self-hosted', 'linux', 'x64', 'null'], 'labels must stay strings');
    assert.equal(config.interruptions?.imds, true, 'EC2 hosts should drain on spot and lifecycle notices');
    const chain = parseRecycleConfig(config.recycle);
    assert.equal(chain.provider, provider);
    const shutdown = provider === 'shutdown' ? chain : chain.fallback?.[0];
    assert.deepEqual(shutdown, { provider: 'shutdown', command: ['systemctl', 'poweroff'] }, 'poweroff should end the chain');
  }
  const bad = await run('bash', [PROVISION, '--print-config'], { env: { ...base, RECYCLE_PROVIDER: 'shutdown', RUNNER_LABELS: 'a,"b' } });
  assert.notEqual(bad.code, 0, 'a label that could break the YAML must be refused');
  const hooked = await run('bash', [PROVISION, '--print-config'], {
    env: { ...base, RECYCLE_PROVIDER: 'aws-asg', LIFECYCLE_HOOK_NAME: 'runner-drain' },
  });
  assert.equal(hooked.code, 0, hooked.stderr);
  const hookFile = path.join(tmp, 'packer-hook.yaml');
  await writeFile(hookFile, hooked.stdout);
  await validates([hookFile], 'the Packer config with a lifecycle hook');
  const hookChain = parseRecycleConfig((await loadHostConfig(hookFile, {})).recycle);
  assert.equal(hookChain.provider === 'aws-asg' ? hookChain.lifecycleHookName : undefined, 'runner-drain');
  for (const env of [
    { RECYCLE_PROVIDER: 'shutdown', LIFECYCLE_HOOK_NAME: 'runner-drain' },
    { RECYCLE_PROVIDER: 'aws-asg', LIFECYCLE_HOOK_NAME: 'bad name: x' },
  ]) {
    const refused = await run('bash', [PROVISION, '--print-config'], { env: { ...base, ...env } });
    assert.notEqual(refused.code, 0, `provision.sh must refuse ${JSON.stringify(env)}`);
    assert.match(refused.stderr, /LIFECYCLE_HOOK_NAME/);
  }
});

test('the Packer build validates, records the baseline and enables the unit without starting anything', async () => {
  const script = await readFile(PROVISION, 'utf8');
  const template = await readFile(path.join(PKG, 'packer/runner-warden.pkr.hcl'), 'utf8');
  assert.match(template, /provision\.sh/, 'the template should run provision.sh');
  assert.match(
    template,
    /shutdown behaviou?r|InstanceInitiatedShutdownBehavior/i,
    'the template should say how the shutdown provider must be launched',
  );
  assert.match(template, /lifecycle hook/i, 'the template should describe the aws-asg lifecycle hook');
  assert.match(script, /runner-warden validate /);
  assert.match(script, /runner-warden baseline /);
  assert.match(script, /systemctl enable [^\n]*runner-warden\.service/);
  assert.doesNotMatch(
    script,
    /systemctl (start|restart)|enable --now|--enable/,
    'an image build must never start the agent (it would register a runner)',
  );
});

// ---------------------------------------------------------------------------------------------
// Kubernetes

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [k: string]: unknown;
}

async function manifests(): Promise<K8sObject[]> {
  const dir = path.join(PKG, 'kubernetes');
  const out: K8sObject[] = [];
  for (const f of (await readdir(dir)).filter((n) => n.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(await readFile(path.join(dir, f), 'utf8'))) {
      assert.deepEqual(doc.errors, [], `${f} does not parse`);
      const value = doc.toJS() as K8sObject | null;
      // kustomization.yaml configures kubectl, it is not an object of the cluster.
      if (value !== null && value.kind !== 'Kustomization') out.push(value);
    }
  }
  return out;
}

function find<T = K8sObject>(objs: K8sObject[], kind: string): T {
  const o = objs.filter((x) => x.kind === kind);
  assert.equal(o.length, 1, `expected one ${kind}, found ${o.length}`);
  return o[0] as T;
}

test('the Kubernetes manifests parse, and the Role grants nothing but deleting pods', async () => {
  const objs = await manifests();
  const role = find<K8sObject & { rules: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] }>(
    objs,
    'Role',
  );
  assert.ok(role.rules.length > 0);
  for (const rule of role.rules) {
    assert.deepEqual(rule.apiGroups, [''], 'only the core API group');
    assert.deepEqual(rule.resources, ['pods'], 'only pods (no subresources, no secrets)');
    for (const verb of rule.verbs) assert.ok(['delete', 'get'].includes(verb), `the Role grants ${verb} on pods`);
  }
  assert.ok(
    role.rules.some((r) => r.verbs.includes('delete')),
    'the kubernetes provider needs delete',
  );
  assert.ok(!objs.some((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding'), 'nothing cluster-wide');

  const sa = find<K8sObject & { automountServiceAccountToken?: boolean }>(objs, 'ServiceAccount');
  assert.equal(sa.automountServiceAccountToken, false);
  const binding = find<
    K8sObject & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace?: string }[] }
  >(objs, 'RoleBinding');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: role.metadata.namespace }]);
  for (const o of objs.filter((x) => x.kind !== 'Namespace')) {
    assert.equal(o.metadata.namespace, role.metadata.namespace, `${o.kind} ${o.metadata.name} is outside the runners' namespace`);
  }
});

interface Container {
  env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  volumeMounts: { name: string; mountPath: string }[];
  securityContext: { allowPrivilegeEscalation?: boolean };
}
interface Volume {
  name: string;
  configMap?: { name: string; items: { key: string; path: string }[]; defaultMode?: number };
  secret?: { defaultMode?: number };
  projected?: { defaultMode?: number; sources: Record<string, unknown>[] };
}
interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken?: boolean;
  terminationGracePeriodSeconds: number;
  securityContext?: { fsGroup?: number };
  containers: Container[];
  volumes: Volume[];
}

test('the Deployment passes its pod name and namespace, probes /healthz and /readyz, and keeps the token from the job', async () => {
  const objs = await manifests();
  const dep = find<K8sObject & { spec: { template: { spec: PodSpec } } }>(objs, 'Deployment');
  const pod = dep.spec.template.spec;
  const c = pod.containers[0] as Container;
  const env = new Map(c.env.map((e) => [e.name, e]));
  assert.equal(env.get('POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name');
  assert.equal(env.get('POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');

  const health = c.ports.find((p) => p.name === 'health');
  assert.equal(health?.containerPort, 9469);
  assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'health' });
  assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'health' });

  assert.equal(pod.serviceAccountName, find(objs, 'ServiceAccount').metadata.name);
  assert.equal(pod.automountServiceAccountToken, false, 'the default token mount is 0644: the job could read it');
  assert.equal(pod.securityContext?.fsGroup, undefined, 'fsGroup would make the token group-readable');
  const mounts = new Map(c.volumeMounts.map((m) => [m.name, m.mountPath]));
  const volumes = new Map(pod.volumes.map((v) => [v.name, v]));
  const saVolume = [...volumes.values()].find((v) => mounts.get(v.name) === SERVICE_ACCOUNT_DIR);
  assert.ok(saVolume?.projected, `a projected service-account volume should be mounted at ${SERVICE_ACCOUNT_DIR}`);
  assert.equal(saVolume.projected.defaultMode, 0o400, 'the service-account token must be root-only');
  assert.ok(saVolume.projected.sources.some((s) => 'serviceAccountToken' in s));
  for (const v of volumes.values()) {
    if (v.secret) assert.equal(v.secret.defaultMode, 0o400, `secret volume ${v.name} must be root-only`);
  }
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.ok(pod.terminationGracePeriodSeconds * 1000 > DRAIN_BUDGET_MS, 'the pod must get the time of a full drain on SIGTERM');

  // The template the entrypoint renders is the ConfigMap's config.yaml, mounted where the env says.
  const template = env.get('RUNNER_WARDEN_CONFIG_TEMPLATE')?.value;
  assert.ok(template, 'RUNNER_WARDEN_CONFIG_TEMPLATE should name the ConfigMap config');
  const tplVolume = [...volumes.values()].find((v) => mounts.get(v.name) === path.dirname(template));
  assert.deepEqual(tplVolume?.configMap?.items, [{ key: 'config.yaml', path: path.basename(template) }]);
  const policyVolume = [...volumes.values()].find((v) => mounts.get(v.name) === '/etc/runner-warden/policies');
  assert.ok(policyVolume?.configMap, 'the team policy should come from the ConfigMap');
});

test("the ConfigMap's config renders through the entrypoint, validates, listens on 0.0.0.0, and builds the kubernetes recycle chain", async () => {
  const objs = await manifests();
  const cm = find<K8sObject & { data: Record<string, string> }>(objs, 'ConfigMap');
  const dir = path.join(tmp, 'k8s');
  await mkdir(path.join(dir, 'policies'), { recursive: true });
  const tpl = path.join(dir, 'config.template.yaml');
  await writeFile(tpl, cm.data['config.yaml'] as string);
  const policyKeys = Object.keys(cm.data).filter((k) => k !== 'config.yaml');
  for (const k of policyKeys) await writeFile(path.join(dir, 'policies', k), cm.data[k] as string);

  const podEnv = {
    ...scriptEnv,
    POD_NAME: 'runner-warden-7c9d8-x2kqp',
    POD_NAMESPACE: 'github-runners',
    KUBERNETES_SERVICE_HOST: '10.96.0.1',
    KUBERNETES_SERVICE_PORT: '443',
  };
  const out = path.join(dir, 'config.yaml');
  const r = await run('sh', [ENTRYPOINT, '--render-config', tpl, out], { env: podEnv });
  assert.equal(r.code, 0, `the entrypoint did not render the template: ${r.stderr}`);
  assert.equal(await mode(out), 0o600, 'the rendered config should be root-only');

  await validates([out, ...policyKeys.map((k) => path.join(dir, 'policies', k))], "the ConfigMap's config and policy");
  const config = await loadHostConfig(out, {});
  assert.match(config.health?.listen ?? '', /^0\.0\.0\.0:9469$/, 'kubelet probes need health.listen on 0.0.0.0');
  assert.ok(policyKeys.includes(`${config.team}.yaml`), `the ConfigMap should hold the policy of team ${config.team}`);
  const chain = parseRecycleConfig(config.recycle);
  assert.equal(chain.provider, 'kubernetes');
  assert.equal(chain.provider === 'kubernetes' ? chain.podName : '', 'runner-warden-7c9d8-x2kqp');
  // createRecycler refuses a kubernetes provider without a pod name or API address.
  assert.deepEqual(createRecycler(config.recycle).providers, ['kubernetes', 'exit']);
  assert.ok(!(await readFile(out, 'utf8')).includes('${'), 'a placeholder was left unrendered');

  const missing = await run('sh', [ENTRYPOINT, '--render-config', tpl, out], { env: { ...podEnv, POD_NAME: '' } });
  assert.equal(missing.code, 78, 'an unset POD_NAME must stop the container as a configuration error');
  const hostile = await run('sh', [ENTRYPOINT, '--render-config', tpl, out], {
    env: { ...podEnv, POD_NAME: 'x"\nrecycle: {provider: none}' },
  });
  assert.equal(hostile.code, 78, 'a value that could change the YAML must be refused');
});

test('kubectl kustomize renders the manifests offline', async (t) => {
  const kubectl = ['/usr/bin/kubectl', '/usr/local/bin/kubectl'].find((p) => existsSync(p));
  if (!kubectl) {
    t.skip('kubectl is not installed');
    return;
  }
  const r = await run(kubectl, ['kustomize', path.join(PKG, 'kubernetes')]);
  assert.equal(r.code, 0, `kubectl kustomize failed: ${r.stderr}`);
  const kinds = parseAllDocuments(r.stdout)
    .map((d) => (d.toJS() as K8sObject).kind)
    .sort();
  assert.deepEqual(kinds, ['ConfigMap', 'Deployment', 'Namespace', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'ServiceAccount']);
});

// ---------------------------------------------------------------------------------------------
// Container image

test('the Dockerfile builds with install.sh, runs the agent under tini and ships the container config and entrypoint', async () => {
  const text = await readFile(path.join(PKG, 'container/Dockerfile'), 'utf8');
  const lines = text.split('\n').filter((l) => !l.trimStart().startsWith('#'));
  const body = lines.join('\n');
  assert.match(
    body,
    /packaging\/install\.sh --from "\/src\/\$RELEASE_TARBALL" --root \/staging --no-systemd/,
    'the image should be built by the same install script, from the release tarball',
  );
  // The release tarball is the only source: no checkout build (npm ci needs the registry).
  assert.match(body, /\[ -n "\$RELEASE_TARBALL" \] \|\| \{ echo "--build-arg RELEASE_TARBALL=[^"]*is required[^"]*" >&2; exit 1; \}/);
  assert.doesNotMatch(body, /install\.sh --from \/src /, 'no build from the checkout');
  assert.doesNotMatch(body, /\bnpm (ci|install|run build)\b/, 'no npm install or build in the image build');
  assert.match(body, /apt-get install[^\n]*\btini\b/, 'tini should come from Debian');
  const entry = /^ENTRYPOINT (.*)$/m.exec(body);
  assert.ok(entry, 'no ENTRYPOINT');
  const argv = JSON.parse(entry[1] as string) as string[];
  assert.deepEqual(argv.slice(0, 2), ['/usr/bin/tini', '--'], 'tini must be PID 1 and signal the agent alone (no -g)');
  assert.equal(argv[2], '/usr/local/bin/runner-warden-entrypoint');
  assert.match(body, /COPY packaging\/container\/entrypoint\.sh \/usr\/local\/bin\/runner-warden-entrypoint/);
  assert.match(body, /COPY packaging\/container\/config\.yaml \/etc\/runner-warden\/config\.yaml/);
  assert.match(body, /runner-warden validate /);
  assert.match(body, /runner-warden baseline /);
  assert.match(body, /sha256sum -c/, 'the runner download must be checked');
  // Container jobs inside the container: the runner's .env names the bundled hooks the build
  // writes (scripts/build.ts), under the prefix install.sh installs to, before the baseline.
  const hooks = /ACTIONS_RUNNER_CONTAINER_HOOKS=(\S+)" >> \/opt\/actions-runner\/\.env/.exec(body);
  assert.ok(hooks, "the image must configure container hooks in the runner's .env");
  assert.equal(hooks[1], `/opt/runner-warden/dist/${CONTAINER_HOOKS_FILE}`, 'the hooks path must be the installed bundle');
  assert.match(
    await readFile(INSTALL, 'utf8'),
    /^PREFIX=\$\{PREFIX:-\/opt\/runner-warden\}|PREFIX=\/opt\/runner-warden/m,
    'install.sh installs under /opt/runner-warden',
  );
  assert.ok(
    body.indexOf('ACTIONS_RUNNER_CONTAINER_HOOKS') < body.indexOf('runner-warden baseline'),
    'the .env must be in place before the baseline records the runner installation',
  );
  // Every path COPY takes from the build context exists.
  for (const m of body.matchAll(/^COPY (?!--from)(.+)$/gm)) {
    const parts = (m[1] as string).trim().split(/\s+/);
    for (const src of parts.slice(0, -1)) {
      assert.ok(existsSync(path.join(REPO, src)), `COPY ${src}: no such file in the repository`);
    }
  }
  const ignore = await readFile(path.join(PKG, 'container/Dockerfile.dockerignore'), 'utf8');
  for (const e of ['node_modules', '.git']) assert.ok(ignore.split('\n').includes(e), `the build context should exclude ${e}`);
  assert.equal(parseYaml(await readFile(path.join(PKG, 'container/config.yaml'), 'utf8')).recycle.provider, 'exit');
});
