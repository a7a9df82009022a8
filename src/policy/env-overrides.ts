/**
 * Environment overrides of the host config: every scalar or list field of the host config schema
 * can be set as `RUNNER_WARDEN_<PATH>` (an image's user data or a container's env sets a field
 * without rewriting the file). The values are typed by the schema; a list is comma-separated.
 */
import { hostConfigSchema, type SchemaNode } from './schema.js';

/** Prefix of the environment variables that override host config fields. */
export const ENV_PREFIX = 'RUNNER_WARDEN_';

interface EnvField {
  path: string[];
  types: string[];
  isList: boolean;
}

function resolveRef(root: SchemaNode, node: SchemaNode): SchemaNode {
  const ref = node.$ref;
  if (typeof ref !== 'string') return node;
  const name = ref.replace('#/$defs/', '');
  return (root.$defs as Record<string, SchemaNode>)[name] ?? {};
}

let envFieldsCache: Map<string, EnvField> | undefined;

/** Every host config scalar or list field as `RUNNER_WARDEN_<PATH>` → its path and type. */
export function hostEnvFields(): Map<string, EnvField> {
  if (envFieldsCache) return envFieldsCache;
  const out = new Map<string, EnvField>();
  const walk = (node: SchemaNode, segs: string[], depth: number): void => {
    const props = node.properties as Record<string, SchemaNode> | undefined;
    if (!props || depth > 3) return;
    for (const [key, raw] of Object.entries(props)) {
      const child = resolveRef(hostConfigSchema, raw);
      const here = [...segs, key];
      const types = (Array.isArray(child.type) ? child.type : [child.type]).map(String);
      if (types.includes('object')) walk(child, here, depth + 1);
      else if (types.includes('array')) {
        const items = (child.items ?? {}) as SchemaNode;
        if (items.type === 'string') out.set(ENV_PREFIX + here.join('_').toUpperCase(), { path: here, types, isList: true });
      } else out.set(ENV_PREFIX + here.join('_').toUpperCase(), { path: here, types, isList: false });
    }
  };
  walk(hostConfigSchema, [], 0);
  envFieldsCache = out;
  return out;
}

/** Keys of which a file or the environment may set only one; an override of one drops the others. */
const EXCLUSIVE: string[][] = [
  ['github.org', 'github.repo', 'github.enterprise'],
  ['github.token', 'github.app'],
  ['github.token.file', 'github.token.env'],
];

function envValue(raw: string, field: EnvField): unknown {
  if (field.isList)
    return raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  const t = field.types;
  if (t.includes('null') && (raw === '' || raw === 'null')) return null;
  if ((t.includes('integer') || t.includes('number')) && /^-?\d+(\.\d+)?$/.test(raw.trim())) return Number(raw.trim());
  if (t.includes('boolean')) {
    if (['true', '1', 'yes'].includes(raw.trim().toLowerCase())) return true;
    if (['false', '0', 'no'].includes(raw.trim().toLowerCase())) return false;
  }
  return raw;
}

function setIn(root: Record<string, unknown>, segs: string[], value: unknown): void {
  let node = root;
  for (const seg of segs.slice(0, -1)) {
    const next = node[seg];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[seg] = {};
    node = node[seg] as Record<string, unknown>;
  }
  node[segs[segs.length - 1] as string] = value;
}

function deleteIn(root: Record<string, unknown>, dotted: string): void {
  const segs = dotted.split('.');
  let node: unknown = root;
  for (const seg of segs.slice(0, -1)) {
    node = node && typeof node === 'object' ? (node as Record<string, unknown>)[seg] : undefined;
  }
  if (node && typeof node === 'object') delete (node as Record<string, unknown>)[segs[segs.length - 1] as string];
}

/**
 * Applies `RUNNER_WARDEN_<PATH>` overrides to `value` in place; returns dotted path → variable
 * name for each one applied (so that errors about them name the variable, not the file).
 */
export function applyEnvOverrides(value: Record<string, unknown>, env: Record<string, string | undefined>): Map<string, string> {
  const applied = new Map<string, string>();
  const fields = hostEnvFields();
  for (const name of Object.keys(env).sort()) {
    const raw = env[name];
    const field = fields.get(name);
    if (raw === undefined || !field) continue;
    const dotted = field.path.join('.');
    for (const group of EXCLUSIVE) {
      const mine = group.find((g) => dotted === g || dotted.startsWith(`${g}.`));
      if (mine) for (const other of group) if (other !== mine) deleteIn(value, other);
    }
    setIn(value, field.path, envValue(raw, field));
    applied.set(dotted, name);
  }
  return applied;
}
