/**
 * `npm run build`: the agent as one esbuild bundle with its dependencies, in dist/.
 *
 *   dist/runner-warden.mjs        the agent and every command but `demo`: what a host runs
 *                                 (bin/runner-warden.js imports it)
 *   dist/runner-warden-demo.mjs   `demo`: the agent plus the runner simulator and the fake GitHub
 *                                 API; imported by `runner-warden demo` only
 *   dist/runner-warden-aws.mjs    the AWS SDK, imported by the aws-asg recycle provider when it
 *                                 recycles (once in a host's life)
 *   dist/runner-warden-si.mjs     systeminformation, imported only by host figures a caller asks
 *                                 of it (the agent reads /proc itself): never by an idle agent
 *   dist/container-hooks.js       the container hooks (src/container-hooks/main.ts) the runner
 *                                 runs with its own node for container: and services: jobs
 *                                 (ACTIONS_RUNNER_CONTAINER_HOOKS names it; the runner takes .js)
 *   dist/THIRD-PARTY-NOTICES.txt  the licences of the bundled packages
 *
 * The JSON Schemas are compiled at build time (scripts/build-schemas.ts); the bundle carries the
 * generated validators and no schema compiler. The simulated runner's listener and worker, which
 * the demo writes into its runner installation, are bundled here too: the installed agent has no
 * esbuild and no TypeScript sources.
 *
 * The output is ASCII only: V8 keeps a module's source text on the heap for its life, one byte a
 * character, or two for the whole file once a single character is beyond Latin-1 (a "\u221a" in a
 * regular expression doubled the agent's 2 MiB of source).
 *
 *   node --import tsx scripts/build.ts [--out DIR] [--metafile]
 */
import { build, type Plugin } from 'esbuild';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSchemas, type GeneratedSchemas } from './build-schemas.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Node 20.19 is the oldest line the agent supports (package.json engines). */
const TARGET = 'node20.19';
/** The container hooks' file in dist/: src/container-hooks/hooks.sh and the images name it. */
export const CONTAINER_HOOKS_FILE = 'container-hooks.js';
/** Bundled CommonJS dependencies call require(); an ESM bundle gets one from node:module. */
const REQUIRE_BANNER =
  "import { createRequire as __rwCreateRequire } from 'node:module'; const require = __rwCreateRequire(import.meta.url);";

/** The simulated listener and worker, bundled as src/sim/runner/install.ts bundles them in a checkout. */
async function simRunnerBundles(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of ['listener.ts', 'worker.ts']) {
    const r = await build({
      entryPoints: [path.join(ROOT, 'src/sim/runner', entry)],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: TARGET,
      write: false,
      logLevel: 'silent',
      banner: { js: REQUIRE_BANNER },
    });
    const text = r.outputFiles[0]?.text;
    if (!text) throw new Error(`build: the simulator's ${entry} produced no output`);
    out[entry] = text;
  }
  return out;
}

/** Stands in for esbuild inside the simulator's installer: hands out the listener and worker built above. */
function prebuiltEsbuildModule(bundles: Record<string, string>): string {
  return [
    `const BUNDLES = ${JSON.stringify(bundles)};`,
    'export async function build(options) {',
    '  const entry = String(options.entryPoints[0]);',
    "  const text = BUNDLES[entry.slice(entry.lastIndexOf('/') + 1)];",
    '  if (text === undefined) throw new Error(`runner-warden bundle: no prebuilt simulator file for ${entry}`);',
    '  return { outputFiles: [{ text }], errors: [], warnings: [] };',
    '}',
    '',
  ].join('\n');
}

/** Swaps, inside the bundle only, the modules that would compile or build at run time. */
function substitutions(gen: GeneratedSchemas, simEsbuild: string): Plugin {
  const from = (importer: string, rel: string): boolean => importer === path.join(ROOT, rel);
  return {
    name: 'runner-warden-substitutions',
    setup(b) {
      b.onResolve({ filter: /\/schema-precompiled\.js$/ }, (a) =>
        from(a.importer, 'src/policy/schema.ts') ? { path: gen.precompiledModule } : undefined,
      );
      b.onResolve({ filter: /^(ajv\/dist\/2020\.js|ajv-formats)$/ }, (a) =>
        from(a.importer, 'src/policy/schema.ts') ? { path: gen.noCompilerModule } : undefined,
      );
      b.onResolve({ filter: /^esbuild$/ }, (a) =>
        from(a.importer, 'src/sim/runner/install.ts') ? { path: 'sim-esbuild', namespace: 'runner-warden-prebuilt' } : undefined,
      );
      b.onLoad({ filter: /^sim-esbuild$/, namespace: 'runner-warden-prebuilt' }, () => ({ contents: simEsbuild, loader: 'js' }));
    },
  };
}

/**
 * Packages the agent imports on first use (`await import(...)`), each bundled into a file of its
 * own: inside the agent's file even a module never run costs its source text and a pre-parse.
 */
const LAZY_PACKAGES: Record<string, { file: string; exports: string }> = {
  // The aws-asg recycle provider, once in a host's life.
  '@aws-sdk/client-auto-scaling': { file: 'runner-warden-aws.mjs', exports: '*' },
  // Host figures read /proc (proc-figures.ts); 433 KiB of systeminformation only as a fallback.
  // A CommonJS package: its importer takes the default export.
  systeminformation: { file: 'runner-warden-si.mjs', exports: 'default' },
};

/**
 * Parts of packages the agent never runs, cut at their import so an idle agent does not load them
 * (each entry: the importer inside node_modules, or `src` for our own code; the import; what stands
 * for it). Found with the idle agent's list of loaded built-ins (bench/cold-start.ts).
 */
const PACKAGE_CUTS: { importer: string; specifier: string; contents: string; why: string }[] = [
  {
    importer: 'src',
    specifier: 'prom-client',
    why:
      "prom-client's index loads its push gateway client (http, https, zlib), default process " +
      'metrics (v8, perf_hooks), the cluster aggregator (cluster) and Summary; the agent uses these four',
    contents: [
      "export { default as Registry } from 'prom-client/lib/registry.js';",
      "export { default as Counter } from 'prom-client/lib/counter.js';",
      "export { default as Gauge } from 'prom-client/lib/gauge.js';",
      "export { default as Histogram } from 'prom-client/lib/histogram.js';",
    ].join('\n'),
  },
  {
    importer: 'node_modules/pino/lib/transport.js',
    specifier: 'thread-stream',
    why: "pino's transports run in worker threads; the agent logs to a file descriptor (src/lib/log.ts), never a transport",
    contents:
      "module.exports = class ThreadStream { constructor() { throw new Error('runner-warden bundle: pino transports (worker threads) are not bundled'); } };",
  },
  {
    importer: 'node_modules/sonic-boom/index.js',
    specifier: 'assert',
    why:
      "sonic-boom calls assert() once, on its file descriptor's type; Node's assert module is 0.5 MiB of an idle " +
      'agent (its sources, AssertionError and the diff printer) loaded for that call',
    contents:
      "module.exports = function assert(ok, message) { if (!ok) throw Object.assign(new Error(message), { code: 'ERR_ASSERTION' }); };",
  },
  {
    importer: 'node_modules/pino/lib/tools.js',
    specifier: 'worker_threads',
    why:
      'pino reads isMainThread only; the bundle starts no worker thread (the build fails if anything else ' +
      'in it imports worker_threads), so pino runs on the main thread',
    contents: 'module.exports = { isMainThread: true };',
  },
];

function packageCuts(): Plugin {
  return {
    name: 'runner-warden-package-cuts',
    setup(b) {
      for (const [i, cut] of PACKAGE_CUTS.entries()) {
        const filter = new RegExp(`^(node:)?${cut.specifier.replace(/[/.]/g, (c) => `\\${c}`)}$`);
        b.onResolve({ filter }, (a) =>
          (cut.importer === 'src' ? a.importer.startsWith(path.join(ROOT, 'src') + path.sep) : a.importer === path.join(ROOT, cut.importer))
            ? { path: String(i), namespace: 'runner-warden-cut' }
            : undefined,
        );
      }
      b.onLoad({ filter: /.*/, namespace: 'runner-warden-cut' }, (a) => ({
        contents: PACKAGE_CUTS[Number(a.path)]?.contents,
        loader: 'js',
        resolveDir: ROOT,
      }));
    },
  };
}

/** Fails the build when an input of `outFile` other than the cut's own importer imports worker_threads (the pino cut assumes none does). */
function checkNoWorkerThreads(
  meta: { inputs: Record<string, { imports?: { path: string }[] }> },
  outFile: string,
  inputsOfOut: string[],
): void {
  for (const input of inputsOfOut) {
    for (const imp of meta.inputs[input]?.imports ?? []) {
      if (/^(node:)?worker_threads$/.test(imp.path))
        throw new Error(`build: ${input} imports worker_threads into ${outFile}; the pino cut (isMainThread: true) no longer holds`);
    }
  }
}

/**
 * The agent's `performance`, for `performance.now()` only: Node's global of that name loads
 * perf_hooks and ten modules behind it (marks, observers, timerify, histograms) on first touch,
 * about 0.3 MiB of an idle agent that times its walks and cleanups with it. The stand-in reads
 * the same monotonic clock (process.hrtime) with its own origin; durations are all it is used for,
 * and checkPerformanceUse fails the build for any other use.
 */
const PERFORMANCE_SHIM = 'export const performance = { now: () => { const [s, ns] = process.hrtime(); return s * 1e3 + ns / 1e6; } };\n';

/** The first use of `performance` in `source` other than `performance.now()`, or undefined. */
export function performanceMisuse(source: string): string | undefined {
  return /\bglobalThis\.performance\b|\bperformance\.(?!now\()\w+|\bperformance\[/.exec(source)?.[0];
}

/** Fails the build when an input of the agent's or the demo's file uses `performance` for more than `now()`. */
async function checkPerformanceUse(inputs: string[]): Promise<void> {
  for (const input of inputs) {
    if (!/\.(ts|js|mjs|cjs)$/.test(input)) continue;
    const bad = performanceMisuse(await readFile(path.join(ROOT, input), 'utf8').catch(() => ''));
    if (bad) throw new Error(`build: ${input} uses "${bad}"; the agent's performance stand-in (scripts/build.ts) has now() only`);
  }
}

/** Imports that stay imports, of the bundle's other files: the demo and the lazy packages. */
function lazyFiles(): Plugin {
  return {
    name: 'runner-warden-lazy-files',
    setup(b) {
      b.onResolve({ filter: /^\.\/demo\.js$/ }, (a) =>
        a.importer === path.join(ROOT, 'src/cli/main.ts') ? { path: './runner-warden-demo.mjs', external: true } : undefined,
      );
      for (const [pkg, { file }] of Object.entries(LAZY_PACKAGES)) {
        const filter = new RegExp(`^${pkg.replace(/[/.]/g, (c) => `\\${c}`)}$`);
        b.onResolve({ filter }, () => ({ path: `./${file}`, external: true }));
      }
    },
  };
}

/**
 * Node's own modules, imported as CommonJS (`require`) rather than as ES modules. An ES import of
 * a built-in makes Node build the module's ESM facade, which reads every export, getters
 * included: on Node 26, `import http from 'node:http'` runs http's WebSocket, CloseEvent and
 * MessageEvent getters and so loads Node's whole fetch implementation (undici), and the imports
 * of crypto, tls and assert that come with it. Measured on 26.12.1: +17 MiB RSS for the ES
 * import, +0.8 MiB for require('http'). The module standing for it in the bundle (builtinFacade)
 * reads only data properties at load.
 */
function builtinsAsRequire(): Plugin {
  const names = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
  return {
    name: 'runner-warden-builtins-as-require',
    setup(b) {
      b.onResolve({ filter: /^[a-z_:/]+$/ }, (a) => {
        if (!names.has(a.path)) return undefined;
        if (a.kind !== 'import-statement' && a.kind !== 'dynamic-import') return { path: a.path, external: true };
        // Our own code gets the facade below; packages (the AWS SDK imports accessors such as
        // fs.ReadStream by name) keep esbuild's CommonJS interop.
        const ours = a.importer.startsWith(path.join(ROOT, 'src') + path.sep);
        return { path: a.path, namespace: ours ? 'runner-warden-builtin' : 'runner-warden-builtin-cjs' };
      });
      b.onLoad({ filter: /.*/, namespace: 'runner-warden-builtin' }, (a) => ({ contents: builtinFacade(a.path), loader: 'js' }));
      b.onLoad({ filter: /.*/, namespace: 'runner-warden-builtin-cjs' }, (a) => ({
        contents: `module.exports = require(${JSON.stringify(a.path.startsWith('node:') ? a.path : `node:${a.path}`)});`,
        loader: 'js',
      }));
    },
  };
}

/**
 * The ES module standing for one built-in inside the bundle: `require`s it once, exports it as
 * the default and each of its data properties as a named export. Not a CommonJS wrapper: for
 * each module importing a CommonJS one, esbuild's interop (`__toESM`) copies every property onto
 * a new object as a getter, a closure and a context each; with about 200 imports of fs, path,
 * fs/promises, crypto... that was 9,900 getters, about 2.5 MiB of the idle agent's heap.
 * Accessor properties (Node 26's http.WebSocket, which loads undici...) are not read at load, so
 * not exported by name: a named import of one fails the build ("No matching export"); the default
 * import reads it when used. The accessors below are read at load, the code importing them by name.
 */
const ACCESSORS_READ_AT_LOAD: Record<string, string[]> = {
  // The container hooks' `import { promises as fsp } from 'node:fs'`: fs/promises, loaded anyway.
  'node:fs': ['promises'],
};

export function builtinFacade(specifier: string): string {
  const id = specifier.startsWith('node:') ? specifier : `node:${specifier}`;
  const mod = createRequire(import.meta.url)(id) as Record<string, unknown>;
  const names = Object.getOwnPropertyNames(mod).filter(
    (n) =>
      n !== 'default' &&
      /^[A-Za-z_$][\w$]*$/.test(n) &&
      ('value' in (Object.getOwnPropertyDescriptor(mod, n) ?? {}) || ACCESSORS_READ_AT_LOAD[id]?.includes(n)),
  );
  return [
    `const m = require(${JSON.stringify(id)});`,
    'export default m;',
    ...names.map((n, i) => `const x${i} = m.${n}; export { x${i} as ${n} };`),
    '',
  ].join('\n');
}

/**
 * Rewrites every character beyond ASCII as its \u escape. In the string, template, regular
 * expression and identifier positions where esbuild leaves them, the escape means the same
 * character; the bundle has no comments (legalComments: none, minified).
 */
export function asciiOnly(js: string): string {
  return js.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Concatenates the licence texts of every package that ended up in the bundle. */
async function thirdPartyNotices(inputs: string[]): Promise<string> {
  const dirs = new Set<string>();
  for (const input of inputs) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/.][^/]*)\//.exec(input);
    if (m?.[1]) dirs.add(path.resolve(ROOT, m[1]));
  }
  const parts: string[] = [];
  for (const dir of [...dirs].sort()) {
    const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    const files = (await readdir(dir)).filter((f) => /^(licen[sc]e|copying|notice)/i.test(f));
    const texts = await Promise.all(files.map((f) => readFile(path.join(dir, f), 'utf8')));
    parts.push(
      `${pkg.name}@${pkg.version} (${pkg.license ?? 'see below'})\n\n${texts.join('\n').trim() || '(no licence file in the package)'}\n`,
    );
  }
  return `Packages bundled into runner-warden's dist/ files, with their licences.\n\n${parts.join(`\n${'-'.repeat(72)}\n\n`)}`;
}

/** Builds dist/ (or `outDir`); returns the files written with their sizes. */
export async function buildBundle(outDir = path.join(ROOT, 'dist')): Promise<{ file: string; bytes: number }[]> {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const genDir = path.join(ROOT, 'node_modules/.cache/runner-warden-build');
  await rm(genDir, { recursive: true, force: true });
  const gen = await buildSchemas(ROOT, genDir);
  const sim = await simRunnerBundles();
  // Built beside dist/ and swapped in whole: a failed build leaves the previous one working.
  const finalDir = outDir;
  outDir = `${finalDir}.building`;
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const common = {
    bundle: true,
    platform: 'node' as const,
    format: 'esm' as const,
    target: TARGET,
    minifyWhitespace: true,
    minifySyntax: true,
    // Local names shortened: V8 keeps the whole source text on the heap for the process's life
    // (1.64 -> 1.26 MiB for runner-warden.mjs; an import of it measured 1.0 MiB less RSS).
    minifyIdentifiers: true,
    // Functions' and classes' own names stay: readable in stack traces and in errors' constructor names.
    keepNames: true,
    legalComments: 'none' as const,
    metafile: true,
    logLevel: 'warning' as const,
    banner: { js: REQUIRE_BANNER },
    define: {
      __RUNNER_WARDEN_VERSION__: JSON.stringify(pkg.version),
      __RUNNER_WARDEN_BUNDLE__: 'true',
    },
  };
  const plugins = [substitutions(gen, prebuiltEsbuildModule(sim)), lazyFiles(), packageCuts(), builtinsAsRequire()];
  const shim = path.join(genDir, 'performance-now.mjs');
  await writeFile(shim, PERFORMANCE_SHIM);
  const agentOnly = { inject: [shim] };
  const results = await Promise.all([
    // The agent: every command in one file; `demo` and the AWS SDK are imported from their own.
    build({
      ...common,
      ...agentOnly,
      entryPoints: [path.join(ROOT, 'src/cli/main.ts')],
      outfile: path.join(outDir, 'runner-warden.mjs'),
      plugins,
    }),
    // The demo: the agent again, plus the simulator and the fake API (never loaded by `run`).
    build({
      ...common,
      ...agentOnly,
      entryPoints: [path.join(ROOT, 'src/cli/demo.ts')],
      outfile: path.join(outDir, 'runner-warden-demo.mjs'),
      plugins,
    }),
    // The container hooks: a program of their own, started by the runner once per hook call.
    // An ES module like the rest (the tree's package.json says "type": "module").
    build({
      ...common,
      entryPoints: [path.join(ROOT, 'src/container-hooks/main.ts')],
      outfile: path.join(outDir, CONTAINER_HOOKS_FILE),
      plugins: [builtinsAsRequire()],
    }),
    // The lazy packages, each re-exported as its importer takes it.
    ...Object.entries(LAZY_PACKAGES).map(([pkg, { file, exports }]) =>
      build({
        ...common,
        stdin: {
          contents: exports === '*' ? `export * from '${pkg}';` : `export { default } from '${pkg}';`,
          resolveDir: ROOT,
          sourcefile: `${file.replace(/\.mjs$/, '')}.js`,
        },
        outfile: path.join(outDir, file),
        plugins: [builtinsAsRequire()],
      }),
    ),
  ]);
  for (const r of results.slice(0, 2)) {
    for (const [out, o] of Object.entries(r.metafile?.outputs ?? {})) {
      checkNoWorkerThreads(r.metafile ?? { inputs: {} }, out, Object.keys(o.inputs));
      await checkPerformanceUse(Object.keys(o.inputs));
    }
  }
  for (const f of await readdir(outDir)) {
    if (!/\.m?js$/.test(f)) continue;
    const js = await readFile(path.join(outDir, f), 'utf8');
    const ascii = asciiOnly(js);
    if (ascii !== js) await writeFile(path.join(outDir, f), ascii);
  }
  const result = {
    metafile: {
      inputs: Object.assign({}, ...results.map((r) => r.metafile?.inputs ?? {})) as Record<string, unknown>,
      outputs: Object.assign({}, ...results.map((r) => r.metafile?.outputs ?? {})) as Record<string, unknown>,
    },
  };
  await writeFile(path.join(outDir, 'THIRD-PARTY-NOTICES.txt'), await thirdPartyNotices(Object.keys(result.metafile.inputs)));
  if (process.argv.includes('--metafile')) await writeFile(path.join(outDir, 'meta.json'), JSON.stringify(result.metafile));
  await rm(finalDir, { recursive: true, force: true });
  await rename(outDir, finalDir);
  const files: { file: string; bytes: number }[] = [];
  for (const f of (await readdir(finalDir)).sort()) files.push({ file: f, bytes: (await stat(path.join(finalDir, f))).size });
  return files;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--out');
  const out = i >= 0 && process.argv[i + 1] ? path.resolve(process.argv[i + 1] as string) : undefined;
  const files = await buildBundle(out);
  let total = 0;
  for (const { file, bytes } of files) {
    if (file.endsWith('.mjs')) total += bytes;
    process.stdout.write(`  ${file.padEnd(44)} ${(bytes / 1024).toFixed(0).padStart(6)} KiB\n`);
  }
  process.stdout.write(
    `build: ${files.length} files in ${path.relative(ROOT, out ?? path.join(ROOT, 'dist')) || '.'}, JavaScript ${(total / 1024 / 1024).toFixed(2)} MiB\n`,
  );
  if (!existsSync(path.join(out ?? path.join(ROOT, 'dist'), 'runner-warden.mjs'))) process.exitCode = 1;
}
