/**
 * The whole-host integrity check of this host's real surfaces with the default policy (figure:
 * ≤ 300 ms median), printed beside `find -printf` of the same file trees in the same run
 * (ratio ≤ 2). The check also reads kernel and network state (processes, sockets, mounts,
 * iptables-save), which find cannot; both the whole check and its file walk alone are shown.
 *
 *   node --import tsx bench/integrity.ts [--exclude-dev-toolchains]
 *
 * `--exclude-dev-toolchains` adds policy exceptions for language toolchains under /root (pyenv,
 * rustup, m2, npm, cargo), as a team would on a developer-built image; a stock image has none.
 * The baseline is taken into a temporary state directory; nothing on the host is changed.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_POLICY } from '../src/policy/types.js';
import { silentLogger } from '../src/lib/log.js';
import { IntegrityGuard } from '../src/integrity/guard.js';
import { takeSystemBaseline } from '../src/integrity/system-baseline.js';
import { treeSurfaces, DEFAULT_EXCEPTIONS, exceptionPatterns } from '../src/integrity/surfaces.js';
import { walkTrees } from '../src/integrity/walk.js';
import { readAccounts } from '../src/integrity/accounts.js';
import { GlobSet } from '../src/integrity/glob.js';

const run = promisify(execFile);
const RUNS = 7;
const DEV = ['/root/.pyenv/**', '/root/.rustup/**', '/root/.m2/**', '/root/.npm/**', '/root/.cargo/**'];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function main(): Promise<void> {
  const dev = process.argv.includes('--exclude-dev-toolchains');
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'rw-bench-integrity-'));
  try {
    const policy = structuredClone(DEFAULT_POLICY);
    if (dev) policy.host.integrity.exceptions = DEV;
    const user = { name: 'nobody', uid: 65534 };
    const excluded = [stateDir];
    const b = await takeSystemBaseline({ stateDir, surfaces: policy.host.integrity.surfaces, exceptions: exceptionPatterns(policy.host.integrity), excluded, user, skipPids: [process.pid] });
    const guard = new IntegrityGuard({ stateDir, excluded, user, skipPids: [process.pid] });
    const ctx = { log: silentLogger(), signal: AbortSignal.timeout(300_000) };
    // The same trees the check walks, for find and for the walk alone.
    const { users } = await readAccounts('/');
    const trees = treeSurfaces(new Set(policy.host.integrity.surfaces), users.map((u) => u.home).filter((h) => h.startsWith('/')));
    const ex = new GlobSet([...DEFAULT_EXCEPTIONS, ...policy.host.integrity.exceptions]);
    const prune = (p: string): boolean => ex.matches(p) && ex.matches(`${p}/\u0001`) && ex.matches(`${p}/\u0001/\u0001`);
    const findArgs = [...new Set(trees.flatMap((t) => t.paths))].filter((p) => !p.startsWith('/bin') && !p.startsWith('/sbin') && !p.startsWith('/lib/'));
    const prunes = [...new Set([...DEFAULT_EXCEPTIONS, ...policy.host.integrity.exceptions].filter((e) => e.startsWith('/') && e.endsWith('/**')).map((e) => e.slice(0, -3)))];
    const pruneExpr = prunes.flatMap((p, i) => [...(i ? ['-o'] : []), '-path', p]);
    const check: number[] = [];
    const walk: number[] = [];
    const find: number[] = [];
    let drift = 0;
    let files = 0;
    for (let i = 0; i < RUNS; i++) {
      let t = performance.now();
      drift = (await guard.verify(undefined, policy, ctx)).length;
      check.push(performance.now() - t);
      t = performance.now();
      files = Object.keys(walkTrees(trees, { root: '/', excluded, prune }).files).length;
      walk.push(performance.now() - t);
      t = performance.now();
      await run('find', [...findArgs, '-xdev', '(', ...pruneExpr, ')', '-prune', '-o', '-printf', '%i %s %m %U %G %T@ %C@ %p\\0'], { maxBuffer: 1 << 30 }).catch((e: { stdout?: string }) => e);
      find.push(performance.now() - t);
    }
    const [c, w, f] = [median(check), median(walk), median(find)];
    console.log(`integrity check of this host (${dev ? 'defaults + dev-toolchain exceptions' : 'defaults'}), median of ${RUNS}`);
    console.log(`  baseline: ${b.files} files, ${b.objects} objects, taken in ${b.durationMs} ms`);
    console.log(`  whole check (files + kernel + network + accounts): ${c.toFixed(0)} ms   (target ≤ 300 ms)`);
    console.log(`  file walk alone:                                  ${w.toFixed(0)} ms   (${files} entries kept)`);
    console.log(`  find -printf of the same trees:                   ${f.toFixed(0)} ms`);
    console.log(`  ratio whole check / find: ${(c / f).toFixed(2)}   file walk / find: ${(w / f).toFixed(2)}   (target ≤ 2)`);
    console.log(`  drift lines on this host during the run: ${drift} (other activity on the machine)`);
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
}

await main();
