/**
 * Time of an in-place runner update (download from a loopback mirror excluded), against the
 * baseline of merely unpacking the same tarball with tar in the same run: what the update adds
 * beyond the unavoidable unpack is the digest check, the move beside the installation, the
 * symlink switch and the fsyncs. The release is runner-sized: about as many files as a real
 * actions-runner tarball, and tens of MB of incompressible content.
 *
 *   node --import tsx bench/runner-update.ts [files=3000] [MiB=60] [iterations=3]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startFakeReleases } from '../src/sim/github/releases.js';
import { updateRunner } from '../src/runner/update.js';
import { systemClock } from '../src/lib/clock.js';
import { silentLogger } from '../src/lib/log.js';

const FILES = Number(process.argv[2] ?? 3000);
const MIB = Number(process.argv[3] ?? 60);
const ITERATIONS = Number(process.argv[4] ?? 3);

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

const scratch = await mkdtemp(path.join(tmpdir(), 'rw-bench-update-'));
try {
  const src = path.join(scratch, 'src');
  await writeRunner(src, '2.331.0', FILES, MIB * 1024 * 1024);
  const tgz = path.join(scratch, 'r.tar.gz');
  spawnSync('tar', ['-czf', tgz, '-C', src, '.']);
  const bytes = await readFile(tgz);
  const releases = await startFakeReleases([{ version: '2.331.0', assets: [{ name: 'actions-runner-linux-x64-2.331.0.tar.gz', bytes }] }]);
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
    const r = await updateRunner({ root, source: releases.url, apiUrl: releases.url, clock: systemClock, log: silentLogger(), retakeManifest: async () => {} });
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
