/**
 * Warm images (policy docker.warm with learn): job A's pull is learnt for its team; job B of that
 * team finds the image in its fresh engine by digest (no tag) and its own pull fetches no blob;
 * another team's job, even on a host that warmed the first team's engine, finds nothing; a job
 * that answers in its engine's place with forged entries gets only verified upstream content
 * pulled into the next engine, its malformed and non-Docker-Hub entries dropped with a warning;
 * the policy's grammar for listed images and the agent's parser agree; the agent's calls on an
 * engine reach only what the runner user could reach.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { Registry } from 'prom-client';
import { createLab, type Lab } from '../../helpers/lab.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { engineLayout } from '../../../src/engine/rootless-engine.js';
import { type RegistryMirror, mirrorStats } from '../../../src/engine/mirror.js';
import { readLearned } from '../../../src/engine/warm-store.js';
import { parseHubRef } from '../../../src/engine/image-ref.js';
import { learnWarmImages } from '../../../src/engine/warm-learn.js';
import { parsePolicyText } from '../../../src/policy/load.js';
import { registerWarmImageMetrics } from '../../../src/engine/warm-metrics.js';
import type { WarmPull } from '../../../src/engine/warm-images.js';
import { createLogger } from '../../../src/lib/log.js';
import type { GuardContext } from '../../../src/lib/job-guard.js';
import type { Policy } from '../../../src/policy/types.js';
import { busyboxTar, dockerCli, dockerPolicy, dockerTry, makeJob, openTun } from './fixture.js';
import { pushImage, startMirror, startUpstream, type Upstream } from '../../../bench/registry-upstream.js';

let lab: Lab;
let restoreTun: () => Promise<void>;
let upstream: Upstream;
let mirror: RegistryMirror;
const pulls: WarmPull[] = [];
const logs: { level: number; msg: string; [k: string]: unknown }[] = [];
const guard = new EngineGuard({ cgroupParent: 'rw-test-engine', onWarmPull: (p) => pulls.push(p) });
let busybox: string;
let tiny: string;

const ctx = (): GuardContext => ({
  log: createLogger({ level: 'info', destination: { write: (l: string) => void logs.push(JSON.parse(l) as (typeof logs)[number]) } }),
  signal: AbortSignal.timeout(120_000),
});
const policyOf = (team: string): Policy => {
  const p = dockerPolicy({ mode: 'isolated', mirror: mirror.url, warm: { images: [], learn: true, max: 5 } });
  p.team = team;
  return p;
};
async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 90_000): Promise<void> {
  for (const end = Date.now() + ms; !(await ok()); await sleep(100)) if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
}
const warmed = (image: string): number => pulls.filter((p) => p.image === image).length;
const repoDigests = async (docker: (...a: string[]) => Promise<string>): Promise<string[]> =>
  (await docker('image', 'ls', '--digests', '--format', '{{.Repository}}@{{.Digest}} {{.Tag}}')).split('\n').filter(Boolean).sort();

before(async () => {
  lab = await createLab('rw-warm-');
  restoreTun = await openTun();
  upstream = await startUpstream(lab.root);
  mirror = await startMirror(path.join(lab.root, 'mirror', 'cache'), upstream.url, 1 << 30);
  const tar = await fsp.readFile(await busyboxTar(lab.root));
  busybox = `docker.io/library/busybox@${(await pushImage(upstream.url, 'library/busybox', '1', tar)).manifest}`;
  // Genuine upstream content no job pulled: what a forged entry can at most make an engine fetch.
  tiny = `docker.io/library/tiny@${(await pushImage(upstream.url, 'library/tiny', '1', Buffer.concat([tar, Buffer.alloc(1024)]))).manifest}`;
});

after(async () => {
  await guard.drain();
  await mirror?.stop();
  await upstream?.stop();
  await restoreTun();
  await lab.dispose();
  for (const ctrl of await fsp.readdir('/sys/fs/cgroup').catch(() => [] as string[]))
    await fsp.rmdir(path.join('/sys/fs/cgroup', ctrl, 'rw-test-engine')).catch(() => undefined);
});

test("job B finds job A's image by digest and its pull fetches no blob; another team's job finds nothing, even where the first team's engine was warmed", async () => {
  const alpha = policyOf('alpha');
  const a = await makeJob(lab, 'warm-a');
  await guard.prepare(a, alpha, ctx());
  await dockerCli(lab, engineLayout(a.dir).socket)('pull', 'busybox:1');
  assert.equal((await guard.release(a, alpha, ctx())).outcome, 'ok');
  assert.deepEqual(await readLearned(a.stateDir, 'alpha'), [busybox], 'job A taught its team the image by digest');

  const b = await makeJob(lab, 'warm-b');
  await guard.prepare(b, alpha, ctx());
  const docker = dockerCli(lab, engineLayout(b.dir).socket);
  await until('the warm pull', () => warmed(busybox) >= 1);
  assert.equal(pulls.at(-1)?.ok, true, JSON.stringify(pulls.at(-1)));
  assert.deepEqual(await repoDigests(docker), [`busybox@${busybox.split('@')[1]} <none>`], 'present by digest, with no tag');
  const stats = await mirrorStats(mirror.opts.debugListen);
  const fetches = [...upstream.blobFetches.values()].reduce((x, y) => x + y, 0);
  await docker('pull', 'busybox:1');
  assert.equal((await mirrorStats(mirror.opts.debugListen))?.blobHits, stats?.blobHits, "job B's own pull fetched a blob");
  assert.equal(
    [...upstream.blobFetches.values()].reduce((x, y) => x + y, 0),
    fetches,
  );
  assert.equal(await docker('run', '--rm', 'busybox:1', 'echo', 'hi'), 'hi');
  assert.equal((await guard.release(b, alpha, ctx())).outcome, 'ok');

  // A host that warms the next engine for alpha: a job of team beta must not get that engine.
  const hostGuard = new EngineGuard({
    cgroupParent: 'rw-test-engine',
    prewarm: true,
    runnerUser: lab.user,
    jobRoot: path.dirname(b.dir),
    stateDir: b.stateDir,
    onWarmPull: (p) => pulls.push(p),
  });
  try {
    const before = warmed(busybox);
    hostGuard.prewarm(alpha, ctx());
    await until("the warm engine's pull", () => warmed(busybox) > before);
    const c = await makeJob(lab, 'warm-c');
    // The engine prepare gives the job: a cold one of its own, or the warm one if it were taken.
    const { env } = await hostGuard.prepare(c, policyOf('beta'), ctx());
    const dc = dockerCli(lab, (env?.DOCKER_HOST ?? '').replace(/^unix:\/\//, ''));
    await until("job C's engine", async () => (await dockerTry(dc, 'version')).ok);
    await sleep(2_000);
    assert.deepEqual(await repoDigests(dc), [], "another team's job sees an image of the first team's jobs");
    assert.equal((await dockerTry(dc, 'image', 'inspect', busybox)).ok, false);
    assert.equal((await hostGuard.release(c, policyOf('beta'), ctx())).outcome, 'ok');
    assert.deepEqual(await readLearned(c.stateDir, 'beta'), [], 'team beta learnt nothing');
  } finally {
    await hostGuard.drain();
  }
});

test('a job that answers in its engine’s place with forged entries gets only verified content pulled; malformed entries are dropped with a warning', async () => {
  const alpha = policyOf('alpha');
  const h = await makeJob(lab, 'warm-hostile');
  await guard.prepare(h, alpha, ctx());
  const before = warmed(busybox);
  await until("the hostile job's warm pull", () => warmed(busybox) > before);
  // The job owns its engine's directory: it puts a server of its own where the agent asks.
  const sock = engineLayout(h.dir).socket;
  await fsp.rename(sock, `${sock}.real`);
  const bogus = `docker.io/library/busybox@sha256:${randomBytes(32).toString('hex')}`;
  const asked: string[] = [];
  const fake = http.createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify([
        { Created: 3, RepoDigests: [`busybox@${bogus.split('@')[1]}`, `tiny@${tiny.split('@')[1]}`] },
        { Created: 2, RepoDigests: [`10.0.2.2:5000/evil@sha256:${'1'.repeat(64)}`, `ghcr.io/evil/x@sha256:${'2'.repeat(64)}`] },
        {
          Created: 1,
          RepoDigests: ['busybox@sha256:zz', '../../etc/passwd', 'busybox:1', 42, `${'a'.repeat(600)}@sha256:${'3'.repeat(64)}`],
        },
        'not an image',
      ]),
    );
  });
  await new Promise<void>((r) => fake.listen(sock, r));
  await fsp.chown(sock, lab.user.uid, lab.user.gid);
  logs.length = 0;
  try {
    assert.equal((await guard.release(h, alpha, ctx())).outcome, 'ok');
  } finally {
    await new Promise<void>((r) => fake.close(() => r()));
  }
  assert.deepEqual(asked, ['GET /images/json'], 'the agent asked the job’s stand-in for anything but the list');
  const warning = logs.find((l) => l.msg === 'warm images: malformed entries dropped');
  assert.ok(warning && warning.level === 40 && warning.count === 6, JSON.stringify(logs.map((l) => l.msg)));
  assert.deepEqual(await readLearned(h.stateDir, 'alpha'), [bogus, tiny, busybox], 'only Docker Hub digests are learnt');

  const n = await makeJob(lab, 'warm-next');
  const failedBefore = guard.warmTotals.failed;
  await guard.prepare(n, alpha, ctx());
  await until('the next engine’s warm pulls', () => warmed(bogus) >= 1 && warmed(tiny) >= 1 && warmed(busybox) > before + 1);
  assert.equal(pulls.find((p) => p.image === bogus)?.ok, false, 'a digest the upstream never served was pulled');
  const dn = dockerCli(lab, engineLayout(n.dir).socket);
  const digestOf = (r: string): string => r.split('@')[1] as string;
  assert.deepEqual(await repoDigests(dn), [`busybox@${digestOf(busybox)} <none>`, `tiny@${digestOf(tiny)} <none>`]);
  assert.equal((await guard.release(n, alpha, ctx())).outcome, 'ok');
  assert.ok(!(await readLearned(n.stateDir, 'alpha')).includes(bogus), 'the unknown digest is forgotten after one failed pull');
  const registry = new Registry();
  registerWarmImageMetrics(registry, () => guard.warmTotals);
  const text = await registry.metrics();
  assert.ok(guard.warmTotals.failed > failedBefore);
  assert.match(text, new RegExp(`^runner_warden_engine_warm_pulls_total\\{outcome="failed"\\} ${guard.warmTotals.failed}$`, 'm'));
  assert.match(text, new RegExp(`^runner_warden_engine_warm_pulls_total\\{outcome="done"\\} ${guard.warmTotals.done}$`, 'm'));
  assert.match(text, /^runner_warden_engine_warm_dropped_total 8$/m);
});

test("the policy's docker.warm.images accepts exactly the Docker Hub references the agent will pull", () => {
  const digest = `sha256:${'a'.repeat(64)}`;
  const names = ['node:20', 'acme/tool:1.2', `docker.io/library/node@${digest}`, `node:20@${digest}`, 'a/b/c_d.e-f:T_1'];
  const refused = [
    'ghcr.io/x/y:1',
    'localhost/x',
    'localhost:5000/x',
    '10.0.2.2:5000/evil',
    'Node:20',
    '../../etc',
    'node@sha256:zz',
    'a//b',
  ];
  for (const name of [...names, ...refused]) {
    let accepted = true;
    try {
      parsePolicyText('team.yaml', `version: 1\ndocker:\n  warm:\n    images: [${JSON.stringify(name)}]\n`);
    } catch {
      accepted = false;
    }
    assert.equal(accepted, names.includes(name), `the policy ${accepted ? 'accepted' : 'refused'} ${name}`);
    assert.equal(parseHubRef(name).ok, accepted, `the agent's parser disagrees with the policy on ${name}`);
  }
});

test("the agent's calls on an engine are the runner user's: a socket only root may open answers nothing", async () => {
  const dir = path.join(lab.root, 'jobs', 'root-socket');
  await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
  const sock = path.join(dir, 'docker.sock');
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    res.end(JSON.stringify([{ RepoDigests: [`busybox@sha256:${'4'.repeat(64)}`] }]));
  });
  await new Promise<void>((r) => server.listen(sock, r));
  const plan = {
    team: 'gamma',
    stateDir: path.join(lab.root, 'state'),
    policy: { images: [], learn: true, max: 5 },
    listed: [],
    learnt: [],
  };
  const totals = { done: 0, failed: 0, dropped: 0 };
  try {
    await fsp.chmod(sock, 0o600);
    assert.equal(await learnWarmImages(sock, lab.user, plan, totals, ctx().log), undefined);
    assert.deepEqual(asked, [], 'a root-only socket was reached: the call was made as root');
    await fsp.chmod(sock, 0o666);
    assert.deepEqual((await learnWarmImages(sock, lab.user, plan, totals, ctx().log))?.kept, [
      `docker.io/library/busybox@sha256:${'4'.repeat(64)}`,
    ]);
    assert.deepEqual(asked, ['GET /images/json']);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
