/**
 * The import direction of docs/decisions.md ("Layers, and imports that go one way"), as code: reads
 * every import of src/, test/ and bench/ (static, type-only, re-exports and dynamic `import()`,
 * through TypeScript's own pre-processor) and lists those that break it. Used by
 * test/unit/architecture.test.ts and scripts/health-of-code.ts. Reads files only; no child process.
 *
 *   cli → agent → runner, github, recycle, health, (new feature folders) → engine → cleanup → policy → lib
 *
 * A src folder imports only folders to its right; folders of the same rank do not import each
 * other. `sim` imports only `lib` and is imported only by src/cli/demo.ts (and tests, bench).
 * Nothing in src imports test/ or bench/; bench/ does not import test/.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * Rank of each src folder; a folder not listed is a feature (rank 2). `engine` sits just below the
 * other features because `container-hooks` (the hook program the runner starts for container
 * jobs) applies the engine's create policy.
 */
export const RANKS: Readonly<Record<string, number>> = { cli: 0, agent: 1, engine: 2.5, cleanup: 3, policy: 4, lib: 5 };
/** Rank of a feature folder that is not named in RANKS. */
const FEATURE_RANK = 2;
/** The only src file that may import the simulator. */
const SIM_IMPORTER = 'src/cli/demo.ts';

/** One import that breaks the direction. */
export interface ImportViolation {
  /** The importing file, relative to the repository root. */
  file: string;
  /** The imported file, relative to the repository root. */
  target: string;
  /** Why it is not allowed. */
  rule: string;
}

/** TypeScript sources under `dir` (recursively), relative to `root`. */
export function sourceFiles(root: string, dir: string): string[] {
  const abs = path.join(root, dir);
  let names: string[];
  try {
    names = readdirSync(abs, { recursive: true, encoding: 'utf8' });
  } catch {
    return [];
  }
  return names
    .filter((n) => /\.(ts|mts)$/.test(n) && !n.endsWith('.d.ts') && !n.split(path.sep).includes('node_modules'))
    .map((n) => path.join(dir, n))
    .filter((rel) => statSync(path.join(root, rel)).isFile())
    .sort();
}

/** The relative specifiers a file imports (static, type-only, re-exports, dynamic). */
export function importsOf(text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.'));
}

/** `src/<folder>/...` → folder; undefined outside src. */
function srcFolder(rel: string): string | undefined {
  const parts = rel.split('/');
  return parts[0] === 'src' && parts.length > 2 ? parts[1] : undefined;
}

function rankOf(folder: string): number {
  return RANKS[folder] ?? FEATURE_RANK;
}

/** Why `file` may not import `target` (both relative to the root), or undefined when it may. */
export function ruleBroken(file: string, target: string): string | undefined {
  const top = file.split('/')[0];
  const targetTop = target.split('/')[0];
  if (top === 'src' && (targetTop === 'test' || targetTop === 'bench')) return 'src imports nothing from test/ or bench/';
  if (top === 'bench' && targetTop === 'test') return "bench/ does not import test/ (its helpers are not a benchmark's baseline)";
  const from = srcFolder(file);
  const to = srcFolder(target);
  if (from === undefined || to === undefined || from === to) return undefined;
  if (to === 'sim') return file === SIM_IMPORTER ? undefined : `only ${SIM_IMPORTER}, tests and bench import src/sim`;
  if (from === 'sim') return to === 'lib' ? undefined : 'src/sim imports only src/lib';
  const rf = rankOf(from);
  const rt = rankOf(to);
  if (rt > rf) return undefined;
  if (rt === rf) return `features of one rank do not import each other (${from} → ${to})`;
  return `imports go cli → agent → features → cleanup → policy → lib, never back (${from} → ${to})`;
}

/** Every import of src/, test/ and bench/ under `root` that breaks the direction. */
export function importViolations(root: string): ImportViolation[] {
  const out: ImportViolation[] = [];
  for (const file of ['src', 'test', 'bench'].flatMap((d) => sourceFiles(root, d))) {
    const rel = file.split(path.sep).join('/');
    for (const spec of importsOf(readFileSync(path.join(root, file), 'utf8'))) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), spec)).replace(/\.js$/, '.ts');
      const rule = ruleBroken(rel, target);
      if (rule !== undefined) out.push({ file: rel, target, rule });
    }
  }
  return out;
}
