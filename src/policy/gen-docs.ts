/**
 * Generates policies/README.md from the two JSON Schemas (every field: type, default, meaning,
 * example) plus the list of example policies. Run `node --import tsx scripts/gen-policy.ts`; a
 * test fails when the checked-in README is stale.
 */
import { hostEnvFields } from './env-overrides.js';
import { MAX_EXTENDS_DEPTH } from './load.js';
import { hostConfigSchema, policySchema, type SchemaNode } from './schema.js';
import { MAX_ALIAS_COUNT, MAX_FILE_BYTES, MAX_FLOW_DEPTH, parseText } from './source.js';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/** Where the generated README lives, relative to the repository root. */
export const GENERATED_README_PATH = 'policies/README.md';

/** One example policy shown in the README. */
export interface ExamplePolicy {
  file: string;
  description: string;
  extends?: string;
}

/** The example policies of `dir` (its *.yaml files, by name) with their description and extends. */
export async function readExamples(dir: string): Promise<ExamplePolicy[]> {
  const names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort();
  const out: ExamplePolicy[] = [];
  for (const name of names) {
    const value = parseText(name, await readFile(path.join(dir, name), 'utf8')).value as Record<string, unknown> | undefined;
    out.push({
      file: name,
      description: typeof value?.description === 'string' ? value.description : '',
      ...(typeof value?.extends === 'string' ? { extends: value.extends } : {}),
    });
  }
  return out;
}

/** One documented field. */
export interface FieldDoc {
  path: string;
  type: string;
  default?: string;
  meaning: string;
  example?: string;
  leaf: boolean;
}

function deref(root: SchemaNode, node: SchemaNode): SchemaNode {
  if (typeof node.$ref !== 'string') return node;
  return (root.$defs as Record<string, SchemaNode>)[node.$ref.replace('#/$defs/', '')] ?? {};
}

function typeText(root: SchemaNode, raw: SchemaNode): string {
  const node = deref(root, raw);
  if ('const' in node) return `\`${JSON.stringify(node.const)}\``;
  if (Array.isArray(node.enum)) return `one of ${node.enum.map((v) => `\`${String(v)}\``).join(', ')}`;
  const types = (Array.isArray(node.type) ? node.type : [node.type]).map(String);
  const parts: string[] = [];
  for (const t of types) {
    if (t === 'integer' || t === 'number') {
      const min = node.minimum as number | undefined;
      const max = node.maximum as number | undefined;
      parts.push(
        min !== undefined && max !== undefined ? `${t} ${String(min)}..${String(max)}` : min !== undefined ? `${t} >= ${String(min)}` : t,
      );
    } else if (t === 'string') {
      parts.push(typeof node['x-expected'] === 'string' ? `string (${node['x-expected']})` : 'string');
    } else if (t === 'array') {
      const items = deref(root, (node.items ?? {}) as SchemaNode);
      const itemText = typeof items.title === 'string' ? `${items.title}` : typeText(root, items);
      parts.push(
        `list of ${itemText}${node.maxItems !== undefined ? `, at most ${node.maxItems as number}` : ''}${node['x-merge'] === true ? '; patchable' : ''}`,
      );
    } else if (t === 'object') {
      parts.push(
        node.additionalProperties && typeof node.additionalProperties === 'object'
          ? `mapping of name to ${typeText(root, node.additionalProperties as SchemaNode)}`
          : 'mapping',
      );
    } else parts.push(t);
  }
  return parts.join(' or ');
}

/** Every field of `schema`, depth first, with its documentation. */
export function fieldDocs(schema: SchemaNode): FieldDoc[] {
  const out: FieldDoc[] = [];
  const open = new Set<SchemaNode>();
  const walk = (node: SchemaNode, prefix: string, required: Set<string>): void => {
    // A recursive $ref (recycle.fallback[] is a RecycleConfig) is documented once.
    if (open.has(node)) return;
    open.add(node);
    for (const [key, prop] of Object.entries((node.properties ?? {}) as Record<string, SchemaNode>)) {
      const target = deref(schema, prop);
      const fieldPath = prefix ? `${prefix}.${key}` : key;
      const children = !!target.properties && typeof target.properties === 'object' && !open.has(target);
      const meaning = `${(prop.description ?? target.description ?? '') as string}`;
      const def = 'default' in prop ? prop.default : undefined;
      const showDefault =
        def !== undefined && !(def !== null && typeof def === 'object' && !Array.isArray(def) && Object.keys(def).length === 0);
      const examples = (prop.examples ?? target.examples) as unknown[] | undefined;
      const derived = prop['x-derived'] === true ? ' Derived when absent.' : '';
      const fileOnly = prop['x-file-only'] === true ? ' Files only (not in the effective policy).' : '';
      out.push({
        path: fieldPath,
        type: typeText(schema, prop),
        ...(showDefault ? { default: `\`${JSON.stringify(def)}\`` } : required.has(key) ? { default: '**required**' } : {}),
        meaning: meaning + derived + fileOnly,
        ...(examples && examples.length > 0 ? { example: `\`${JSON.stringify(examples[0])}\`` } : {}),
        leaf: !children,
      });
      if (children) walk(target, fieldPath, new Set((target.required as string[] | undefined) ?? []));
      const items = target.items ? deref(schema, target.items as SchemaNode) : undefined;
      if (items && items.properties) walk(items, `${fieldPath}[]`, new Set((items.required as string[] | undefined) ?? []));
    }
    open.delete(node);
  };
  walk(schema, '', new Set((schema.required as string[] | undefined) ?? []));
  return out;
}

const cell = (s: string | undefined): string => (s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');

function table(fields: FieldDoc[]): string {
  let out = '| Field | Type | Default | Meaning | Example |\n|---|---|---|---|---|\n';
  for (const f of fields) {
    out += `| \`${f.path}\` | ${cell(f.type)} | ${cell(f.default ?? (f.leaf ? 'none' : ''))} | ${cell(f.meaning)} | ${cell(f.example)} |\n`;
  }
  return out;
}

/** The full text of policies/README.md. */
export function generateReadme(examples: ExamplePolicy[]): string {
  const env = [...hostEnvFields().entries()].map(([name, f]) => `| \`${name}\` | \`${f.path.join('.')}\` |`).join('\n');
  return `<!-- GENERATED by src/policy/gen-docs.ts from src/policy/schema/*.schema.json: do not edit.
     Regenerate with \`node --import tsx scripts/gen-policy.ts\` (a test fails when this is stale). -->

# Team policies and host configuration

${String(policySchema.description)}

Check files before they ship (exit 0 when all are valid, 1 otherwise; host configs and policies
are told apart by their keys):

\`\`\`sh
runner-warden validate /etc/runner-warden/config.yaml policies/*.yaml
runner-warden validate --print-effective policies/payments.yaml   # each value with the file it came from
\`\`\`

A changed policy is picked up while the agent runs: it is validated at once and takes effect at the
next job boundary, never during a job or a cleanup. An invalid change is logged once and shown in
\`/status\` (\`policy.lastReloadError\`); the last good policy stays in effect.

## Example policies

| File | Extends | What it is for |
|---|---|---|
${examples.map((e) => `| [\`${e.file}\`](${e.file}) | ${e.extends ? `\`${e.extends}\`` : ''} | ${cell(e.description)} |`).join('\n')}

## Inheritance

\`extends: base.yaml\` names another policy file, relative to the file and inside the policy
directory (a path or symlink that leaves it is refused), at most ${MAX_EXTENDS_DEPTH} files deep, without cycles.
The effective policy is the schema defaults, then each file from the most general to the most
specific:

- a scalar (or \`null\`) replaces the inherited value;
- a mapping is merged key by key;
- a list written as a list **replaces** the inherited list;
- a list marked *patchable* below may instead be written as a patch,
  \`{append: [...], remove: [...]}\`: \`remove\` takes out equal items, then \`append\` adds the items
  not already there. A patch in a file without \`extends\` patches the default list.
- \`team\` is not inherited: it is the most specific file's own, or its file name.

\`\`\`yaml
# payments.yaml
version: 1
extends: base.yaml
cleanup:
  home:
    keep: {append: [.cache/pip]}   # base.yaml's kept paths plus this one
  temp:
    paths: [/tmp]                  # replaces the inherited list
\`\`\`

A policy that reuses hosts (\`host.maxJobs\` > 1) must keep the \`processes\`, \`workdir\`,
\`credentials\`, \`home\` and \`temp\` cleanup steps enabled.

## Errors

Every problem of every file in the chain is listed, one per line, as
\`file:line:col: json.path: expected ..., got ...\`, for example:

\`\`\`
payments.yaml:12:9: cleanup.workdir.keep[1]: expected a path inside _work (relative, no '..'), got "../../etc" ('..' escapes the root)
payments.yaml:3:3: host.maxJob: unknown key, did you mean "maxJobs"?
\`\`\`

Files are YAML 1.2 or JSON, UTF-8, at most ${MAX_FILE_BYTES} bytes, one document, unique keys, at most
${MAX_ALIAS_COUNT} alias expansions and ${MAX_FLOW_DEPTH} levels of bracket nesting.

## Team policy fields

${table(fieldDocs(policySchema))}
## Host config fields

${String(hostConfigSchema.description)}

${table(fieldDocs(hostConfigSchema))}
## Environment overrides of the host config

Applied after the file is read and before validation; an error in an overridden value names the
variable. Setting one of \`github.org\`/\`repo\`/\`enterprise\` (or of \`github.token\`/\`app\`) drops the
others the file set. Timer overrides (\`timeouts\`) have no variables.

| Variable | Field |
|---|---|
${env}
`;
}
