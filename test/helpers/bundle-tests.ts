/**
 * Builds the test files `npm test` runs as plain JavaScript: each e2e test file, and all unit test
 * files together, become one esbuild bundle (packages stay imports of node_modules), so no test
 * process starts the TypeScript loader and transforms a few hundred files through it (about a
 * CPU-second per file on the two-core CI machine). esbuild is also what tsx transpiles with.
 *
 *   node --import tsx test/helpers/bundle-tests.ts     prints the bundles, one per line
 *
 * A module keeps its own `import.meta.url` (that of its source file), so the paths the tests and
 * sources build from it (fixtures, scripts run with tsx, the checkout) are those of the checkout.
 * The unit files share one process (their own rule: no root, no child process, fake ports, a
 * manual clock); ALONE names those that check what their own process loaded.
 */
import { readdirSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Inside the checkout's node_modules, so that the bundles' package imports resolve there. */
const OUT = path.join(REPO, 'node_modules/.cache/runner-warden-tests');

/**
 * Unit files run in a process of their own: http-fetch asserts that Node's fetch client was never
 * loaded, which another file could have done first.
 */
const ALONE = ['test/unit/github/http-fetch.test.ts'];

/** The unit files' shared entry; named to sort first, as the test runner orders files by path. */
const UNIT_ENTRY = 'unit:all';

/** Test files under `dir` (relative to the checkout), sorted. */
function testFiles(dir: string): string[] {
  return readdirSync(path.join(REPO, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => path.posix.join(dir, f.split(path.sep).join('/')))
    .sort();
}

/** Gives every TypeScript module its own source file's URL as import.meta.url (see `define` below). */
const ownMetaUrl: Plugin = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onResolve({ filter: /^unit:all$/ }, (a) => ({ path: a.path, namespace: 'unit-entry' }));
    b.onLoad({ filter: /.*/, namespace: 'unit-entry' }, () => ({
      contents: together.map((f) => `import ${JSON.stringify(path.join(REPO, f))};`).join('\n'),
      loader: 'ts',
      resolveDir: REPO,
    }));
    // Prepended on the first line, so that the source map's lines stay those of the file.
    b.onLoad({ filter: /\.ts$/ }, async (a) => ({
      contents: `const __rwMetaUrl = ${JSON.stringify(pathToFileURL(a.path).href)};` + (await readFile(a.path, 'utf8')),
      loader: 'ts',
    }));
  },
};

const unit = testFiles('test/unit');
const together = unit.filter((f) => !ALONE.includes(f));
const separate = [...unit.filter((f) => ALONE.includes(f)), ...testFiles('test/e2e')];

rmSync(OUT, { recursive: true, force: true });
await build({
  entryPoints: [{ in: UNIT_ENTRY, out: '0-unit.test' }, ...separate.map((f) => ({ in: f, out: f.replace(/\.ts$/, '') }))],
  outdir: OUT,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  // Stack traces (run with --enable-source-maps) name the .ts files; the sources stay on disk.
  sourcemap: 'linked',
  sourcesContent: false,
  logLevel: 'warning',
  // Each module's own __rwMetaUrl (prepended by the plugin), not the bundle's location.
  define: { 'import.meta.url': '__rwMetaUrl' },
  plugins: [ownMetaUrl],
});
for (const f of ['0-unit.test.mjs', ...separate.map((f) => f.replace(/\.ts$/, '.mjs'))]) console.log(path.join(OUT, f));
