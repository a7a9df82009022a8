/**
 * The two JSON Schemas (the single source of the config formats, the recycle section's included,
 * their TypeScript types and policies/README.md) compiled with ajv 2020 in strict mode. Compilation is lazy: nothing is built
 * at import time (docs/decisions.md, "Only the composition root touches the process").
 *
 * Vocabulary added to JSON Schema (registered as ajv keywords so strict mode accepts them):
 * - `x-check`: a semantic check by name (paths that must stay inside their root, globs, listen
 *   addresses); see CHECKS.
 * - `x-expected`: the human phrase used in errors about that node ("expected <x-expected>, got ...").
 * - `x-merge`: a policy list that a file may patch with `{append, remove}` instead of replacing it.
 * - `x-derived`: filled in by the loader when absent (present in the output type).
 * - `x-file-only`: exists in files but not in the effective value (e.g. `extends`).
 */
import { Ajv2020, _, type KeywordCxt, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { CHECKS } from './schema-checks.js';
import { precompiledValidators } from './schema-precompiled.js';
import hostSchemaJson from './schema/host-config.schema.json' with { type: 'json' };
import policySchemaJson from './schema/policy.schema.json' with { type: 'json' };

export { CHECKS, globProblem } from './schema-checks.js';

/** A JSON Schema node as plain data (we only read the keywords we use). */
export type SchemaNode = Record<string, unknown>;

/** The host config schema, as stored in src/policy/schema/host-config.schema.json. */
export const hostConfigSchema = hostSchemaJson as unknown as SchemaNode;
/** The team policy schema, as stored in src/policy/schema/policy.schema.json. */
export const policySchema = policySchemaJson as unknown as SchemaNode;

// ajv-formats is CommonJS with `module.exports = formatsPlugin` plus `.default`.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as (
  ajv: Ajv2020,
) => Ajv2020;

/**
 * How build-time (standalone) code reaches what the validators call at run time: the semantic
 * checks and ajv-formats' formats, by module path (ajv's standalone output uses require()).
 */
export interface StandaloneRefs {
  checksModule: string;
}

/**
 * The schema compiler with the project's vocabulary. `standalone` makes ajv keep the generated
 * source so the build can write it out (scripts/build-schemas.ts); the agent itself then never
 * compiles a schema.
 */
export function schemaCompiler(useDefaults: boolean, standalone?: StandaloneRefs): Ajv2020 {
  const ajv = new Ajv2020({
    strict: true,
    // "Exactly one of" is written as oneOf branches of `required` inside allOf; their properties
    // are defined two levels up, which strictRequired (one level) cannot see.
    strictRequired: false,
    allowUnionTypes: true,
    allErrors: true,
    verbose: true,
    useDefaults,
    ...(standalone ? { code: { source: true, esm: true, formats: _`require("ajv-formats/dist/formats").fullFormats` } } : {}),
  });
  addFormats(ajv);
  for (const keyword of ['x-expected']) ajv.addKeyword({ keyword, schemaType: 'string' });
  for (const keyword of ['x-merge', 'x-derived', 'x-file-only']) ajv.addKeyword({ keyword, schemaType: 'boolean' });
  ajv.addKeyword({
    keyword: 'x-check',
    type: 'string',
    schemaType: 'string',
    // ajv does not attach parentSchema to a custom keyword's errors, so the phrase rides in params.
    error: {
      message: ({ params }) => _`${params.reason}`,
      params: ({ params }) => _`{check: ${params.check}, reason: ${params.reason}, expected: ${params.expected}}`,
    },
    code(cxt: KeywordCxt) {
      const name = cxt.schema as string;
      const fn = CHECKS[name];
      if (!fn) throw new Error(`unknown x-check ${name}`);
      const { gen } = cxt;
      const check = gen.scopeValue('func', {
        ref: fn,
        ...(standalone ? { code: _`require(${standalone.checksModule}).CHECKS[${name}]` } : {}),
      });
      const reason = gen.const('reason', _`${check}(${cxt.data})`);
      const expected = (cxt.parentSchema as SchemaNode)['x-expected'];
      cxt.setParams({ check: name, reason, expected: typeof expected === 'string' ? expected : undefined });
      cxt.fail(_`${reason} !== null`);
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

export interface Compiled {
  host: ValidateFunction;
  policy: ValidateFunction;
  policyFile: ValidateFunction;
  /** The host config's `recycle` section alone (`$defs/RecycleConfig`), for a section built in code. */
  recycle: ValidateFunction;
}

/** Where the recycle section's schema lives inside the host config schema. */
export const RECYCLE_SCHEMA_REF = `${String(hostConfigSchema.$id)}#/$defs/RecycleConfig`;

let compiled: Compiled | undefined;

/**
 * The validators: those compiled at build time when this runs from the bundle, otherwise compiled
 * here on first use (tens of milliseconds, once per process).
 */
export function validators(): Compiled {
  compiled ??= precompiledValidators() ?? compileValidators();
  return compiled;
}

/** Compiles the validators now (the build uses the same compilers for its standalone code). */
export function compileValidators(standalone?: StandaloneRefs): Compiled {
  const withDefaults = schemaCompiler(true, standalone);
  const plain = schemaCompiler(false, standalone);
  const host = withDefaults.compile(hostConfigSchema);
  const recycle = withDefaults.getSchema(RECYCLE_SCHEMA_REF);
  if (!recycle) throw new Error(`schema not found: ${RECYCLE_SCHEMA_REF}`);
  return { host, policy: withDefaults.compile(policySchema), policyFile: plain.compile(policyFileSchema()), recycle };
}

/** The policy every file starts from: the schema's defaults (the same value as DEFAULT_POLICY). */
export function policyDefaults(): Record<string, unknown> {
  const value: Record<string, unknown> = { version: 1 };
  validators().policy(value);
  return value;
}
