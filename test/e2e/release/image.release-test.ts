/**
 * The container image built for real, offline: `npm run test:release` (not part of `npm test`:
 * debootstrap alone takes minutes on two cores).
 *
 * The base is made here, as an image pipeline with no registry access would make it: a minimal
 * bookworm root (debootstrap, the only step that uses Debian's mirror) with the packages the
 * image needs and the Node the .deb ships (the newest LTS, packaging/node.json) in
 * /usr/local/bin, as the node:*-bookworm-slim images have it; `docker import`, then pushed to a
 * registry on loopback so that it has a digest. packaging/container/Dockerfile is built from
 * the release tarball (`RELEASE_TARBALL`, no npm in the build) on that base given by digest, with
 * the runner simulator served on loopback in place of the actions/runner download. Then:
 * `--version` and `validate` in the image, its OCI labels, a base named by tag and a build without
 * the tarball refused, the agent run by `docker run` against the fake GitHub API (the entry point
 * takes the container's integrity baseline at its first start, the listener polls, /healthz and
 * /readyz answer, `docker stop` drains it: exit 0 within the grace, its runner deregistered; the
 * same container started again and stopped mid-job lets the job finish, cleans and exits 0), and
 * the image's files: the bundle only (no src/, node_modules, tsx or esbuild),
 * the integrity baseline written with nothing unreadable.
 *
 * The dockerd is the test's own (data root, exec root, socket and pid file under its temporary
 * directory; no bridge, no iptables, no forwarding, so the host's network is not touched), and is
 * stopped and removed after, with its registry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { release } from '../../../scripts/release.js';
import { installSimulatedRunner } from '../../../src/sim/runner/install.js';
import { startFakeGitHub, type FakeGitHub } from '../../../src/sim/github/server.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MIRROR = 'http://deb.debian.org/debian';
/** debootstrap, the release build and an image build are minutes each; over 10 minutes each on a two-core machine loaded to 30. */
const STEP_TIMEOUT_MS = 30 * 60_000;
/** dockerd and the registry answer within a second or two when idle; a loaded machine is slower. */
const DAEMON_READY_MS = 60_000;
/** dockerd drains and unmounts on SIGTERM; past this it is killed. */
const DAEMON_STOP_MS = 30_000;
/** The base's Node needs libatomic1 (as the node images have it); the rest is what the Dockerfile's runtime stage installs from Debian, present so that no apt index is needed. */
const BASE_PACKAGES = ['libatomic1', 'tini', 'libcap2-bin', 'e2fsprogs', 'procps', 'ca-certificates', 'curl', 'git', 'jq'];
const DOCKER = '/usr/bin/docker';
/** The agent in the image: recovery, cleanup, the integrity check and registration before its listener polls; seconds idle, minutes loaded. */
const AGENT_SESSION_MS = 10 * 60_000;
/** `docker stop -t`: an idle agent drains (deregisters, stops) in seconds; past this Docker would SIGKILL it (exit 137). */
const STOP_GRACE_S = 180;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: STEP_TIMEOUT_MS, ...opts }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + DAEMON_READY_MS;
  while (Date.now() < end) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} not ready within ${DAEMON_READY_MS / 1000} s`);
}

async function stopDaemon(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), DAEMON_STOP_MS);
  await exited;
  clearTimeout(t);
}

/** A free loopback port (the registry takes its address from its config file). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** The traces a dockerd leaves on the host when let (its bridge, its iptables chains, forwarding). */
async function hostTraces(): Promise<string> {
  const bridge = (await sh('ip', ['link', 'show', 'docker0'])).code === 0 ? 'docker0 present' : 'no docker0';
  const chains = (await sh('iptables', ['-S'])).stdout
    .split('\n')
    .filter((l) => /DOCKER/.test(l))
    .join('\n');
  const fwd = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
  return `${bridge}; ip_forward ${fwd}; iptables DOCKER rules: ${chains || 'none'}`;
}

/** Resolves with the first event of `name` the fake emits, or rejects after `ms`. */
function fakeEvent(fake: FakeGitHub, name: 'session-created' | 'runner-deleted', ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${name} on the fake API within ${ms / 1000} s`)), ms);
    fake.events.once(name, () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** The status of GET url (0: no answer). */
async function statusOf(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Removes a directory the test's dockerd made, when it holds nothing but empty directories (another dockerd's stays). */
async function removeIfEmpty(dir: string): Promise<void> {
  await sh('find', [dir, '-depth', '-type', 'd', '-empty', '-delete']);
}

test('the image builds offline on a base by digest, holds the bundle only, drains on docker stop', { timeout: 90 * 60_000 }, async () => {
  for (const tool of [
    '/usr/sbin/debootstrap',
    '/usr/sbin/dockerd',
    DOCKER,
    '/usr/bin/docker-registry',
    '/usr/bin/unshare',
    '/usr/bin/dpkg-deb',
  ]) {
    assert.ok(existsSync(tool), `${tool} is missing: apt-get install --no-install-recommends debootstrap docker.io docker-registry`);
  }
  const lab = await mkdtemp(path.join(os.tmpdir(), 'rw-image-'));
  await chmod(lab, 0o755);
  const runDockerExisted = existsSync('/run/docker');
  const runContainerdExisted = existsSync('/run/containerd');
  const tracesBefore = await hostTraces();
  let dockerd: ChildProcess | undefined;
  let registry: ChildProcess | undefined;
  let runnerServer: Server | undefined;
  let fake: FakeGitHub | undefined;
  let agentContainer: string | undefined;
  const sock = path.join(lab, 'd', 'docker.sock');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    DOCKER_HOST: `unix://${sock}`,
    DOCKER_CONFIG: path.join(lab, 'docker-config'),
    // The classic builder: BuildKit's `# syntax=` line would fetch its frontend image.
    DOCKER_BUILDKIT: '0',
  };
  const docker = (...args: string[]): Promise<Run> => sh(DOCKER, args, { env, cwd: lab });
  try {
    const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    const rel = await release(path.join(lab, 'out'));
    assert.ok(rel.deb);
    // The Node the .deb ships: the base's node, where the node images have theirs.
    const debTree = path.join(lab, 'deb');
    const x = await sh('dpkg-deb', ['-x', rel.deb, debTree]);
    assert.equal(x.code, 0, x.stderr);

    const root = path.join(lab, 'root');
    const boot = await sh('unshare', [
      '--mount',
      '--propagation',
      'private',
      'debootstrap',
      '--variant=minbase',
      `--include=${BASE_PACKAGES.join(',')}`,
      'bookworm',
      root,
      MIRROR,
    ]);
    assert.equal(boot.code, 0, `debootstrap:\n${boot.stdout.slice(-2000)}${boot.stderr.slice(-2000)}`);
    await copyFile(path.join(debTree, 'usr/lib/runner-warden/node/bin/node'), path.join(root, 'usr/local/bin/node'));
    await chmod(path.join(root, 'usr/local/bin/node'), 0o755);

    // The test's own dockerd: nothing on the host's network, state under the lab.
    const d = path.join(lab, 'd');
    await mkdir(d, { recursive: true });
    dockerd = spawn(
      '/usr/sbin/dockerd',
      [
        '--data-root',
        path.join(d, 'data'),
        '--exec-root',
        path.join(d, 'exec'),
        '-H',
        `unix://${sock}`,
        '--pidfile',
        path.join(d, 'docker.pid'),
        '--bridge=none',
        '--iptables=false',
        '--ip6tables=false',
        '--ip-forward=false',
        '--ip-masq=false',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env },
    );
    let dockerdLog = '';
    dockerd.stderr?.on('data', (b: Buffer) => (dockerdLog = (dockerdLog + b.toString()).slice(-8000)));
    await until('dockerd', async () => (await docker('version', '--format', '{{.Server.Version}}')).code === 0).catch((e: Error) => {
      throw new Error(`${e.message}\n${dockerdLog}`);
    });

    const regPort = await freePort();
    const reg = path.join(lab, 'registry');
    await mkdir(reg);
    await writeFile(
      path.join(reg, 'config.yml'),
      `version: 0.1\nlog: { level: warn }\nstorage: { filesystem: { rootdirectory: ${path.join(reg, 'data')} } }\nhttp: { addr: 127.0.0.1:${regPort} }\n`,
    );
    registry = spawn('/usr/bin/docker-registry', ['serve', path.join(reg, 'config.yml')], { stdio: 'ignore' });
    await until('registry', async () => {
      try {
        return (await fetch(`http://127.0.0.1:${regPort}/v2/`)).ok;
      } catch {
        return false;
      }
    });

    // The base: the root as one layer (less documentation and package caches), pushed to get a digest.
    const baseRef = `127.0.0.1:${regPort}/rwtest/node-base:bookworm`;
    const imp = await sh(
      'bash',
      [
        '-o',
        'pipefail',
        '-c',
        'tar -C "$1" --exclude="./proc/*" --exclude="./sys/*" --exclude="./dev/*" --exclude="./usr/share/doc/*" --exclude="./usr/share/man/*" --exclude="./usr/share/locale/*" --exclude="./var/cache/apt/archives/*.deb" --exclude="./var/lib/apt/lists/*" -c . | "$2" import -c "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" -c \'CMD ["node"]\' - "$3"',
        'import',
        root,
        DOCKER,
        baseRef,
      ],
      { env },
    );
    assert.equal(imp.code, 0, `docker import:\n${imp.stderr}`);
    const push = await docker('push', baseRef);
    assert.equal(push.code, 0, `docker push:\n${push.stdout}${push.stderr}`);
    const digest = /digest: (sha256:[0-9a-f]{64})/.exec(push.stdout)?.[1];
    assert.ok(digest, `no digest in the push output:\n${push.stdout}`);
    const baseByDigest = `127.0.0.1:${regPort}/rwtest/node-base@${digest}`;

    // The runner the image downloads: the simulator, served on loopback (the build runs on the
    // host's network namespace), with the dependency script the real tarball carries.
    const runnerRoot = path.join(lab, 'runner');
    await installSimulatedRunner(runnerRoot);
    // Its binaries name where it was installed and the node that installed it: in the image it is
    // /opt/actions-runner, and node is the base's /usr/local/bin/node.
    for (const f of ['bin/Runner.Listener', 'bin/Runner.Worker']) {
      const text = await readFile(path.join(runnerRoot, f), 'utf8');
      await writeFile(
        path.join(runnerRoot, f),
        text.split(runnerRoot).join('/opt/actions-runner').split(process.execPath).join('/usr/local/bin/node'),
      );
    }
    await rm(path.join(runnerRoot, 'externals/node20/bin/node'));
    await symlink('/usr/local/bin/node', path.join(runnerRoot, 'externals/node20/bin/node'));
    await writeFile(path.join(runnerRoot, 'bin/installdependencies.sh'), '#!/bin/sh\necho "simulated runner: nothing to install"\n', {
      mode: 0o755,
    });
    const runnerTgz = path.join(lab, 'actions-runner.tar.gz');
    const tar = await sh('tar', ['-C', runnerRoot, '-czf', runnerTgz, '.']);
    assert.equal(tar.code, 0, tar.stderr);
    const runnerSha = createHash('sha256')
      .update(await readFile(runnerTgz))
      .digest('hex');
    const fetched: string[] = [];
    runnerServer = createServer((req, res) => {
      fetched.push(req.url ?? '');
      if (req.url !== '/actions-runner.tar.gz') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/gzip' });
      createReadStream(runnerTgz).pipe(res);
    });
    await new Promise<void>((r) => runnerServer?.listen(0, '127.0.0.1', r));
    const runnerUrl = `http://127.0.0.1:${(runnerServer.address() as AddressInfo).port}/actions-runner.tar.gz`;

    // The build context as a checkout has it after `npm run release`: packaging/ and the tarball.
    const ctx = path.join(lab, 'ctx');
    await cp(path.join(REPO, 'packaging'), path.join(ctx, 'packaging'), { recursive: true });
    await mkdir(path.join(ctx, 'release'));
    await copyFile(rel.tarball, path.join(ctx, 'release', path.basename(rel.tarball)));
    const dockerfile = path.join(REPO, 'packaging/container/Dockerfile');
    const buildArgs = (base: string, tarball = `release/${path.basename(rel.tarball)}`): string[] => [
      'build',
      '-f',
      dockerfile,
      '--network',
      'host',
      '--build-arg',
      `NODE_IMAGE=${base}`,
      '--build-arg',
      `RELEASE_TARBALL=${tarball}`,
      '--build-arg',
      `RUNNER_URL=${runnerUrl}`,
      '--build-arg',
      `RUNNER_SHA256=${runnerSha}`,
      '--build-arg',
      `VERSION=${pkg.version}`,
      '--build-arg',
      'REVISION=0123456789abcdef0123456789abcdef01234567',
      '--build-arg',
      'CREATED=2026-01-02T03:04:05Z',
    ];

    const byTag = await docker(...buildArgs(baseRef), '-t', 'rwtest/runner-warden:tag', ctx);
    assert.notEqual(byTag.code, 0, 'a base named by tag must be refused');
    assert.match(byTag.stdout + byTag.stderr, /NODE_IMAGE must name the base by digest/);

    // The release tarball is the only source: without it the build stops before installing anything.
    const noTarball = await docker(...buildArgs(baseByDigest, ''), '-t', 'rwtest/runner-warden:none', ctx);
    assert.notEqual(noTarball.code, 0, 'a build without RELEASE_TARBALL must be refused');
    assert.match(noTarball.stdout + noTarball.stderr, /RELEASE_TARBALL=release\/runner-warden-<version>\.tar\.gz is required/);

    const build = await docker(...buildArgs(baseByDigest), '-t', 'rwtest/runner-warden:test', ctx);
    assert.equal(build.code, 0, `docker build:\n${build.stdout.slice(-6000)}${build.stderr.slice(-3000)}`);
    assert.ok(fetched.includes('/actions-runner.tar.gz'), 'the build did not fetch the runner from RUNNER_URL');
    // The build's own checks ran: validate and the baseline, with every surface readable.
    assert.match(build.stdout, /\/etc\/runner-warden\/config\.yaml: ok/);
    assert.match(build.stdout + build.stderr, /system baseline \/var\/lib\/runner-warden\/integrity\/baseline\.json/);
    assert.doesNotMatch(build.stdout + build.stderr, /unreadable/, 'a baseline surface was unreadable in the image');

    const version = await docker('run', '--rm', '--network', 'none', 'rwtest/runner-warden:test', '--version');
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout.trim(), pkg.version);
    const validate = await docker(
      'run',
      '--rm',
      '--network',
      'none',
      'rwtest/runner-warden:test',
      'validate',
      '/etc/runner-warden/config.yaml',
      '/etc/runner-warden/policies/default.yaml',
    );
    assert.equal(validate.code, 0, `validate in the image:\n${validate.stdout}${validate.stderr}`);
    assert.match(validate.stdout, /config\.yaml: ok \(host config\)/);
    assert.match(validate.stdout, /default\.yaml: ok \(policy\)/);
    const bad = await docker(
      'run',
      '--rm',
      '--network',
      'none',
      'rwtest/runner-warden:test',
      'run',
      '--config',
      '/etc/runner-warden/absent.yaml',
    );
    assert.equal(bad.code, 78, `run with a missing config: exit ${bad.code}\n${bad.stderr}`);

    const inspect = await docker('image', 'inspect', '--format', '{{json .Config.Labels}}', 'rwtest/runner-warden:test');
    assert.equal(inspect.code, 0, inspect.stderr);
    const labels = JSON.parse(inspect.stdout) as Record<string, string>;
    assert.deepEqual(
      Object.fromEntries(
        Object.entries(labels).filter(([k]) => k.startsWith('org.opencontainers.image.') && k !== 'org.opencontainers.image.description'),
      ),
      {
        'org.opencontainers.image.title': 'runner-warden',
        'org.opencontainers.image.licenses': 'MIT',
        'org.opencontainers.image.version': pkg.version,
        'org.opencontainers.image.revision': '0123456789abcdef0123456789abcdef01234567',
        'org.opencontainers.image.created': '2026-01-02T03:04:05Z',
        'org.opencontainers.image.base.name': baseByDigest,
        'org.opencontainers.image.source': 'https://github.com/runner-warden/runner-warden',
      },
    );
    assert.ok(labels['org.opencontainers.image.description'], 'no description label');

    // The agent in the image, as `docker run` starts it (tini, the entry point, `run`), against the
    // fake GitHub API on loopback (host network: the test's dockerd has no bridge): the listener
    // polls, /healthz and /readyz answer 200, and `docker stop` drains: tini forwards SIGTERM to the
    // agent, which deregisters its idle runner and exits 0 well within the grace (137 would be
    // Docker's SIGKILL at its end).
    fake = await startFakeGitHub();
    const healthPort = await freePort();
    const runEtc = path.join(lab, 'run-etc');
    await mkdir(runEtc, { mode: 0o700 });
    const runConfig = path.join(runEtc, 'config.yaml');
    await writeFile(
      runConfig,
      [
        'github:',
        `  url: ${fake.origin}`,
        `  apiUrl: ${fake.url}`,
        '  org: octo',
        '  token: { env: GITHUB_TOKEN }',
        'runner:',
        '  root: /opt/actions-runner',
        '  user: runner',
        '  name: "image-{seq}"',
        '  labels: [self-hosted, linux, container]',
        'team: default',
        `health: { listen: "127.0.0.1:${healthPort}" }`,
        'recycle: { provider: exit, exitCode: 0 }',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const registrations: { event: string; name: string; at: number }[] = [];
    fake.events.on('runner-created', (e: { name: string }) => registrations.push({ event: 'created', name: e.name, at: Date.now() }));
    fake.events.on('runner-deleted', (e: { name: string }) => registrations.push({ event: 'deleted', name: e.name, at: Date.now() }));
    const session = fakeEvent(fake, 'session-created', AGENT_SESSION_MS);
    session.catch(() => {});
    const started = await docker(
      'run',
      '-d',
      '--network',
      'host',
      '-e',
      `GITHUB_TOKEN=${fake.defaultToken}`,
      '-v',
      `${runConfig}:/etc/runner-warden/config.yaml:ro`,
      'rwtest/runner-warden:test',
    );
    assert.equal(started.code, 0, `docker run:\n${started.stderr}`);
    agentContainer = started.stdout.trim();
    const logsOf = async (): Promise<string> => {
      const l = await docker('logs', agentContainer as string);
      return `${l.stdout.slice(-6000)}${l.stderr.slice(-3000)}`;
    };
    // Until the listener's session, or the container's end (a start-up error or a quarantine ends it at once).
    let polling = false;
    session.then(
      () => (polling = true),
      () => {},
    );
    const sessionEnd = Date.now() + AGENT_SESSION_MS;
    while (!polling) {
      const running = await docker('inspect', '--format', '{{.State.Running}}', agentContainer);
      if (running.stdout.trim() !== 'true' && !polling)
        assert.fail(`the agent's container ended before its listener polled:\n${await logsOf()}`);
      if (Date.now() > sessionEnd) assert.fail(`no listener session within ${AGENT_SESSION_MS / 1000} s:\n${await logsOf()}`);
      await new Promise((r) => setTimeout(r, 1_000));
    }
    // The entry point took this container's own integrity baseline before the agent started.
    assert.match(await logsOf(), /system baseline \/var\/lib\/runner-warden\/integrity\/baseline\.json/);
    const health = `http://127.0.0.1:${healthPort}`;
    // The session comes a moment before the agent records the runner as idle.
    const end = Date.now() + 60_000;
    while (Date.now() < end && (await statusOf(`${health}/readyz`)) !== 200) await new Promise((r) => setTimeout(r, 250));
    assert.equal(await statusOf(`${health}/readyz`), 200, `/readyz of an idle agent in the image\n${await logsOf()}`);
    assert.equal(await statusOf(`${health}/healthz`), 200, `/healthz of an idle agent in the image\n${await logsOf()}`);
    const registered = registrations.filter((r) => r.event === 'created').map((r) => r.name);
    assert.ok(registered.length >= 1, `the agent in the image registered no runner: ${JSON.stringify(registrations)}`);
    const t0 = Date.now();
    const stopped = await docker('stop', '-t', String(STOP_GRACE_S), agentContainer);
    const stopMs = Date.now() - t0;
    assert.equal(stopped.code, 0, stopped.stderr);
    const state = await docker('inspect', '--format', '{{.State.ExitCode}}', agentContainer);
    const logs = await logsOf();
    assert.equal(state.stdout.trim(), '0', `the drained agent's exit code (137: killed at the end of the grace)\n${logs}`);
    assert.ok(stopMs < STOP_GRACE_S * 1000, `docker stop took ${stopMs} ms`);
    assert.match(
      logs,
      /"signal":"SIGTERM"[^\n]*"msg":"signal received"|"msg":"signal received"[^\n]*"signal":"SIGTERM"/,
      `no SIGTERM in the log:\n${logs}`,
    );
    // The drain deleted the idle runner's registration: the last runner registered is deleted after the stop began.
    const last = registered[registered.length - 1];
    assert.ok(
      registrations.some((r) => r.event === 'deleted' && r.name === last && r.at >= t0),
      `the drain did not delete ${last}: ${JSON.stringify(registrations)}\n${logs}`,
    );
    assert.deepEqual(fake.runners(), [], 'no registration is left');

    // The same container started again (a restart policy, a host reboot), then stopped while a job
    // runs: the agent lets the job finish within its drain grace, cleans, deregisters and exits 0.
    const again = fakeEvent(fake, 'session-created', AGENT_SESSION_MS);
    again.catch(() => {});
    const restarted = await docker('start', agentContainer);
    assert.equal(restarted.code, 0, restarted.stderr);
    await again.catch(async (err: Error) => assert.fail(`${err.message} after a restart:\n${await logsOf()}`));
    const jobId = fake.enqueueJob({ repository: 'octo/app', runId: 2, steps: [{ name: 'build', run: 'sleep 15; echo built > out.txt' }] });
    await fake.waitForJob(jobId, 'running', AGENT_SESSION_MS);
    const t1 = Date.now();
    const busyStop = await docker('stop', '-t', String(STOP_GRACE_S), agentContainer);
    const busyStopMs = Date.now() - t1;
    assert.equal(busyStop.code, 0, busyStop.stderr);
    const busyLogs = await logsOf();
    const busyExit = await docker('inspect', '--format', '{{.State.ExitCode}}', agentContainer);
    assert.equal(busyExit.stdout.trim(), '0', `the agent stopped while busy (137: killed at the end of the grace)\n${busyLogs}`);
    assert.ok(busyStopMs < STOP_GRACE_S * 1000, `docker stop of a busy agent took ${busyStopMs} ms`);
    if (fake.job(jobId)?.result !== 'Succeeded') {
      // The runner's own account of the job's end, from the stopped container.
      const diag = path.join(lab, 'diag');
      await docker('cp', `${agentContainer}:/opt/actions-runner/_diag`, diag);
      const traces = await sh('sh', ['-c', 'tail -n 40 "$0"/*.log 2>&1', diag]);
      assert.fail(`the job the stop found running did not finish (${fake.job(jobId)?.result})\n${busyLogs}\n${traces.stdout}`);
    }
    assert.match(busyLogs, /"msg":"cleanup done"/, `the busy agent did not clean after its job\n${busyLogs}`);
    assert.deepEqual(fake.runners(), [], 'no registration is left after the busy stop');
    await docker('rm', agentContainer);
    agentContainer = undefined;

    // The image's files, from `docker export` of a container never started.
    const created = await docker('create', 'rwtest/runner-warden:test');
    assert.equal(created.code, 0, created.stderr);
    const listing = await sh('bash', ['-o', 'pipefail', '-c', '"$1" export "$2" | tar -t', 'export', DOCKER, created.stdout.trim()], {
      env,
    });
    assert.equal(listing.code, 0, listing.stderr);
    await docker('rm', created.stdout.trim());
    const files = listing.stdout.split('\n').filter(Boolean);
    const installed = files.filter((f) => f.startsWith('opt/runner-warden/'));
    for (const want of [
      'opt/runner-warden/bin/runner-warden.js',
      'opt/runner-warden/dist/runner-warden.mjs',
      'opt/runner-warden/dist/container-hooks.js',
    ]) {
      assert.ok(installed.includes(want), `${want} is not in the image`);
    }
    assert.deepEqual(
      installed.filter((f) => /^opt\/runner-warden\/(src|scripts|node_modules|test|bench)\//.test(f) || /\.ts$/.test(f)),
      [],
      'the image must hold the bundle, not sources or dependencies',
    );
    assert.deepEqual(
      files.filter((f) => /(^|\/)node_modules\/(tsx|esbuild|@esbuild|typescript)\//.test(f)),
      [],
      'no TypeScript loader or bundler in the image',
    );
    assert.ok(files.includes('var/lib/runner-warden/integrity/baseline.json'), 'the build recorded no integrity baseline');
    assert.ok(files.includes('opt/actions-runner/.env'), "the runner's .env (container hooks) is missing");
  } finally {
    if (agentContainer) await docker('rm', '-f', agentContainer);
    await fake?.close();
    await stopDaemon(dockerd);
    await stopDaemon(registry);
    await new Promise((r) => (runnerServer ? runnerServer.close(r) : r(undefined)));
    // Whatever dockerd left mounted under the lab goes before the lab does.
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(`${lab}/`))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await sh('umount', ['-l', m]);
    await rm(lab, { recursive: true, force: true });
    if (!runDockerExisted) await removeIfEmpty('/run/docker');
    if (!runContainerdExisted) await removeIfEmpty('/run/containerd');
  }
  assert.equal(await hostTraces(), tracesBefore, "the test's dockerd changed the host's links, forwarding or iptables");
  assert.deepEqual(
    (await readdir(os.tmpdir())).filter((f) => f.startsWith(path.basename(lab))),
    [],
    'the test left its directory behind',
  );
});
