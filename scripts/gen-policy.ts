/**
 * Regenerates the files derived from the policy and host config schemas: the
 * src/policy/types.generated*.ts files (one per schema section, see src/policy/gen-types.ts) and
 * policies/README.md. A generated-looking file the generator no longer writes is removed. With
 * --check, writes nothing and exits 1 when any is stale (for CI).
 *
 *   node --import tsx scripts/gen-policy.ts [--check]
 */
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateTypeFiles, GENERATED_TYPES_DIR, GENERATED_TYPES_NAME } from '../src/policy/gen-types.js';
import { generateReadme, readExamples, GENERATED_README_PATH } from '../src/policy/gen-docs.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const outputs: [string, string][] = [
  ...generateTypeFiles().map((f): [string, string] => [f.path, f.text]),
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
const written = new Set(outputs.map(([rel]) => rel));
for (const name of await readdir(path.join(repo, GENERATED_TYPES_DIR))) {
  const rel = `${GENERATED_TYPES_DIR}/${name}`;
  if (!GENERATED_TYPES_NAME.test(name) || written.has(rel)) continue;
  stale++;
  if (check) console.error(`no longer generated: ${rel}`);
  else {
    await rm(path.join(repo, rel));
    console.log(`removed ${rel}`);
  }
}
process.exitCode = check && stale > 0 ? 1 : 0;
