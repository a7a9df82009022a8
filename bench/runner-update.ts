/**
 * Time of an in-place runner update (download from a loopback mirror excluded), against the
 * baseline of merely unpacking the same tarball with tar in the same run: what the update adds
 * beyond the unavoidable unpack is the digest check, the move beside the installation, the
 * symlink switch and the fsyncs. The release is runner-sized: about as many files as a real
 * actions-runner tarball, and tens of MB of incompressible content.
 *
 * Then job end → next listener with a runner update between the jobs, through the real agent
 * (a `runner-warden run` runtime against the runner simulator and the fake GitHub): GitHub
 * deprecates the running version during job 1, so after job 1 the listener is refused (exit 7),
 * the agent installs the newer release from a loopback mirror in place and registers again;
 * printed beside job 2 → job 3 of the same run, with no update between them. Needs root (a
 * throwaway runner user, like the tests).
 *
 *   node --import tsx bench/runner-update.ts [files=3000] [MiB=60] [iterations=3] [all|between]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFakeReleases } from '../src/sim/github/releases.js';
import { installSimulatedRunner } from '../src/sim/runner/install.js';
import { DEFAULT_RUNNER_VERSION } from '../src/sim/runner/version.js';
import { updateRunner } from '../src/runner/update.js';
import { Journal } from '../src/agent/journal.js';
import { loadHostConfig } from '../src/policy/load.js';
import { wire } from '../src/cli/wire.js';
import { systemClock } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/log.js';
import { createWorld } from './lib/world.js';

const FILES = Number(process.argv[2] ?? 3000);
const MIB = Number(process.argv[3] ?? 60);
const ITERATIONS = Number(process.argv[4] ?? 3);
const ONLY = process.argv[5] ?? 'all';

async function writeRunner(dir: string, version: string, files: number, bytes: number): Promise<void> {
  await mkdir(path.join(dir, 'bin'), { recursive: true });
  await writeFile(path.join(dir, 'bin', 'Runner.Listener'), `#!/bin/sh\necho ${version}\n`);
  await chmod(path.join(dir, 'bin', 'Runner.Listener'), 0o755);
  for (const f of ['run.sh', 'config.sh', 'env.sh']) await writeFile(path.join(dir, f), `# ${f} ${version}\n`);
  const per = Math.floor(bytes / files);
  for (let i = 0; i < files; i++) {
    const sub = path.join(dir, i % 3 === 0 ? 'bin' : 'externals', `d${i % 40}`);
    await mkdir(sub, { recursive: true });
    await writeFile(path.join(sub, `f${i}.dll`), randomBytes(per));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/** The in-place update alone, beside a plain unpack of the same tarball. */
async function inPlace(): Promise<void> {
  const scratch = await mkdtemp(path.join(tmpdir(), 'rw-bench-update-'));
  try {
    const src = path.join(scratch, 'src');
    await writeRunner(src, '2.331.0', FILES, MIB * 1024 * 1024);
    const tgz = path.join(scratch, 'r.tar.gz');
    spawnSync('tar', ['-czf', tgz, '-C', src, '.']);
    const bytes = await readFile(tgz);
    const releases = await startFakeReleases([
      { version: '2.331.0', assets: [{ name: 'actions-runner-linux-x64-2.331.0.tar.gz', bytes }] },
    ]);
    const untar: number[] = [];
    const update: number[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      const plain = path.join(scratch, `plain-${i}`);
      await mkdir(plain);
      const t0 = performance.now();
      spawnSync('tar', ['-xzf', tgz, '-C', plain, '--no-same-owner']);
      untar.push(performance.now() - t0);
      await rm(plain, { recursive: true, force: true });

      const root = path.join(scratch, `root-${i}`);
      await writeRunner(root, '2.330.0', FILES, MIB * 1024 * 1024);
      const r = await updateRunner({
        root,
        source: releases.url,
        apiUrl: releases.url,
        clock: systemClock,
        log: silentLogger(),
        retakeManifest: async () => {},
      });
      if (!('updated' in r)) throw new Error(`update did not happen: ${JSON.stringify(r)}`);
      update.push(r.ms);
      await rm(root, { recursive: true, force: true });
    }
    await releases.close();
    const u = median(update);
    const b = median(untar);
    console.log(`runner release: ${FILES} files, ${(bytes.length / 1048576).toFixed(0)} MiB tar.gz, ${ITERATIONS} iterations`);
    console.log(`baseline: tar -xzf of the release            median ${b.toFixed(0)} ms`);
    console.log(`in-place update (verify → switch, no download) median ${u.toFixed(0)} ms  (${(u / b).toFixed(2)}x the unpack alone)`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** A job that takes a moment, as a real one would; the figure is about what happens after it. */
function job(i: number): { repository: string; runId: number; job: string; steps: { name: string; run: string }[] } {
  return { repository: 'octo/app', runId: 3000 + i, job: `update${i}`, steps: [{ name: 'work', run: 'sleep 1' }] };
}

/** Job end → next listener taking a job, with a runner update between jobs 1 and 2 and none between 2 and 3. */
async function betweenJobs(): Promise<void> {
  const next = DEFAULT_RUNNER_VERSION.replace(/\.(\d+)$/, (_m, p: string) => `.${Number(p) + 1}`);
  const releases = await startFakeReleases([]);
  const w = await createWorld({ runner: { maxJobs: 3, updates: { source: releases.url } } });
  try {
    await w.baseline();
    // The release is the simulated runner itself at the next version, packed as actions/runner packs it.
    const rel = path.join(w.root, 'release');
    await installSimulatedRunner(rel, { version: next });
    // The simulator's wrappers name their root; a real release finds it from where it is unpacked.
    for (const f of spawnSync('grep', ['-rlF', rel, rel], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
      await writeFile(f, (await readFile(f, 'utf8')).split(rel).join(w.runnerRoot));
    }
    const tgz = path.join(w.root, 'release.tar.gz');
    spawnSync('tar', ['-czf', tgz, '-C', rel, '.']);
    releases.set([{ version: next, assets: [{ name: `actions-runner-linux-x64-${next}.tar.gz`, bytes: await readFile(tgz) }] }]);
    const ids = [w.fake.enqueueJob(job(1))];
    const rt = await wire(await loadHostConfig(w.configFile, {}), {
      configFile: w.configFile,
      env: {},
      log: silentLogger(),
      clock: systemClock,
      hostname: 'benchhost',
    });
    const run = rt.agent.run(AbortSignal.timeout(600_000));
    await w.fake.waitForJob(ids[0] as string, 'running', 300_000);
    // GitHub stops serving the running version while job 1 runs: its next listener is refused.
    w.fake.deprecateRunnerVersionsBelow(next);
    ids.push(w.fake.enqueueJob(job(2)), w.fake.enqueueJob(job(3)));
    const exit = await run;
    await rt.close();
    const [j1, j2, j3] = ids.map((id) => w.fake.job(id));
    if (!j1?.completedAt || !j2?.assignedAt || !j2.completedAt || !j3?.assignedAt) {
      throw new Error(
        `the three jobs did not all run (agent exit ${exit.code}: ${exit.reason}): ${JSON.stringify([j1, j2, j3].map((j) => j?.status))}`,
      );
    }
    const records = (await new Journal({ dir: w.stateDir }).readAll()).records as {
      seq: number;
      type: string;
      event?: string;
      at?: string;
      endedAt?: string;
      detail?: Record<string, unknown>;
    }[];
    const updated = records.find((r) => r.type === 'event' && r.event === 'runner-updated');
    const jobRecs = records.filter((r) => r.type === 'job');
    const startedAfter = (seq: number) => records.find((r) => r.seq > seq && r.type === 'event' && r.event === 'listener-started');
    const afterUpdate = updated && startedAfter(updated.seq);
    const afterJob2 = jobRecs[1] && startedAfter(jobRecs[1].seq);
    if (!updated || !afterUpdate?.at || !jobRecs[0]?.endedAt || !afterJob2)
      throw new Error('the agent did not update the runner between the jobs, or a listener is missing from the journal');
    const listenerWith = Date.parse(afterUpdate.at) - Date.parse(jobRecs[0].endedAt);
    const listenerWithout = Number(afterJob2.detail?.sinceLastJobEndMs);
    const takenWith = j2.assignedAt - j1.completedAt;
    const takenWithout = j3.assignedAt - j2.completedAt;
    console.log(`job end → next listener, real agent (runner simulator, fake GitHub and release mirror on loopback; 2 cores shared)`);
    console.log(
      `  runner update between jobs 1 and 2 (v${String(updated.detail?.from)} deprecated during job 1 → v${String(updated.detail?.version)}; the in-place update took ${String(updated.detail?.ms)} ms, mirror download included):`,
    );
    console.log(`    job end → next listener started ${listenerWith} ms; → next job taken ${takenWith} ms`);
    console.log(`  baseline, jobs 2 → 3 of the same run, no update between them:`);
    console.log(
      `    job end → next listener started ${listenerWithout} ms; → next job taken ${takenWithout} ms  (the update costs ${(listenerWith / listenerWithout).toFixed(2)}x)`,
    );
  } finally {
    await releases.close();
    await w.dispose();
  }
}

if (ONLY !== 'between') await inPlace();
if (ONLY !== 'inplace') await betweenJobs();
