/**
 * The bundle's stand-ins for Node's built-ins (scripts/build.ts builtinFacade): one ES module per
 * built-in that exports its data properties by name and reads no accessor at load (an accessor
 * such as Node 26's http.WebSocket loads undici when read), and no per-importer copy of the
 * module's properties. Pure text checks and an evaluation of the generated code in this process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import vm from 'node:vm';
import { builtinFacade } from '../../../scripts/build.js';

const require = createRequire(import.meta.url);

/** The names a facade exports, read from its text (`export { xN as name }`). */
function exportedNames(text: string): string[] {
  return [...text.matchAll(/export \{ x\d+ as ([\w$]+) \}/g)].map((m) => m[1] as string);
}

test('a facade exports every data property of the built-in by name, and the module as default', () => {
  for (const id of ['node:fs', 'node:path', 'node:crypto', 'node:child_process', 'node:os']) {
    const mod = require(id) as Record<string, unknown>;
    const text = builtinFacade(id);
    assert.match(text, /^const m = require\("node:[a-z_/]+"\);\nexport default m;/);
    const names = new Set(exportedNames(text));
    for (const n of Object.getOwnPropertyNames(mod)) {
      const d = Object.getOwnPropertyDescriptor(mod, n);
      if (d && 'value' in d && /^[A-Za-z_$][\w$]*$/.test(n) && n !== 'default') assert.ok(names.has(n), `${id}: ${n} not exported`);
    }
  }
});

test('a facade reads no accessor of the built-in at load, but the ones it lists (fs.promises)', () => {
  for (const id of ['node:http', 'node:https', 'node:fs', 'node:net', 'node:stream', 'node:util', 'node:crypto']) {
    const mod = require(id) as Record<string, unknown>;
    for (const n of exportedNames(builtinFacade(id))) {
      const d = Object.getOwnPropertyDescriptor(mod, n);
      assert.ok(d, `${id}: ${n} exported but absent`);
      if (!('value' in d)) assert.deepEqual([id, n], ['node:fs', 'promises'], `${id}: accessor ${n} read at load`);
    }
  }
  // Node 26's http.WebSocket (an accessor that loads undici) is never named.
  assert.ok(!exportedNames(builtinFacade('node:http')).includes('WebSocket'));
});

test("a facade's code runs: the named exports are the built-in's own values", () => {
  const text = builtinFacade('path');
  // Run the generated module body as a function of require, collecting its exports.
  const exports: Record<string, unknown> = {};
  const body = text
    .replace('export default m;', 'exports.default = m;')
    .replace(/export \{ (x\d+) as ([\w$]+) \};/g, 'exports["$2"] = $1;');
  (
    vm.runInThisContext(`(function (require, exports) {
${body}
})`) as (r: NodeRequire, e: Record<string, unknown>) => void
  )(require, exports);
  const path = require('node:path') as Record<string, unknown>;
  assert.equal(exports.default, path);
  assert.equal(exports.join, path.join);
  assert.equal(exports.sep, path.sep);
});
