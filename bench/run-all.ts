/**
 * Runs every benchmark in turn, each in its own process (one bench's garbage or child processes
 * never skew the next). Benchmarks are not tests: they print figures as ratios against a baseline
 * measured in the same run. Needs root (several make a throwaway runner user).
 *
 *   npm run bench                 all of them (about 15 minutes on 2 cores)
 *   npm run bench -- policy health   only those named
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Each bench with the arguments that keep the whole run bounded; what each figure measures. */
const BENCHES: [name: string, args: string[], about: string][] = [
  ['lifecycle', [], 'lifecycle and prefetch'],
  ['cleanup-ready', ['3'], 'cleanup: host ready'],
  ['cleanup-delete', [], 'cleanup: trash drain'],
  ['cleanup-verify', [], 'cleanup: verification'],
  ['policy', [], 'policy validation'],
  ['recycle', [], 'recycle signal'],
  ['chaos', [], 'faults on a reused host'],
  ['soak', ['--jobs', '50'], 'soak invariants under kills, stalls, ENOSPC, forgery'],
  ['health', [], 'health endpoint'],
  ['registration', [], 'registration modes'],
  ['fleet', ['1000'], 'fleet scale'],
  ['runner-update', ['3000', '60', '3'], 'fleet scale'],
];

const only = process.argv.slice(2);
let failed = 0;
for (const [name, args, about] of BENCHES) {
  if (only.length > 0 && !only.includes(name)) continue;
  console.log(`\n=== bench/${name}.ts (${about}) ===`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, `${name}.ts`), ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed += 1;
    console.log(`bench/${name}.ts exited ${r.status ?? r.signal}`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
