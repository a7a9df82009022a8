/**
 * Turns ajv's errors into the messages a reviewer reads: `json.path: expected ..., got ...`,
 * using the schema's `x-expected` phrases, naming unknown keys with a suggestion, and collapsing
 * "exactly one of" rules into one line.
 */
import type { ErrorObject } from 'ajv';
import { describeValue, type PathSegment, type Problem } from './source.js';
import type { SchemaNode } from './schema.js';

/** Where a path lives: which file (or env variable) and which line. */
export type Locator = (segments: PathSegment[], atKey: boolean) => Pick<Problem, 'source' | 'line' | 'col'>;

function parsePointer(pointer: string, root: unknown): PathSegment[] {
  if (pointer === '') return [];
  const out: PathSegment[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node) && /^\d+$/.test(key)) {
      out.push(Number(key));
      node = node[Number(key)];
    } else {
      out.push(key);
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
    }
  }
  return out;
}

const TYPE_WORDS: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping',
  array: 'a list',
  null: 'null',
};

function typeWords(type: unknown): string {
  const types = Array.isArray(type) ? type : [type];
  return types.map((t) => TYPE_WORDS[String(t)] ?? String(t)).join(' or ');
}

function numberWords(schema: SchemaNode): string {
  const what = typeWords(Array.isArray(schema.type) ? schema.type.filter((t) => t !== 'null') : schema.type);
  // JSON Schema's bounds are numbers (the schemas are ours and compiled by Ajv in strict mode).
  const min = (schema.minimum ?? schema.exclusiveMinimum) as number | undefined;
  const max = (schema.maximum ?? schema.exclusiveMaximum) as number | undefined;
  if (min !== undefined && max !== undefined) return `${what} from ${String(min)} to ${String(max)}`;
  if (min !== undefined) return `${what} >= ${String(min)}`;
  return `${what} <= ${String(max)}`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] ?? 0;
      row[j] = Math.min((row[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, prev + (a[i - 1]?.toLowerCase() === b[j - 1]?.toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] ?? 0;
}

function unknownKeyMessage(key: string, schema: SchemaNode): string {
  const props = schema.properties && typeof schema.properties === 'object' ? Object.keys(schema.properties) : [];
  const close = props
    .map((p) => ({ p, d: editDistance(key, p) }))
    .filter((x) => x.d <= Math.max(1, Math.floor(x.p.length / 4)))
    .sort((a, b) => a.d - b.d)[0];
  if (close) return `unknown key, did you mean "${close.p}"?`;
  return `unknown key (expected one of: ${props.join(', ')})`;
}

function requiredBranches(schema: unknown): string[] | undefined {
  if (!Array.isArray(schema)) return undefined;
  const keys: string[] = [];
  for (const branch of schema) {
    const b = branch as SchemaNode;
    const req = b.required;
    if (Object.keys(b).length !== 1 || !Array.isArray(req) || req.length !== 1) return undefined;
    keys.push(String(req[0]));
  }
  return keys;
}

/** Converts ajv errors on `data` into problems located by `where`. */
export function ajvProblems(errors: ErrorObject[], data: unknown, where: Locator): Problem[] {
  const problems: Problem[] = [];
  // Errors inside a failed oneOf/if branch are noise once the oneOf itself is explained.
  const oneOfPaths = errors.filter((e) => e.keyword === 'oneOf').map((e) => `${e.schemaPath}/`);
  for (const err of errors) {
    if (oneOfPaths.some((p) => err.schemaPath.startsWith(p))) continue;
    if (err.keyword === 'if' || err.keyword === 'propertyNames') continue;
    const segments = parsePointer(err.instancePath, data);
    const parent = (err.parentSchema ?? {}) as SchemaNode;
    const expected = typeof parent['x-expected'] === 'string' ? parent['x-expected'] : undefined;
    const got = describeValue(err.data);
    const push = (segs: PathSegment[], message: string, atKey = false): void => {
      problems.push({ ...where(segs, atKey), path: segs, message });
    };
    const params = err.params as Record<string, unknown>;
    switch (err.keyword) {
      case 'additionalProperties': {
        const key = String(params.additionalProperty);
        push([...segments, key], unknownKeyMessage(key, parent), true);
        break;
      }
      case 'required':
        push(segments, `missing required key "${String(params.missingProperty)}"`);
        break;
      case 'type':
        push(segments, `expected ${expected ?? typeWords(params.type)}, got ${got}`);
        break;
      case 'const':
        push(segments, `expected ${expected ?? JSON.stringify(params.allowedValue)}, got ${got}`);
        break;
      case 'enum':
        push(segments, `expected one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${got}`);
        break;
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
        push(segments, `expected ${numberWords(parent)}, got ${got}`);
        break;
      case 'minLength':
        push(
          segments,
          params.limit === 1 ? `expected a non-empty string, got ""` : `expected at least ${String(params.limit)} characters, got ${got}`,
        );
        break;
      case 'maxLength':
        push(segments, `expected at most ${String(params.limit)} characters, got ${String((err.data as string).length)}`);
        break;
      case 'maxItems':
        push(segments, `expected at most ${String(params.limit)} items, got ${String((err.data as unknown[]).length)}`);
        break;
      case 'minProperties':
        push(segments, `expected ${expected ?? `at least ${String(params.limit)} keys`}, got ${got}`);
        break;
      case 'pattern':
      case 'format':
        if (err.propertyName !== undefined) {
          push(
            [...segments, err.propertyName],
            `expected a key matching ${String(params.pattern)}, got ${JSON.stringify(err.propertyName)}`,
            true,
          );
        } else {
          push(segments, `expected ${expected ?? `a ${(params.format as string | undefined) ?? 'value'}`}, got ${got}`);
        }
        break;
      case 'x-check':
        push(
          segments,
          `expected ${expected ?? (params.expected as string | undefined) ?? 'a valid value'}, got ${got} (${String(params.reason)})`,
        );
        break;
      case 'oneOf': {
        const keys = requiredBranches(err.schema);
        if (keys && err.data && typeof err.data === 'object') {
          const present = keys.filter((k) => k in (err.data as object));
          const list = keys.map((k) => `"${k}"`).join(', ');
          push(
            segments,
            `expected exactly one of ${list}, got ${present.length === 0 ? 'none' : present.map((k) => `"${k}"`).join(' and ')}`,
          );
        } else {
          push(segments, `expected exactly one of the allowed shapes, got ${got}`);
        }
        break;
      }
      default:
        push(segments, `expected ${expected ?? 'a valid value'}, got ${got} (${err.message ?? err.keyword})`);
    }
  }
  return problems;
}
