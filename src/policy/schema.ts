/**
 * The two JSON Schemas (the single source of the config formats, their TypeScript types and
 * policies/README.md) compiled with ajv 2020 in strict mode. Compilation is lazy: nothing is built
 * at import time (style.md rule 2).
 *
 * Vocabulary added to JSON Schema (registered as ajv keywords so strict mode accepts them):
 * - `x-check`: a semantic check by name (paths that must stay inside their root, globs, listen
 *   addresses); see CHECKS.
 * - `x-expected`: the human phrase used in errors about that node ("expected <x-expected>, got ...").
 * - `x-merge`: a policy list that a file may patch with `{append, remove}` instead of replacing it.
 * - `x-derived`: filled in by the loader when absent (present in the output type).
 * - `x-file-only`: exists in files but not in the effective value (e.g. `extends`).
 */
import { Ajv2020, type ValidateFunction, type ErrorObject } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import path from 'node:path';
import hostSchemaJson from './schema/host-config.schema.json' with { type: 'json' };
import policySchemaJson from './schema/policy.schema.json' with { type: 'json' };

/** A JSON Schema node as plain data (we only read the keywords we use). */
export type SchemaNode = Record<string, unknown>;

/** The host config schema, as stored in src/policy/schema/host-config.schema.json. */
export const hostConfigSchema = hostSchemaJson as unknown as SchemaNode;
/** The team policy schema, as stored in src/policy/schema/policy.schema.json. */
export const policySchema = policySchemaJson as unknown as SchemaNode;

// ajv-formats is CommonJS with `module.exports = formatsPlugin` plus `.default`.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as unknown as (ajv: Ajv2020) => Ajv2020;

/** Directories a temp sweep must never be pointed at: a typo must not turn it into a system sweep. */
const SYSTEM_ROOTS = new Set([
  '/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/opt', '/proc',
  '/root', '/run', '/sbin', '/srv', '/sys', '/usr', '/var',
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
  'temp-dir': (v) => absoluteProblem(v) ?? (SYSTEM_ROOTS.has(path.posix.normalize(v).replace(/(.)\/$/, '$1')) ? 'a system directory' : null),
  glob: globProblem,
  'listen-address': listenProblem,
};

function newAjv(useDefaults: boolean): Ajv2020 {
  const ajv = new Ajv2020({
    strict: true,
    // "Exactly one of" is written as oneOf branches of `required` inside allOf; their properties
    // are defined two levels up, which strictRequired (one level) cannot see.
    strictRequired: false,
    allowUnionTypes: true,
    allErrors: true,
    verbose: true,
    useDefaults,
  });
  addFormats(ajv);
  for (const keyword of ['x-expected']) ajv.addKeyword({ keyword, schemaType: 'string' });
  for (const keyword of ['x-merge', 'x-derived', 'x-file-only']) ajv.addKeyword({ keyword, schemaType: 'boolean' });
  ajv.addKeyword({
    keyword: 'x-check',
    type: 'string',
    schemaType: 'string',
    errors: true,
    validate: function check(this: unknown, name: string, data: string, parent?: SchemaNode): boolean {
      const fn = CHECKS[name];
      if (!fn) throw new Error(`unknown x-check ${name}`);
      const reason = fn(data);
      if (reason === null) return true;
      // ajv does not attach parentSchema to a custom keyword's errors, so carry the phrase here.
      const expected = parent?.['x-expected'];
      (check as unknown as { errors: Partial<ErrorObject>[] }).errors = [
        { keyword: 'x-check', message: reason, params: { check: name, reason, expected } },
      ];
      return false;
    },
  });
  return ajv;
}

/** Deep copy of JSON data. */
export function cloneJson<T>(value: T): T {
  return structuredClone(value);
}

/**
 * The schema a single policy FILE is checked against, derived from the policy schema: no defaults
 * (they are applied once, after inheritance), nothing required but `version`, no cross-field rules
 * (they apply to the merged policy), and every `x-merge` list also accepts `{append, remove}`.
 */
export function policyFileSchema(): SchemaNode {
  const root = cloneJson(policySchema);
  root.$id = String(root.$id).replace('policy.schema.json', 'policy-file.schema.json');
  delete root.if;
  delete root.then;
  const walk = (node: unknown, isRoot: boolean): void => {
    if (Array.isArray(node)) {
      for (const n of node) walk(n, false);
      return;
    }
    if (!node || typeof node !== 'object') return;
    const obj = node as SchemaNode;
    for (const [key, child] of Object.entries(obj)) {
      if (key === 'examples' || key === 'default' || key === 'const' || key === 'enum') continue;
      walk(child, false);
    }
    delete obj.default;
    if (obj.type === 'object' && obj.title !== 'AdminCommand' && !isRoot) delete obj.required;
    if (obj['x-merge'] === true) {
      const list: SchemaNode = {};
      for (const [k, v] of Object.entries(obj)) {
        if (k !== 'description' && k !== 'examples' && k !== 'x-merge') list[k] = v;
        delete obj[k];
      }
      obj.if = { type: 'array' };
      obj.then = list;
      obj.else = {
        type: 'object',
        'x-expected': 'a list, or a patch {append: [...], remove: [...]}',
        additionalProperties: false,
        minProperties: 1,
        properties: { append: list, remove: list },
      };
    }
  };
  walk(root, true);
  return root;
}

interface Compiled {
  host: ValidateFunction;
  policy: ValidateFunction;
  policyFile: ValidateFunction;
}

let compiled: Compiled | undefined;

/** The compiled validators, built on first use (tens of milliseconds, once per process). */
export function validators(): Compiled {
  if (!compiled) {
    const withDefaults = newAjv(true);
    const plain = newAjv(false);
    compiled = {
      host: withDefaults.compile(hostConfigSchema),
      policy: withDefaults.compile(policySchema),
      policyFile: plain.compile(policyFileSchema()),
    };
  }
  return compiled;
}

/** The policy every file starts from: the schema's defaults (the same value as DEFAULT_POLICY). */
export function policyDefaults(): Record<string, unknown> {
  const value: Record<string, unknown> = { version: 1 };
  validators().policy(value);
  return value;
}
