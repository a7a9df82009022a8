/**
 * Regenerates the files derived from the policy and host config schemas:
 * src/policy/types.generated.ts and policies/README.md. With --check, writes nothing and exits 1
 * when either is stale (for CI).
 *
 *   node --import tsx scripts/gen-policy.ts [--check]
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateTypes, GENERATED_TYPES_PATH } from '../src/policy/gen-types.js';
import { generateReadme, readExamples, GENERATED_README_PATH } from '../src/policy/gen-docs.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const outputs: [string, string][] = [
  [GENERATED_TYPES_PATH, generateTypes()],
  [GENERATED_README_PATH, generateReadme(await readExamples(path.join(repo, 'policies')))],
];
let stale = 0;
for (const [rel, text] of outputs) {
  const file = path.join(repo, rel);
  const current = await readFile(file, 'utf8').catch(() => '');
  if (current === text) continue;
  stale++;
  if (check) console.error(`stale: ${rel}`);
  else {
    await writeFile(file, text);
    console.log(`wrote ${rel}`);
  }
}
process.exitCode = check && stale > 0 ? 1 : 0;
