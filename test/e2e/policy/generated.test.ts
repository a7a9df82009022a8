import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateTypeFiles, GENERATED_TYPES_DIR, GENERATED_TYPES_NAME } from '../../../src/policy/gen-types.js';
import { fieldDocs, generateReadme, readExamples, GENERATED_README_PATH } from '../../../src/policy/gen-docs.js';
import { hostConfigSchema, policyDefaults, policySchema } from '../../../src/policy/schema.js';
import { DEFAULT_POLICY } from '../../../src/policy/types.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const REGEN = 'run `node --import tsx scripts/gen-policy.ts` after changing a schema';

test('the checked-in types.generated*.ts files match the schemas, and there is no other', async () => {
  const files = generateTypeFiles();
  for (const f of files) {
    const onDisk = await readFile(path.join(REPO, f.path), 'utf8').catch(() => 'missing');
    assert.ok(onDisk === f.text, `${f.path} is stale: ${REGEN}`);
  }
  const present = (await readdir(path.join(REPO, GENERATED_TYPES_DIR))).filter((n) => GENERATED_TYPES_NAME.test(n));
  assert.deepEqual(present.sort(), files.map((f) => path.basename(f.path)).sort(), `a generated file is left over: ${REGEN}`);
});

test('the checked-in policies/README.md matches the schemas and the example policies', async () => {
  const onDisk = await readFile(path.join(REPO, GENERATED_README_PATH), 'utf8');
  const fresh = generateReadme(await readExamples(path.join(REPO, 'policies')));
  assert.ok(onDisk === fresh, `${GENERATED_README_PATH} is stale: ${REGEN}`);
});

test('DEFAULT_POLICY is the schema defaults', () => {
  assert.deepEqual(DEFAULT_POLICY, policyDefaults());
});

for (const [name, schema] of [
  ['policy', policySchema],
  ['host config', hostConfigSchema],
] as const) {
  test(`every ${name} field has a meaning, and every leaf field a type and an example, for the README`, () => {
    for (const f of fieldDocs(schema)) {
      assert.ok(f.meaning.length > 10, `${f.path} has no description`);
      assert.ok(f.type, `${f.path} has no type`);
      if (f.leaf) assert.ok(f.example, `${f.path} has no example`);
    }
  });
}

test('every example policy in policies/ is listed with a description', async () => {
  const examples = await readExamples(path.join(REPO, 'policies'));
  assert.deepEqual(
    examples.map((e) => e.file),
    ['base.yaml', 'container-reuse.yaml', 'default.yaml', 'docker-heavy.yaml', 'strict.yaml'],
  );
  for (const e of examples) {
    assert.ok(e.description.length > 20, `${e.file} needs a description: the README shows it`);
    if (e.file !== 'base.yaml') assert.equal(e.extends, 'base.yaml', `${e.file} should extend base.yaml`);
  }
});
