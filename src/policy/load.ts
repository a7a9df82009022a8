/**
 * Loading the host config and team policies: bounded read, YAML/JSON parse, schema validation
 * with every problem listed as `file:line:col: json.path: expected ..., got ...`, environment
 * overrides for the host config, and `extends` inheritance for policies.
 */
import { realpath } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { ConfigError, PolicyError } from '../lib/errors.js';
import { isInside } from '../lib/fs.js';
import { ajvProblems } from './messages.js';
import { mergeLayers, type Layer } from './merge.js';
import { hostConfigSchema, policyDefaults, policySchema, validators, type SchemaNode } from './schema.js';
import {
  formatPath,
  formatProblem,
  locate,
  parseText,
  readText,
  sortProblems,
  describeValue,
  type ParsedSource,
  type PathSegment,
  type Problem,
} from './source.js';
import type { HostConfig, Policy } from './types.js';
import { applyEnvOverrides } from './env-overrides.js';

/**
 * Longest `extends` chain followed. Real setups use one or two levels (organisation, team); the
 * bound keeps a misconfigured chain from reading the whole directory.
 */
export const MAX_EXTENDS_DEPTH = 8;

/** What a file holds. */
export type ConfigKind = 'host-config' | 'policy';

// ---------------------------------------------------------------------------------------------
// Host config

/** The REST API base for a GitHub URL: api.github.com, api.<sub>.ghe.com, or <url>/api/v3. */
export function deriveApiUrl(url: string): string {
  const u = new URL(url);
  if (u.hostname === 'github.com' || u.hostname === 'www.github.com') return 'https://api.github.com';
  if (u.hostname.endsWith('.ghe.com')) return `${u.protocol}//api.${u.hostname}`;
  return `${url.replace(/\/+$/, '')}/api/v3`;
}

function fileProblemsToStrings(problems: Problem[]): string[] {
  return sortProblems(problems).map(formatProblem);
}

/**
 * Loads and validates the host config, with `RUNNER_WARDEN_<PATH>` overrides from `env` (the
 * caller's environment; this module never reads process.env). Defaults are applied and
 * `github.apiUrl` derived. Throws ConfigError listing every problem.
 */
export async function loadHostConfig(file: string, env: Record<string, string | undefined> = {}): Promise<HostConfig> {
  const read = await readText(file);
  if (read.text === undefined) throw configError(file, read.problems);
  const parsed = parseText(file, read.text);
  if (parsed.problems.length > 0) throw configError(file, parsed.problems);
  const value = parsed.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw configError(file, [
      { source: file, ...locate(parsed, []), path: [], message: `expected a mapping, got ${describeValue(value)}` },
    ]);
  }
  const data = value as Record<string, unknown>;
  const fromEnv = applyEnvOverrides(data, env);
  const validate = validators().host;
  if (!validate(data)) {
    const where = (segs: PathSegment[], atKey: boolean): Pick<Problem, 'source' | 'line' | 'col'> => {
      for (let i = segs.length; i > 0; i--) {
        const name = fromEnv.get(segs.slice(0, i).join('.'));
        if (name) return { source: `$${name}` };
      }
      return { source: file, ...locate(parsed, segs, atKey) };
    };
    throw configError(file, ajvProblems(validate.errors ?? [], data, where));
  }
  const config = data as unknown as HostConfig;
  if (config.github.apiUrl === undefined) config.github.apiUrl = deriveApiUrl(config.github.url);
  return config;
}

function configError(file: string, problems: Problem[]): ConfigError {
  const lines = fileProblemsToStrings(problems);
  return new ConfigError(`invalid host config ${file}: ${lines.length} problem(s)\n${lines.join('\n')}`, file, lines);
}

// ---------------------------------------------------------------------------------------------
// Policies

/** A policy file loaded with its chain: the effective policy and where each value came from. */
export interface LoadedPolicy {
  policy: Policy;
  /** `json.path` → file that set it; paths absent from the map hold schema defaults. */
  sources: Map<string, string>;
  /** Files of the chain, most specific first. */
  files: string[];
  /** Content hash of the chain (first 16 hex digits of sha256), for status and change detection. */
  version: string;
}

/** Options of loadPolicy. */
export interface LoadPolicyOptions {
  /** Directory every file of the chain must stay in; default the directory of `file`. */
  policyDir?: string;
  /** Team name when the file does not set one; default the file name without extension. */
  team?: string;
}

/** The next file of an extends chain and the `extends` that named it. */
interface ChainStep {
  shown: string;
  from?: { src: ParsedSource; value: string };
}

function policyKeyOrder(): string[] {
  return Object.keys(policySchema.properties ?? {});
}

function teamFromFile(file: string): string {
  return path.basename(file).replace(/\.(ya?ml|json)$/i, '');
}

/**
 * Loads a team policy and its `extends` chain, validates each file, merges them and applies
 * defaults. Throws PolicyError listing every problem of every file.
 */
export async function loadPolicy(file: string, opts: LoadPolicyOptions = {}): Promise<LoadedPolicy> {
  const dir = opts.policyDir ?? path.dirname(file);
  let realDir: string;
  try {
    realDir = await realpath(dir);
  } catch {
    throw policyError(file, [
      { source: file, path: [], message: `expected an existing policy directory, got ${JSON.stringify(dir)} (not found)` },
    ]);
  }
  const problems: Problem[] = [];
  const chain: ParsedSource[] = [];
  const seen: string[] = [];
  let current: ChainStep | undefined = { shown: file };
  while (current) {
    const shown: string = current.shown;
    const from = current.from;
    current = undefined;
    const pointAtExtends = (message: string): void => {
      if (from) problems.push({ source: from.src.file, ...locate(from.src, ['extends']), path: ['extends'], message });
      else problems.push({ source: shown, path: [], message });
    };
    let real: string;
    try {
      real = await realpath(shown);
    } catch {
      pointAtExtends(
        from
          ? `expected an existing policy file, got ${JSON.stringify(from.value)} (not found)`
          : 'expected a file, got nothing (not found)',
      );
      break;
    }
    if (!isInside(realDir, real)) {
      const got = from ? JSON.stringify(from.value) : JSON.stringify(shown);
      pointAtExtends(`expected a file inside the policy directory ${dir}, got ${got} (resolves to ${real})`);
      break;
    }
    if (seen.includes(real)) {
      const names = [...seen, real].map((r) => path.relative(realDir, r));
      pointAtExtends(`expected no cycle of extends, got ${names.join(' -> ')}`);
      break;
    }
    if (seen.length >= MAX_EXTENDS_DEPTH) {
      pointAtExtends(`expected at most ${MAX_EXTENDS_DEPTH} files in the extends chain, got more`);
      break;
    }
    seen.push(real);
    const read = await readText(shown);
    if (read.text === undefined) {
      problems.push(...read.problems);
      break;
    }
    const parsed = parseText(shown, read.text);
    if (parsed.problems.length > 0) {
      problems.push(...parsed.problems);
      break;
    }
    chain.push(parsed);
    const fileProblems = validateFile(parsed);
    problems.push(...fileProblems);
    const ext = (parsed.value as Record<string, unknown> | null)?.extends;
    if (typeof ext === 'string' && ext !== '') {
      current = { shown: path.join(path.dirname(shown), ext), from: { src: parsed, value: ext } };
    }
  }
  if (problems.length > 0) throw policyError(file, problems);

  const layers: Layer[] = chain
    .slice()
    .reverse()
    .map((src) => ({ file: src.file, value: src.value as Record<string, unknown> }));
  const top = chain[0] as ParsedSource;
  const topTeam = (top.value as Record<string, unknown>).team;
  const team = typeof topTeam === 'string' ? topTeam : (opts.team ?? teamFromFile(file));
  const merged = mergeLayers(policyDefaults(), layers, team, policyKeyOrder());
  const validate = validators().policy;
  if (!validate(merged.value)) {
    const bySource = new Map(chain.map((c) => [c.file, c]));
    const where = (segs: PathSegment[], atKey: boolean): Pick<Problem, 'source' | 'line' | 'col'> => {
      for (let i = segs.length; i >= 0; i--) {
        const src = merged.sources.get(formatPath(segs.slice(0, i)));
        const parsed = src ? bySource.get(src) : undefined;
        if (parsed) return { source: parsed.file, ...locate(parsed, segs, atKey) };
      }
      return { source: top.file, ...locate(top, segs, atKey) };
    };
    throw policyError(file, ajvProblems(validate.errors ?? [], merged.value, where));
  }
  const hash = createHash('sha256');
  for (const src of chain) hash.update(src.file).update('\0').update(src.text).update('\0');
  return {
    policy: merged.value as unknown as Policy,
    sources: merged.sources,
    files: chain.map((c) => c.file),
    version: hash.digest('hex').slice(0, 16),
  };
}

function validateFile(parsed: ParsedSource): Problem[] {
  const value = parsed.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return [{ source: parsed.file, ...locate(parsed, []), path: [], message: `expected a mapping, got ${describeValue(value)}` }];
  }
  const validate = validators().policyFile;
  if (validate(value)) return [];
  return ajvProblems(validate.errors ?? [], value, (segs, atKey) => ({ source: parsed.file, ...locate(parsed, segs, atKey) }));
}

function policyError(file: string, problems: Problem[]): PolicyError {
  const lines = fileProblemsToStrings(problems);
  return new PolicyError(`invalid policy ${file}: ${lines.length} problem(s)\n${lines.join('\n')}`, file, lines);
}

/**
 * Policy text → effective policy, without touching the disk (no `extends`). For benchmarks and
 * tools that hold the text already; throws PolicyError like loadPolicy.
 */
export function parsePolicyText(name: string, text: string): Policy {
  const parsed = parseText(name, text);
  const problems = parsed.problems.length > 0 ? parsed.problems : validateFile(parsed);
  if (problems.length > 0) throw policyError(name, problems);
  const value = parsed.value as Record<string, unknown>;
  if (typeof value.extends === 'string') {
    throw policyError(name, [
      {
        source: name,
        ...locate(parsed, ['extends']),
        path: ['extends'],
        message: 'expected no extends here (text without a directory), got one',
      },
    ]);
  }
  const merged = mergeLayers(
    policyDefaults(),
    [{ file: name, value }],
    typeof value.team === 'string' ? value.team : teamFromFile(name),
    policyKeyOrder(),
  );
  const validate = validators().policy;
  if (!validate(merged.value)) {
    throw policyError(
      name,
      ajvProblems(validate.errors ?? [], merged.value, (segs, atKey) => ({ source: name, ...locate(parsed, segs, atKey) })),
    );
  }
  return merged.value as unknown as Policy;
}

// ---------------------------------------------------------------------------------------------
// Kind detection and printing

function topKeys(schema: SchemaNode): Set<string> {
  return new Set(Object.keys(schema.properties ?? {}));
}

/**
 * Whether `file` is a host config or a team policy: by its top-level keys (those only one schema
 * has), then by its name (config.yaml / config.json → host config). Unreadable files go by name.
 */
export async function detectKind(file: string): Promise<ConfigKind> {
  const byName: ConfigKind = /^config\.(ya?ml|json)$/i.test(path.basename(file)) ? 'host-config' : 'policy';
  const read = await readText(file);
  if (read.text === undefined) return byName;
  const parsed = parseText(file, read.text);
  const value = parsed.value;
  if (!value || typeof value !== 'object' || Array.isArray(value)) return byName;
  const host = topKeys(hostConfigSchema);
  const policy = topKeys(policySchema);
  let h = 0;
  let p = 0;
  for (const key of Object.keys(value)) {
    if (host.has(key) && !policy.has(key)) h++;
    if (policy.has(key) && !host.has(key)) p++;
  }
  if (h !== p) return h > p ? 'host-config' : 'policy';
  return byName;
}

function renderScalar(v: unknown): string {
  if (typeof v === 'string')
    return /^[A-Za-z0-9_./{}-][A-Za-z0-9_./{} -]*$/.test(v) && !/^(true|false|null|~|-?\d.*)$/i.test(v) && !v.endsWith(' ')
      ? v
      : JSON.stringify(v);
  return JSON.stringify(v);
}

/**
 * The effective policy of `file` as YAML, every value annotated with the file it came from
 * (`# (default)` for schema defaults). Throws PolicyError when the chain is invalid.
 */
export async function effectiveWithSources(file: string, opts: LoadPolicyOptions = {}): Promise<string> {
  const loaded = await loadPolicy(file, opts);
  const lines: string[] = [`# effective policy of ${file} (${loaded.files.join(' <- ')}), version ${loaded.version}`];
  const note = (segs: PathSegment[]): string => `# ${loaded.sources.get(formatPath(segs)) ?? '(default)'}`;
  const pad = (s: string, n: number): string => (s.length >= n ? `${s} ` : s.padEnd(n));
  const walk = (value: unknown, segs: PathSegment[], indent: string, keyText: string): void => {
    if (Array.isArray(value)) {
      if (value.length === 0) {
        lines.push(pad(`${indent}${keyText} []`, 48) + note(segs));
        return;
      }
      lines.push(pad(`${indent}${keyText}`, 48) + note(segs));
      value.forEach((item: unknown, i) => {
        if (item && typeof item === 'object') {
          lines.push(pad(`${indent}  -`, 48) + note([...segs, i]));
          for (const [k, v] of Object.entries(item)) walk(v, [...segs, i, k], `${indent}    `, `${k}:`);
        } else {
          lines.push(pad(`${indent}  - ${renderScalar(item)}`, 48) + note([...segs, i]));
        }
      });
    } else if (value && typeof value === 'object') {
      if (keyText) lines.push(`${indent}${keyText}`);
      const inner = keyText ? `${indent}  ` : indent;
      for (const [k, v] of Object.entries(value)) walk(v, [...segs, k], inner, `${k}:`);
    } else {
      lines.push(pad(`${indent}${keyText} ${renderScalar(value)}`, 48) + note(segs));
    }
  };
  walk(loaded.policy, [], '', '');
  return `${lines.join('\n')}\n`;
}
