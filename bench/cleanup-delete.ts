/**
 * Background deletion of a 200,000-file tree through the trash, against `rm -rf` on an identical
 * tree in the same run, and the event-loop delay (p99) while the deletion runs.
 * Targets: trash drain ≤ 1.3× rm -rf; event-loop p99 ≤ 50 ms.
 *
 *   node --import tsx bench/cleanup-delete.ts [files=200000]
 *
 * Both deletion strategies of safe-delete.ts are measured (find-delete: one walk that counts and
 * deletes; find-then-rm: a counting walk, then rm). Runs as root; writes only under its own
 * mkdtemp root, which it removes.
 */
import { promises as fsp } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import os from 'node:os';
import path from 'node:path';
import { Trash } from '../src/cleanup/trash.js';
import type { DeleteStrategy } from '../src/cleanup/safe-delete.js';
import { silentLogger } from '../src/lib/log.js';

const FILES = Number(process.argv[2] ?? 200_000);
/** Files per directory: a checkout-like shape (many dirs of a few hundred to a thousand files). */
const PER_DIR = 1_000;

function makeTree(dir: string): void {
  execFileSync('python3', [
    '-c',
    `import os
d = ${JSON.stringify(dir)}
os.mkdir(d)
for i in range(${Math.ceil(FILES / PER_DIR)}):
    p = '%s/%d' % (d, i); os.mkdir(p)
    for j in range(${PER_DIR}):
        with open('%s/%d' % (p, j), 'w') as f: f.write('x')`,
  ]);
}

/**
 * Writes the fresh tree back before timing, so that both sides delete allocated blocks (this
 * disk is mounted with online discard: deleting never-written files is much cheaper, and
 * writeback starting in the middle of one run would skew it). `sync -f` flushes only this fs.
 */
function settle(): void {
  execFileSync('sync', ['-f', os.tmpdir()]);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.once('error', reject);
    c.once('exit', () => resolve());
  });
}

async function timeRm(root: string): Promise<number> {
  const tree = path.join(root, 'rm-tree');
  makeTree(tree);
  settle();
  const t0 = performance.now();
  await run('rm', ['-rf', '--', tree]);
  return performance.now() - t0;
}

async function timeTrash(root: string, strategy: DeleteStrategy): Promise<{ ms: number; p99: number; count: number }> {
  const tree = path.join(root, `trash-tree-${strategy}`);
  makeTree(tree);
  settle();
  const trash = new Trash(path.join(root, `trash-${strategy}`), silentLogger(), { strategy });
  await trash.put(tree);
  const h = monitorEventLoopDelay({ resolution: 5 });
  // A timer standing for the health endpoint: it must keep firing during the deletion.
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  h.enable();
  const t0 = performance.now();
  const r = await trash.drain();
  const ms = performance.now() - t0;
  h.disable();
  clearInterval(timer);
  if (r.remaining > 0) throw new Error('trash not emptied');
  return { ms, p99: h.percentile(99) / 1e6, count: r.count };
}

async function main(): Promise<void> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'rw-bench-delete-'));
  try {
    console.log(`tree: ${FILES} files in ${Math.ceil(FILES / PER_DIR)} dirs (created fresh for each run)`);
    // Interleaved, so that a burst of load from elsewhere hits both sides alike.
    const rmMs = await timeRm(root);
    const a = await timeTrash(root, 'find-delete');
    const rmMs2 = await timeRm(root);
    const b = await timeTrash(root, 'find-then-rm');
    const base = Math.min(rmMs, rmMs2);
    console.log(`rm -rf (baseline, best of 2)        ${base.toFixed(0)} ms  (${rmMs.toFixed(0)} / ${rmMs2.toFixed(0)})`);
    console.log(
      `trash drain, find-delete (default)  ${a.ms.toFixed(0)} ms  ratio ${(a.ms / base).toFixed(2)}×  (target ≤ 1.3×)  counted ${a.count}  event-loop p99 ${a.p99.toFixed(1)} ms (target ≤ 50)`,
    );
    console.log(
      `trash drain, find-then-rm           ${b.ms.toFixed(0)} ms  ratio ${(b.ms / base).toFixed(2)}×  counted ${b.count}  event-loop p99 ${b.p99.toFixed(1)} ms`,
    );
  } finally {
    await run('rm', ['-rf', '--one-file-system', '--', root]);
  }
}

await main();
