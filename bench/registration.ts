/**
 * Figure: registration time in both modes, side by side, against the fake GitHub with a
 * fixed latency per answer. Baseline: JIT mode (one `generate-jitconfig` call; the group id is
 * cached after the first registration, as in the agent). Compared with it, in the same run:
 * - token (warm): the cached registration token + the simulator's `config.sh` as the runner user
 *   (what every registration but one per 55 minutes costs);
 * - token (cold): a fresh registration token first (one REST call more).
 * The modes are interleaved per iteration so that load on the shared machine hits both alike.
 * Runs as root (config.sh runs as a throwaway runner user, made and removed here).
 *
 *   node --import tsx bench/registration.ts [iterations=10] [latencyMs=50]
 */
import { chown, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createLab } from '../src/sim/lab.js';
import { startFakeGitHub } from '../src/sim/github/server.js';
import { installSimulatedRunner } from '../src/sim/runner/install.js';
import { createOctokitPort } from '../src/github/octokit.js';
import { removeLocalConfig } from '../src/runner/installation.js';
import { TokenRegistrar } from '../src/runner/token-registration.js';
import { runCommand } from '../src/lib/process.js';
import { systemClock } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/log.js';

/** Registrations per mode; config.sh starts a node process each time, so keep it small on a shared machine. */
const ITERATIONS = Number(process.argv[2] ?? 10);
/** Delay the fake adds to every answer: a nearby GitHub (a GHES in the same region) is about this far. */
const LATENCY_MS = Number(process.argv[3] ?? 50);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const lab = await createLab('rw-bench-reg-');
  const fake = await startFakeGitHub({ latencyMs: LATENCY_MS });
  try {
    const root = path.join(lab.root, 'actions-runner');
    await installSimulatedRunner(root, { owner: { uid: lab.user.uid, gid: lab.user.gid } });
    const home = path.join(lab.root, 'cfg-home');
    await mkdir(home);
    await chown(home, lab.user.uid, lab.user.gid);
    const github = createOctokitPort({
      apiUrl: fake.url,
      scope: { kind: 'org', org: 'octo' },
      auth: { kind: 'token', token: fake.defaultToken },
      clock: systemClock,
      log: silentLogger(),
    });
    const registrar = (): TokenRegistrar =>
      new TokenRegistrar({
        github,
        scopeUrl: `${fake.origin}/octo`,
        runnerRoot: root,
        user: lab.user,
        extraEnv: { RUNNER_SIM_API_URL: fake.origin },
        clock: systemClock,
        log: silentLogger(),
      });
    const warm = registrar();
    const call = (name: string) => ({ name, labels: ['self-hosted'], group: null, home, tmp: home });
    // Untimed warm-up: the group lookup the agent caches, the first token, tsx's first compile.
    await github.resolveRunnerGroup(null);
    const w0 = await warm.register(call('warmup'));
    await github.deleteRunner(w0.id);

    // How much of config.sh is only starting the process (node + tsx here, .NET for the real runner).
    const bareStart = (): Promise<unknown> =>
      runCommand(path.join(root, 'config.sh'), ['--version'], {
        cwd: root,
        uid: lab.user.uid,
        gid: lab.user.gid,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home },
      });
    const figures = { jit: [] as number[], tokenWarm: [] as number[], tokenCold: [] as number[], start: [] as number[] };
    for (let i = 0; i < ITERATIONS; i++) {
      let id = 0;
      figures.jit.push(
        await time(async () => {
          const groupId = await github.resolveRunnerGroup(null);
          id = (await github.generateJitConfig({ name: `jit-${i}`, labels: ['self-hosted'], runnerGroupId: groupId, workFolder: '_work' }))
            .runner.id;
        }),
      );
      await github.deleteRunner(id);
      figures.tokenWarm.push(await time(async () => (id = (await warm.register(call(`warm-${i}`))).id)));
      await github.deleteRunner(id);
      const cold = registrar();
      figures.tokenCold.push(await time(async () => (id = (await cold.register(call(`cold-${i}`))).id)));
      await github.deleteRunner(id);
      await removeLocalConfig(root);
      figures.start.push(await time(bareStart));
    }
    const base = median(figures.jit);
    const rows: [string, number[], string][] = [
      ['jit (generate-jitconfig)', figures.jit, '1 REST call'],
      ['token, cached token + config.sh', figures.tokenWarm, '0 REST + config.sh (2 private calls)'],
      ['token, new token + config.sh', figures.tokenCold, '1 REST + config.sh (2 private calls)'],
      ['(bare config.sh --version start)', figures.start, 'no network'],
    ];
    console.log(`registration time, median of ${ITERATIONS}, fake GitHub latency ${LATENCY_MS} ms per answer`);
    for (const [name, xs, calls] of rows) {
      console.log(
        `${name.padEnd(34)} ${median(xs).toFixed(0).padStart(6)} ms  ${(median(xs) / base).toFixed(1).padStart(5)}x jit   (${calls})`,
      );
    }
    console.log(
      `REST calls made by the fake's count: ${fake.restCalls()} (registration tokens: ${fake.restCalls({ path: /registration-token$/ })})`,
    );
  } finally {
    await fake.close();
    await lab.dispose();
  }
}

await main();
