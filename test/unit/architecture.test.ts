/**
 * The import direction of docs/decisions.md ("Layers, and imports that go one way"), checked by
 * reading every import of the repository (scripts/import-rules.ts). No root, no child process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importViolations, importsOf, ruleBroken } from '../../scripts/import-rules.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Every violation of the repository, read once (reading every import is the costly part). */
let found: ReturnType<typeof importViolations> | undefined;
const violations = (): ReturnType<typeof importViolations> => (found ??= importViolations(ROOT));

test('every kind of import is read: static, type-only, re-export, side effect and dynamic', () => {
  const text = [
    "import { a } from '../lib/a.js';",
    "import type { B } from '../policy/b.js';",
    "export { c } from './c.js';",
    "import '../cleanup/d.js';",
    "const e = await import('../agent/e.js');",
    "import {\n  f,\n  g,\n} from '../health/f.js';",
    "import fs from 'node:fs';",
    "// import { h } from '../cli/h.js'; is a comment, not an import",
  ].join('\n');
  assert.deepEqual(importsOf(text), ['../lib/a.js', '../policy/b.js', './c.js', '../cleanup/d.js', '../agent/e.js', '../health/f.js']);
});

test('the rules allow the layers downwards and refuse every way back up or across', () => {
  const cases: Array<[string, string, boolean]> = [
    ['src/cli/run.ts', 'src/agent/agent.ts', true],
    ['src/agent/agent.ts', 'src/recycle/decision.ts', true],
    ['src/recycle/decision.ts', 'src/policy/types.ts', true],
    ['src/recycle/decision.ts', 'src/cleanup/types.ts', true],
    ['src/health/metrics.ts', 'src/cleanup/types.ts', true],
    ['src/cleanup/types.ts', 'src/policy/types.ts', true],
    ['src/policy/load.ts', 'src/lib/errors.ts', true],
    ['src/cleanup/steps/home.ts', 'src/cleanup/report.ts', true],
    ['src/container-hooks/main.ts', 'src/engine/create-policy.ts', true],
    ['src/cli/demo.ts', 'src/sim/github/server.ts', true],
    ['src/sim/runner/run.ts', 'src/lib/clock.ts', true],
    ['test/e2e/agent/x.test.ts', 'src/sim/github/server.ts', true],
    ['bench/recycle.ts', 'src/sim/aws/fake-aws.ts', true],
    ['src/agent/agent.ts', 'src/cli/io.ts', false],
    ['src/recycle/chain.ts', 'src/agent/deps.ts', false],
    ['src/runner/env.ts', 'src/github/port.ts', false],
    ['src/policy/types.ts', 'src/cleanup/types.ts', false],
    ['src/cleanup/verify.ts', 'src/recycle/decision.ts', false],
    ['src/lib/log.ts', 'src/policy/types.ts', false],
    ['src/engine/x.ts', 'src/container-hooks/main.ts', false],
    ['src/cli/run.ts', 'src/sim/github/server.ts', false],
    ['src/sim/runner/run.ts', 'src/policy/types.ts', false],
    ['src/lib/x.ts', 'test/helpers/lab.ts', false],
    ['bench/chaos.ts', 'test/helpers/world.ts', false],
  ];
  for (const [from, to, allowed] of cases) {
    assert.equal(
      ruleBroken(from, to) === undefined,
      allowed,
      `${from} → ${to} should be ${allowed ? 'allowed' : 'refused'}: ${ruleBroken(from, to) ?? 'allowed'}`,
    );
  }
});

test('no file in src imports against the direction', () => {
  const inSrc = violations().filter((v) => v.file.startsWith('src/'));
  assert.deepEqual(
    inSrc.map((v) => `${v.file} → ${v.target}: ${v.rule}`),
    [],
    'an import breaks the layering',
  );
});

test('bench/ imports nothing from test/', () => {
  const inBench = violations().filter((v) => v.file.startsWith('bench/'));
  assert.deepEqual(
    inBench.map((v) => `${v.file} → ${v.target}`),
    [],
    'a benchmark imports test code',
  );
});
