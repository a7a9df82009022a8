/**
 * Policy validation figures:
 * - validating a typical policy after warm-up (target <= 5 ms), as a median and as a ratio against
 *   JSON.parse of the same content, the floor of any config loader;
 * - a YAML alias bomb rejected (targets <= 100 ms and <= 50 MiB extra memory).
 *
 *   node --import tsx bench/policy.ts        (add --expose-gc for steadier memory figures)
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { loadPolicy, parsePolicyText } from '../src/policy/load.js';
import { ALIAS_BOMB } from '../src/sim/alias-bomb.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WARMUP = 200;
const RUNS = 2000;
/** Calls per timed batch. */
const BATCH = 50;
const MIB = 1024 * 1024;

function median(samples: number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** Per-call times, measured over batches: JSON.parse of a small file is below the timer's resolution. */
function timeEach(runs: number, fn: () => unknown): number[] {
  const out: number[] = [];
  for (let b = 0; b < runs / BATCH; b++) {
    const t = performance.now();
    for (let i = 0; i < BATCH; i++) fn();
    out.push((performance.now() - t) / BATCH);
  }
  return out;
}

const gc = (globalThis as { gc?: () => void }).gc;

// 1. The alias bomb first, on a fresh heap, so that warm-up garbage does not blur its memory.
gc?.();
const before = process.memoryUsage();
const started = performance.now();
let rejected = false;
try {
  parsePolicyText('bomb.yaml', ALIAS_BOMB);
} catch {
  rejected = true;
}
const bombMs = performance.now() - started;
const after = process.memoryUsage();
const extraRss = (after.rss - before.rss) / MIB;
const extraHeap = (after.heapUsed - before.heapUsed) / MIB;

// 2. A typical policy: the container-reuse example as one file (the chain from disk is measured
// separately below).
const text = (await readFile(path.join(REPO, 'policies', 'container-reuse.yaml'), 'utf8')).replace(/^extends:.*\n/m, '');
const json = JSON.stringify(parseYaml(text));
for (let i = 0; i < WARMUP; i++) {
  parsePolicyText('team.yaml', text);
  JSON.parse(json);
}
const validateMs = median(timeEach(RUNS, () => parsePolicyText('team.yaml', text)));
const jsonMs = median(timeEach(RUNS, () => JSON.parse(json)));
const yamlMs = median(timeEach(RUNS, () => parseYaml(text)));

// 3. From disk with the extends chain (what the agent does on a reload).
const chainFile = path.join(REPO, 'policies', 'container-reuse.yaml');
for (let i = 0; i < 50; i++) await loadPolicy(chainFile);
const chainSamples: number[] = [];
for (let i = 0; i < 200; i++) {
  const t = performance.now();
  await loadPolicy(chainFile);
  chainSamples.push(performance.now() - t);
}
const chainMs = median(chainSamples);

const fmt = (ms: number): string => (ms < 1 ? `${(ms * 1000).toFixed(1)} us` : `${ms.toFixed(2)} ms`).padStart(9);
console.log('policy validation (median per call over batches of %d, %d calls, after %d warm-up runs)', BATCH, RUNS, WARMUP);
console.log(`  JSON.parse of the same content (baseline)   ${fmt(jsonMs)}   1.0x`);
console.log(`  YAML parse only                             ${fmt(yamlMs)}   ${(yamlMs / jsonMs).toFixed(1)}x`);
console.log(
  `  parse + validate + defaults (typical)       ${fmt(validateMs)}   ${(validateMs / jsonMs).toFixed(1)}x   target <= 5 ms: ${validateMs <= 5 ? 'met' : 'MISSED'}`,
);
console.log(`  loadPolicy from disk, 2-file chain          ${fmt(chainMs)}   ${(chainMs / jsonMs).toFixed(1)}x`);
console.log('alias bomb (9^9 strings if expanded)');
console.log(
  `  rejected: ${rejected}, in ${fmt(bombMs).trim()} (${(bombMs / validateMs).toFixed(1)}x a typical validation)   target <= 100 ms: ${rejected && bombMs <= 100 ? 'met' : 'MISSED'}`,
);
console.log(
  `  extra memory: rss ${extraRss.toFixed(1)} MiB, heap ${extraHeap.toFixed(1)} MiB${gc ? '' : ' (run with --expose-gc for a clean baseline)'}   target <= 50 MiB: ${Math.max(extraRss, extraHeap) <= 50 ? 'met' : 'MISSED'}`,
);
