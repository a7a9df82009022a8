/**
 * Policy inheritance. The effective policy is the schema defaults, then each file of the
 * `extends` chain from the most general to the most specific:
 * - a scalar or null set in a file replaces the inherited value;
 * - a mapping is merged key by key;
 * - a list given as a list replaces the inherited list;
 * - a list given as `{append: [...], remove: [...]}` patches it: `remove` takes out equal items,
 *   then `append` adds the items not already there, in order.
 * `extends` is not part of the result; `team` is not inherited (the most specific file's own, or
 * its file name).
 */
import { cloneJson } from './schema.js';
import { formatPath, type PathSegment } from './source.js';

/** One file of the chain, already validated against the file schema. */
export interface Layer {
  /** File as shown to the user. */
  file: string;
  value: Record<string, unknown>;
}

/** The merged value and, for every leaf and list item, the file that set it. */
export interface Merged {
  value: Record<string, unknown>;
  /** `json.path` → file; paths not in the map hold schema defaults. */
  sources: Map<string, string>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function recordAll(sources: Map<string, string>, segs: PathSegment[], value: unknown, file: string): void {
  sources.set(formatPath(segs), file);
  if (Array.isArray(value)) value.forEach((v, i) => recordAll(sources, [...segs, i], v, file));
  else if (isPlainObject(value)) for (const [k, v] of Object.entries(value)) recordAll(sources, [...segs, k], v, file);
}

function forgetUnder(sources: Map<string, string>, segs: PathSegment[]): void {
  const prefix = formatPath(segs);
  for (const key of [...sources.keys()]) {
    if (key === prefix || key.startsWith(`${prefix}.`) || key.startsWith(`${prefix}[`)) sources.delete(key);
  }
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

function patchList(
  target: unknown[],
  patch: { append?: unknown[]; remove?: unknown[] },
  segs: PathSegment[],
  file: string,
  sources: Map<string, string>,
): unknown[] {
  const itemSources = target.map((_, i) => sources.get(formatPath([...segs, i])));
  const kept: { v: unknown; src: string | undefined }[] = [];
  target.forEach((v, i) => {
    if (!(patch.remove ?? []).some((r) => same(r, v))) kept.push({ v, src: itemSources[i] });
  });
  for (const v of patch.append ?? []) {
    if (!kept.some((k) => same(k.v, v))) kept.push({ v: cloneJson(v), src: file });
  }
  forgetUnder(sources, segs);
  sources.set(formatPath(segs), file);
  kept.forEach((k, i) => {
    if (k.src === undefined) return;
    recordAll(sources, [...segs, i], k.v, k.src);
  });
  return kept.map((k) => k.v);
}

function mergeInto(
  target: Record<string, unknown>,
  layer: Record<string, unknown>,
  segs: PathSegment[],
  file: string,
  sources: Map<string, string>,
): void {
  for (const [key, value] of Object.entries(layer)) {
    const here = [...segs, key];
    const current = target[key];
    if (Array.isArray(current) && isPlainObject(value)) {
      target[key] = patchList(current, value, here, file, sources);
    } else if (isPlainObject(current) && isPlainObject(value)) {
      mergeInto(current, value, here, file, sources);
    } else {
      forgetUnder(sources, here);
      target[key] = cloneJson(value);
      recordAll(sources, here, value, file);
    }
  }
}

/** Merges `layers` (most general first) onto a copy of `defaults`; top-level keys follow `order`. */
export function mergeLayers(defaults: Record<string, unknown>, layers: Layer[], team: string, order: string[] = []): Merged {
  const value = cloneJson(defaults);
  const sources = new Map<string, string>();
  for (const layer of layers) {
    const { extends: _extends, team: _team, ...rest } = layer.value;
    mergeInto(value, rest, [], layer.file, sources);
  }
  const top = layers[layers.length - 1];
  value.team = team;
  if (top) {
    sources.set('team', top.file);
    sources.set('version', top.file);
  }
  // Keys in schema order (defaults first, then optional keys such as `description`), so that
  // printed policies read the same whatever the files' order.
  const ordered: Record<string, unknown> = {};
  for (const key of order) if (key in value) ordered[key] = value[key];
  for (const key of Object.keys(value)) if (!(key in ordered)) ordered[key] = value[key];
  return { value: ordered, sources };
}
