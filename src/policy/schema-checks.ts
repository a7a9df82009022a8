/**
 * The semantic checks behind the schemas' `x-check` keyword (paths that must stay inside their
 * root, globs, listen addresses). Plain functions with no dependency on the schema compiler, so
 * that validators compiled at build time (ajv standalone code, in the bundle) can call them too.
 */
import path from 'node:path';

/** Directories a temp sweep must never be pointed at: a typo must not turn it into a system sweep. */
const SYSTEM_ROOTS = new Set([
  '/',
  '/bin',
  '/boot',
  '/dev',
  '/etc',
  '/home',
  '/lib',
  '/lib32',
  '/lib64',
  '/opt',
  '/proc',
  '/root',
  '/run',
  '/sbin',
  '/srv',
  '/sys',
  '/usr',
  '/var',
]);

/** Longest path accepted anywhere: PATH_MAX on Linux. */
const MAX_PATH = 4096;

function pathShape(value: string): string | null {
  if (value.length === 0) return 'empty';
  if (value.length > MAX_PATH) return `longer than ${MAX_PATH} characters`;
  if (value.includes('\0')) return 'contains a NUL byte';
  return null;
}

function relativeProblem(value: string): string | null {
  const shape = pathShape(value);
  if (shape) return shape;
  if (path.isAbsolute(value)) return 'absolute';
  const parts = value.split('/');
  if (parts.includes('..')) return "'..' escapes the root";
  if (path.posix.normalize(value) === '.' || parts.every((p) => p === '' || p === '.')) {
    return 'names the root itself';
  }
  return null;
}

function absoluteProblem(value: string): string | null {
  const shape = pathShape(value);
  if (shape) return shape;
  if (!value.startsWith('/')) return 'relative';
  if (value.split('/').includes('..')) return "contains '..'";
  return null;
}

/** Checks glob syntax: balanced, non-empty [classes] and {alternatives}, ** only as a whole segment. */
export function globProblem(value: string): string | null {
  const rel = relativeProblem(value);
  if (rel) return rel;
  let bracket = -1;
  let braces = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\') {
      if (i === value.length - 1) return 'ends with a lone backslash';
      i++;
      continue;
    }
    if (bracket >= 0) {
      if (c === ']' && i > bracket + 1 && !(i === bracket + 2 && '!^'.includes(value[bracket + 1] ?? ''))) {
        bracket = -1;
      } else if (c === '/') {
        return "a [class] cannot contain '/'";
      }
      continue;
    }
    if (c === '[') bracket = i;
    else if (c === '{') braces++;
    else if (c === '}') {
      if (braces === 0) return "unbalanced '}'";
      braces--;
    }
  }
  if (bracket >= 0) return "unclosed '['";
  if (braces > 0) return "unclosed '{'";
  const segments = value.split('/').filter((s) => s !== '' && s !== '.');
  for (const s of segments) {
    if (s.includes('**') && s !== '**') return "'**' must be a whole path segment";
  }
  if (segments.every((s) => /^\*+$/.test(s))) return 'matches the whole home directory';
  return null;
}

function listenProblem(value: string): string | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(value);
  if (!m) return 'not host:port';
  if (Number(m[2]) > 65535) return 'port above 65535';
  return null;
}

/** The semantic checks behind `x-check`; each returns why a value fails, or null. */
export const CHECKS: Record<string, (value: string) => string | null> = {
  'relative-path': relativeProblem,
  'absolute-path': absoluteProblem,
  'temp-dir': (v) =>
    absoluteProblem(v) ?? (SYSTEM_ROOTS.has(path.posix.normalize(v).replace(/(.)\/$/, '$1')) ? 'a system directory' : null),
  glob: globProblem,
  'listen-address': listenProblem,
};
