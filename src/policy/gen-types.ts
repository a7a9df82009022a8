/**
 * Generates the policy and host config types from the two JSON Schemas, so the TypeScript types are
 * never written by hand (run `node --import tsx scripts/gen-policy.ts`; a test fails when a
 * checked-in file is stale). It understands the subset of JSON Schema the schemas use.
 *
 * One file per schema section (each schema, and each of its `$defs` with a `title`):
 * `types.generated.<section>.ts`, the schema defaults in `types.generated.defaults.ts`, and
 * `types.generated.ts` re-exporting them all, so no generated file grows past the size a reader
 * can take in as a schema grows.
 *
 * A property is required in the generated (effective, after-defaults) type when the schema
 * requires it, gives it a default, or marks it `x-derived`; `x-file-only` properties are left out.
 * `oneOf`/`allOf` branches made only of `required` ("exactly one of") add no type information.
 */
import { hostConfigSchema, policyDefaults, policySchema, type SchemaNode } from './schema.js';

/** The schemas as (name, schema) pairs, in the order their types are emitted. */
export const SCHEMAS: { file: string; schema: SchemaNode }[] = [
  { file: 'src/policy/schema/policy.schema.json', schema: policySchema },
  { file: 'src/policy/schema/host-config.schema.json', schema: hostConfigSchema },
];

/** The folder of the generated types, relative to the repository root. */
export const GENERATED_TYPES_DIR = 'src/policy';
/** The file that re-exports every generated type (what the rest of the code imports). */
export const GENERATED_TYPES_PATH = `${GENERATED_TYPES_DIR}/types.generated.ts`;
/** Every generated file's name matches this (a file that matches and is not generated is stale). */
export const GENERATED_TYPES_NAME = /^types\.generated(\.[a-z-]+)?\.ts$/;

/** One generated file: its path relative to the repository root, and its text. */
export interface GeneratedFile {
  path: string;
  text: string;
}

/** Wraps `text` into lines of at most `width` characters. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

function docComment(text: string | undefined, indent: string): string {
  if (!text) return '';
  const safe = text.replace(/\*\//g, '*\\/');
  const lines = wrap(safe, 96 - indent.length);
  if (lines.length === 1 && indent.length + lines[0]!.length + 7 <= 100) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}`).join('\n')}\n${indent} */\n`;
}

function defaultNote(node: SchemaNode): string {
  if (!('default' in node)) return '';
  const d = node.default;
  if (d !== null && typeof d === 'object' && Object.keys(d).length === 0) return '';
  return ` Default: ${JSON.stringify(d)}.`;
}

interface Ctx {
  root: SchemaNode;
  named: Map<SchemaNode, string>;
  /** The other named types the type being emitted refers to (they become imports). */
  uses: Set<string>;
}

function deref(ctx: Ctx, node: SchemaNode): SchemaNode {
  if (typeof node.$ref !== 'string') return node;
  const name = node.$ref.replace('#/$defs/', '');
  const target = (ctx.root.$defs as Record<string, SchemaNode>)[name];
  if (!target) throw new Error(`unresolved $ref ${node.$ref}`);
  return target;
}

function literal(v: unknown): string {
  return typeof v === 'string' ? `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'` : JSON.stringify(v);
}

function typeOf(ctx: Ctx, raw: SchemaNode, indent: string): string {
  const node = deref(ctx, raw);
  const name = ctx.named.get(node);
  if (name && node !== ctx.root) {
    ctx.uses.add(name);
    return name;
  }
  return structural(ctx, node, indent);
}

function structural(ctx: Ctx, node: SchemaNode, indent: string): string {
  if ('const' in node) return literal(node.const);
  if (Array.isArray(node.enum)) return node.enum.map(literal).join(' | ');
  const types = Array.isArray(node.type) ? node.type.map(String) : node.type ? [`${node.type as string}`] : [];
  if (types.length === 0) return 'unknown';
  return types
    .map((t) => {
      switch (t) {
        case 'string':
          return 'string';
        case 'integer':
        case 'number':
          return 'number';
        case 'boolean':
          return 'boolean';
        case 'null':
          return 'null';
        case 'array': {
          const item = typeOf(ctx, (node.items ?? {}) as SchemaNode, indent);
          return /[ |]/.test(item) && !item.startsWith('{') ? `(${item})[]` : `${item}[]`;
        }
        case 'object':
          return objectType(ctx, node, indent);
        default:
          throw new Error(`unsupported type ${t}`);
      }
    })
    .join(' | ');
}

function objectType(ctx: Ctx, node: SchemaNode, indent: string): string {
  const props = (node.properties ?? {}) as Record<string, SchemaNode>;
  const required = new Set((node.required as string[] | undefined) ?? []);
  const inner = `${indent}  `;
  let body = '';
  for (const [key, prop] of Object.entries(props)) {
    if (prop['x-file-only'] === true) continue;
    const target = deref(ctx, prop);
    const isRequired = required.has(key) || 'default' in prop || prop['x-derived'] === true;
    const description = (prop.description as string | undefined) ?? (target.description as string | undefined);
    body += docComment(description ? description + defaultNote(prop) : undefined, inner);
    body += `${inner}${key}${isRequired ? '' : '?'}: ${typeOf(ctx, prop, inner)};\n`;
  }
  const extra = node.additionalProperties;
  if (extra === true) body += `${inner}[key: string]: unknown;\n`;
  else if (extra && typeof extra === 'object') body += `${inner}[key: string]: ${typeOf(ctx, extra as SchemaNode, inner)};\n`;
  if (!body) return 'Record<string, never>';
  return `{\n${body}${indent}}`;
}

const HEADER =
  '/*\n' +
  ' * GENERATED by src/policy/gen-types.ts from src/policy/schema/*.schema.json: do not edit.\n' +
  ' * Regenerate with `node --import tsx scripts/gen-policy.ts` (a test fails when this is stale).\n' +
  ' */\n';

/** `CleanupPolicy` → `cleanup-policy`. */
function sectionName(title: string): string {
  return title.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

function modulePath(title: string): string {
  return `./types.generated.${sectionName(title)}.js`;
}

/** One file per named type of `schema` (the root and each titled `$defs` entry). */
function emitSchema(schema: SchemaNode): { title: string; text: string }[] {
  const named = new Map<SchemaNode, string>();
  named.set(schema, String(schema.title));
  for (const def of Object.values((schema.$defs ?? {}) as Record<string, SchemaNode>)) {
    if (typeof def.title === 'string') named.set(def, def.title);
  }
  const out: { title: string; text: string }[] = [];
  for (const [node, name] of named) {
    const ctx: Ctx = { root: schema, named, uses: new Set() };
    const body = `${docComment(node.description as string | undefined, '')}export interface ${name} ${structural(ctx, node, '')}\n`;
    const imports = [...ctx.uses]
      .filter((u) => u !== name)
      .sort()
      .map((u) => `import type { ${u} } from '${modulePath(u)}';\n`)
      .join('');
    out.push({ title: name, text: `${HEADER}${imports ? `\n${imports}` : ''}\n${body}` });
  }
  return out;
}

/** Every generated file: one per schema section, the defaults, and the index that re-exports them. */
export function generateTypeFiles(): GeneratedFile[] {
  const sections = SCHEMAS.flatMap(({ schema }) => emitSchema(schema));
  const files: GeneratedFile[] = sections.map((s) => ({
    path: `${GENERATED_TYPES_DIR}/types.generated.${sectionName(s.title)}.ts`,
    text: s.text,
  }));
  files.push({
    path: `${GENERATED_TYPES_DIR}/types.generated.defaults.ts`,
    text:
      `${HEADER}\nimport type { Policy } from '${modulePath('Policy')}';\n\n` +
      '/** The policy used when a team has none: the schema defaults (a fresh host for every job, every step on). */\n' +
      `export const DEFAULT_POLICY: Policy = ${JSON.stringify(policyDefaults(), null, 2)};\n`,
  });
  const index =
    `${HEADER}\n` +
    sections.map((s) => `export type { ${s.title} } from '${modulePath(s.title)}';\n`).join('') +
    "export { DEFAULT_POLICY } from './types.generated.defaults.js';\n";
  files.push({ path: GENERATED_TYPES_PATH, text: index });
  return files;
}
