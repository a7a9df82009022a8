/**
 * Reading a config or policy file safely and pointing at its lines: a bounded read (size cap,
 * regular files only, UTF-8 text only), YAML/JSON parsing with duplicate keys and alias bombs
 * refused, and the mapping from a JSON path to `line:col` in the file.
 */
import { open } from 'node:fs/promises';
import { parseDocument, LineCounter, isAlias, isMap, isSeq, isScalar, isPair, type Document, type Node as YamlNode } from 'yaml';

/**
 * Largest file accepted. A policy is a few KiB; 256 KiB leaves room for long comment headers while
 * keeping parse time and memory bounded (a 50 MB file is refused from its size, before any read).
 */
export const MAX_FILE_BYTES = 256 * 1024;

/**
 * Alias expansions allowed when turning YAML into data. Policies rarely need anchors at all; a
 * small number lets a label list be shared while refusing "billion laughs" expansions early.
 */
export const MAX_ALIAS_COUNT = 50;

/**
 * Deepest bracket nesting accepted. A policy is at most about 6 levels deep; a file of nested
 * `[[[[...` would otherwise make the YAML parser spend seconds and deep recursion on it.
 */
export const MAX_FLOW_DEPTH = 64;

/** One JSON path segment: an object key or an array index. */
export type PathSegment = string | number;

/** One problem in a file, located when possible. */
export interface Problem {
  /** File as the user named it, or `$RUNNER_WARDEN_X` for an environment override. */
  source: string;
  line?: number;
  col?: number;
  path: PathSegment[];
  message: string;
}

/** A file read and parsed: its YAML document (for locating nodes) and its data. */
export interface ParsedSource {
  file: string;
  text: string;
  doc?: Document;
  lineCounter: LineCounter;
  value: unknown;
}

/** `cleanup.workdir.keep[1]`; `(root)` for the empty path. */
export function formatPath(segments: PathSegment[]): string {
  if (segments.length === 0) return '(root)';
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

/** `file:line:col: path: message` (the form every error of this module takes). */
export function formatProblem(p: Problem): string {
  const where = p.line !== undefined ? `${p.source}:${p.line}:${p.col ?? 1}` : p.source;
  return `${where}: ${formatPath(p.path)}: ${p.message}`;
}

/** Sorts problems by source, line and column, keeping ties in order found. */
export function sortProblems(problems: Problem[]): Problem[] {
  return problems
    .map((p, i) => ({ p, i }))
    .sort(
      (a, b) =>
        (a.p.source < b.p.source ? -1 : a.p.source > b.p.source ? 1 : 0) ||
        (a.p.line ?? 0) - (b.p.line ?? 0) ||
        (a.p.col ?? 0) - (b.p.col ?? 0) ||
        a.i - b.i,
    )
    .map((x) => x.p);
}

/** A short, safe rendering of a value for "got ...". */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (typeof value === 'object') return Object.keys(value).length === 0 ? 'an empty mapping' : 'a mapping';
  if (typeof value === 'string') {
    const shown = value.length > 60 ? `${value.slice(0, 57)}...` : value;
    return JSON.stringify(shown);
  }
  // What is left is a number, boolean or bigint: a parsed file holds nothing else.
  return `${value as number | boolean | bigint}`;
}

function lineColAt(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, col: offset - start + 1 };
}

function byteToCharOffset(bytes: Uint8Array, byteOffset: number): number {
  return new TextDecoder('utf-8').decode(bytes.subarray(0, byteOffset)).length;
}

/**
 * Reads `file` as text, refusing what a policy cannot be: not a regular file, larger than
 * MAX_FILE_BYTES (decided from fstat, before reading), binary or not UTF-8. Throws nothing for
 * these: they come back as problems.
 */
export async function readText(file: string): Promise<{ text?: string; problems: Problem[] }> {
  const problem = (message: string, at?: { line: number; col: number }): { problems: Problem[] } => ({
    problems: [{ source: file, line: at?.line ?? 1, col: at?.col ?? 1, path: [], message }],
  });
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { problems: [{ source: file, path: [], message: 'expected a file, got nothing (not found)' }] };
    if (code === 'EISDIR') return { problems: [{ source: file, path: [], message: 'expected a file, got a directory' }] };
    return { problems: [{ source: file, path: [], message: `expected a readable file, got ${code ?? 'an error'}` }] };
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) return { problems: [{ source: file, path: [], message: 'expected a file, got a directory' }] };
    if (!st.isFile()) return { problems: [{ source: file, path: [], message: 'expected a regular file, got a device, socket or pipe' }] };
    if (st.size > MAX_FILE_BYTES) {
      return problem(`expected at most ${MAX_FILE_BYTES} bytes, got a file of ${st.size} bytes`);
    }
    // Read at most one byte past the cap: the file may grow between fstat and read.
    const buf = Buffer.alloc(MAX_FILE_BYTES + 1);
    let length = 0;
    while (length < buf.length) {
      const { bytesRead } = await fh.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > MAX_FILE_BYTES) return problem(`expected at most ${MAX_FILE_BYTES} bytes, got a file that grew past that`);
    const bytes = buf.subarray(0, length);
    const nul = bytes.indexOf(0);
    if (nul >= 0) {
      return problem(
        'expected YAML or JSON text, got binary data (a NUL byte)',
        lineColAt(new TextDecoder('utf-8').decode(bytes.subarray(0, nul)), byteToCharOffset(bytes, nul)),
      );
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
    } catch {
      const bad = firstInvalidUtf8(bytes);
      const before = new TextDecoder('utf-8').decode(bytes.subarray(0, bad));
      return problem('expected UTF-8 text, got bytes that are not UTF-8', lineColAt(before, before.length));
    }
    return { text, problems: [] };
  } finally {
    await fh.close();
  }
}

/** Offset of the first byte that breaks UTF-8 (longest valid prefix, by bisection). */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let lo = 0;
  let hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    try {
      // stream: a prefix that ends inside a multi-byte character is not an error yet.
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true });
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  return lo;
}

/** The deepest `[`/`{` nesting in `text`, stopping early past `limit`. Quotes are not parsed: false alarms need 64 brackets in strings. */
function flowDepthExceeds(text: string, limit: number): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 91 || c === 123) {
      depth++;
      if (depth > limit) return i;
    } else if ((c === 93 || c === 125) && depth > 0) depth--;
  }
  return -1;
}

/**
 * Parses YAML (JSON is YAML) into data and its document. Duplicate keys, syntax errors, several
 * documents, alias bombs, deep nesting and empty files become problems with line and column.
 */
export function parseText(file: string, text: string): ParsedSource & { problems: Problem[] } {
  const lineCounter = new LineCounter();
  const base = { file, text, lineCounter, value: undefined as unknown };
  const at = (offset: number): { line: number; col: number } => lineColAt(text, offset);
  const deep = flowDepthExceeds(text, MAX_FLOW_DEPTH);
  if (deep >= 0) {
    return {
      ...base,
      problems: [{ source: file, ...at(deep), path: [], message: `expected at most ${MAX_FLOW_DEPTH} levels of nesting, got more` }],
    };
  }
  let doc: Document;
  try {
    doc = parseDocument(text, { uniqueKeys: true, lineCounter, prettyErrors: false, version: '1.2', strict: true });
  } catch (err) {
    return {
      ...base,
      problems: [
        {
          source: file,
          line: 1,
          col: 1,
          path: [],
          message: `expected YAML or JSON, got text the parser rejects (${(err as Error).message})`,
        },
      ],
    };
  }
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e): Problem => {
      const pos = at(e.pos[0]);
      const first = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      return { source: file, ...pos, path: e.code === 'MULTIPLE_DOCS' ? [] : pathAt(doc, e.pos[0]), message: yamlMessage(e.code, first) };
    });
    return { ...base, doc, problems };
  }
  if (doc.contents === null) {
    return { ...base, doc, problems: [{ source: file, line: 1, col: 1, path: [], message: 'expected a mapping, got an empty document' }] };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message =
      err instanceof ReferenceError && /alias/i.test(err.message)
        ? `expected at most ${MAX_ALIAS_COUNT} alias expansions, got an alias bomb (excessive aliasing)`
        : `expected plain YAML data, got ${(err as Error).message}`;
    return { ...base, doc, problems: [{ source: file, line: 1, col: 1, path: [], message }] };
  }
  return { ...base, doc, value, problems: [] };
}

function yamlMessage(code: string, message: string): string {
  if (code === 'DUPLICATE_KEY') return 'expected unique keys, got a duplicate key';
  if (code === 'MULTIPLE_DOCS') return 'expected one document, got several (---)';
  return `expected valid YAML, got a syntax error: ${message}`;
}

/**
 * Where the node at `segments` starts (its key, when `atKey` and the last segment is a key).
 * Falls back to the deepest node that exists, so a missing key points at its parent.
 */
export function locate(src: ParsedSource, segments: PathSegment[], atKey = false): { line: number; col: number } {
  const doc = src.doc;
  if (!doc) return { line: 1, col: 1 };
  let node: unknown = doc.contents;
  let offset = rangeStart(node) ?? 0;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && keyOf(p.key) === String(seg));
      if (!pair) break;
      if (atKey && i === segments.length - 1) {
        offset = rangeStart(pair.key) ?? offset;
        break;
      }
      node = pair.value;
      offset = rangeStart(node) ?? rangeStart(pair.key) ?? offset;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      node = item;
      offset = rangeStart(node) ?? offset;
    } else {
      break;
    }
  }
  const pos = src.lineCounter.linePos(offset);
  return { line: pos.line, col: pos.col };
}

/** The JSON path of the deepest node whose source range contains `offset` (best effort). */
function pathAt(doc: Document, offset: number): PathSegment[] {
  const out: PathSegment[] = [];
  const inside = (n: unknown): boolean => {
    const r = (n as YamlNode | null | undefined)?.range;
    return !!r && r[0] <= offset && offset <= r[2];
  };
  let node: unknown = doc.contents;
  for (let depth = 0; depth < MAX_FLOW_DEPTH && node; depth++) {
    if (isMap(node)) {
      const pair = node.items.find((p) => inside(p.value) || inside(p.key));
      if (!pair) break;
      const key = keyOf(pair.key);
      if (key === undefined) break;
      out.push(key);
      if (!inside(pair.value)) break;
      node = pair.value;
    } else if (isSeq(node)) {
      const index = node.items.findIndex((item) => inside(item));
      if (index < 0) break;
      out.push(index);
      node = node.items[index];
    } else break;
  }
  return out;
}

function keyOf(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as YamlNode | null | undefined)?.range;
  return range ? range[0] : undefined;
}
