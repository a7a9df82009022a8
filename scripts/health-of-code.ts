/**
 * `npm run health-of-code`: the measures a next engineer can check in one command.
 *
 * - the largest files in src/ (target: none over MAX_FILE_LINES lines);
 * - classes with more than MAX_METHODS methods (counted by TypeScript's parser, not by regex);
 * - comments that name an issue or a document outside the repository (target: none);
 * - imports against the layering (scripts/import-rules.ts; target: none);
 * - how long `npm run test:unit` takes (target: ≤ UNIT_SECONDS s), unless --no-unit. The target
 *   is "without root": started as root, the script runs it as `nobody` (unit-user.ts) and says so.
 *
 * Exits 1 when a target is missed, so CI can run it. Run from anywhere inside the repository.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { importViolations, sourceFiles } from './import-rules.js';
import { unprivilegedRun } from './unit-user.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** One concern per file: a file past this many lines holds more than one (docs/decisions.md). */
const MAX_FILE_LINES = 450;
/** A class with more methods than this does more than one thing (docs/decisions.md). */
const MAX_METHODS = 15;
/** The unit layer must stay fast enough to run on every save, on any machine, without root. */
const UNIT_SECONDS = 20;
/** Bound on the unit run here, so a hung test cannot hang the report. */
const UNIT_TIMEOUT_MS = 300_000;

/**
 * A comment that points where a reader of the repository cannot follow: an issue number, or a note
 * kept outside the repository (the docs/ files are the repository's own).
 */
const OUTSIDE_REFERENCE =
  /\b[Ii]ssues? #?\d+|(?<![\w&])#\d+\b|\.\.\/shared|\bshared\/|(?<!docs\/runner-)\bcontract(\.md)? ?§|(?<!docs\/)\b(style|attacks|design|peers|test-lab)\.md\b|\btest-lab\b/;

interface Comment {
  file: string;
  line: number;
  text: string;
}

/** Every comment of a TypeScript file, with the line it starts on. */
function commentsOf(file: string, text: string): Comment[] {
  const out: Comment[] = [];
  const scanner = ts.createScanner(ts.ScriptTarget.Latest, false, ts.LanguageVariant.Standard, text);
  for (let kind = scanner.scan(); kind !== ts.SyntaxKind.EndOfFileToken; kind = scanner.scan()) {
    if (kind === ts.SyntaxKind.SingleLineCommentTrivia || kind === ts.SyntaxKind.MultiLineCommentTrivia) {
      const start = scanner.getTokenPos();
      const body = scanner.getTokenText();
      const first = text.slice(0, start).split('\n').length;
      body.split('\n').forEach((l, i) => out.push({ file, line: first + i, text: l.trim() }));
    }
  }
  return out;
}

/** Classes and their method count (methods, getters, setters, constructor excluded). */
function classesOf(file: string, text: string): Array<{ file: string; name: string; methods: number; line: number }> {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: Array<{ file: string; name: string; methods: number; line: number }> = [];
  const visit = (node: ts.Node): void => {
    if (ts.isClassDeclaration(node) || ts.isClassExpression(node)) {
      const methods = node.members.filter((m) => ts.isMethodDeclaration(m) || ts.isGetAccessor(m) || ts.isSetAccessor(m)).length;
      const line = sf.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      out.push({ file, name: node.name?.text ?? '(anonymous)', methods, line });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/**
 * CPU seconds (user + system) of this process's finished children, from /proc (Linux): with the
 * wall time and the load average it tells a slow machine from a slow test layer.
 */
function childCpuSeconds(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
    // Fields 16 and 17 of proc(5) (cutime, cstime); `fields` starts at field 3.
    return (Number(fields[13]) + Number(fields[14])) / ticks;
  } catch {
    return undefined;
  }
}

function main(): number {
  const runUnit = !process.argv.includes('--no-unit');
  let missed = 0;
  const src = sourceFiles(ROOT, 'src');
  const texts = new Map(src.map((f) => [f, readFileSync(path.join(ROOT, f), 'utf8')]));

  const sizes = [...texts]
    .map(([f, t]) => ({ f, lines: t.split('\n').length - (t.endsWith('\n') ? 1 : 0) }))
    .sort((a, b) => b.lines - a.lines);
  const over = sizes.filter((s) => s.lines > MAX_FILE_LINES);
  console.log(`Largest file in src/: ${sizes[0]?.f ?? '-'} (${sizes[0]?.lines ?? 0} lines; target ≤ ${MAX_FILE_LINES})`);
  for (const s of sizes.slice(0, 5)) console.log(`  ${String(s.lines).padStart(5)}  ${s.f}`);
  console.log(`Files over ${MAX_FILE_LINES} lines: ${over.length}`);
  if (over.length > 0) missed++;

  const big = [...texts].flatMap(([f, t]) => classesOf(f, t)).filter((c) => c.methods > MAX_METHODS);
  console.log(`Classes with more than ${MAX_METHODS} methods: ${big.length}`);
  for (const c of big) console.log(`  ${c.file}:${c.line} ${c.name} (${c.methods} methods)`);
  if (big.length > 0) missed++;

  const scanned = ['src', 'test', 'bench', 'scripts'].flatMap((d) => sourceFiles(ROOT, d));
  const outside = scanned
    .flatMap((f) => commentsOf(f, readFileSync(path.join(ROOT, f), 'utf8')))
    .filter((c) => OUTSIDE_REFERENCE.test(c.text) && c.file !== 'scripts/health-of-code.ts');
  console.log(`Comments naming an issue or a document outside the repository: ${outside.length}`);
  for (const c of outside.slice(0, 20)) console.log(`  ${c.file}:${c.line} ${c.text.slice(0, 110)}`);
  if (outside.length > 20) console.log(`  ... and ${outside.length - 20} more`);
  if (outside.length > 0) missed++;

  const violations = importViolations(ROOT);
  console.log(`Import-direction violations: ${violations.length}`);
  for (const v of violations) console.log(`  ${v.file} → ${v.target}: ${v.rule}`);
  if (violations.length > 0) missed++;

  if (runUnit) {
    const as = process.getuid?.() === 0 ? unprivilegedRun(ROOT) : undefined;
    if (as)
      console.log(`npm run test:unit: started as root, so run as ${as.user} (uid ${as.uid})${as.copied ? ' on a copy it can read' : ''}`);
    try {
      const started = process.hrtime.bigint();
      const cpuBefore = childCpuSeconds();
      const r = spawnSync('npm', ['run', '--silent', 'test:unit'], {
        cwd: as?.root ?? ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
        encoding: 'utf8',
        timeout: UNIT_TIMEOUT_MS,
        ...(as ? { uid: as.uid, gid: as.gid, env: as.env } : {}),
      });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const cpuAfter = childCpuSeconds();
      const cpu = cpuBefore === undefined || cpuAfter === undefined ? '' : `; ${(cpuAfter - cpuBefore).toFixed(1)} s of CPU`;
      const load = `load average ${loadavg()[0]?.toFixed(1) ?? '?'} on ${availableParallelism()} cores`;
      if (r.error || r.status === null) {
        console.log(`npm run test:unit: did not finish (${r.error?.message ?? `signal ${r.signal ?? '?'}`})`);
        missed++;
      } else if (r.status !== 0 && /missing script/i.test(r.stderr)) {
        console.log('npm run test:unit: no such script yet');
        missed++;
      } else {
        const who = as ? `as ${as.user}` : process.getuid?.() === 0 ? 'as root' : 'without root';
        console.log(`npm run test:unit: ${seconds.toFixed(1)} s (target ≤ ${UNIT_SECONDS} s), exit ${r.status}, run ${who}${cpu}, ${load}`);
        if (r.status !== 0) console.log(r.stderr.split('\n').slice(-20).join('\n'));
        if (r.status !== 0 || seconds > UNIT_SECONDS) missed++;
      }
    } finally {
      as?.cleanup();
    }
  }
  console.log(missed === 0 ? 'All targets met.' : `Targets missed: ${missed}`);
  return missed === 0 ? 0 : 1;
}

process.exitCode = main();
