/**
 * Checks a recorded REST exchange of the fake GitHub against GitHub's own OpenAPI description
 * (test/fixtures/github-runners.openapi.json), so that the fake cannot drift from the real API.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import type { RecordedRequest } from '../../src/sim/github/types.js';

interface MediaType {
  schema?: object;
}
interface Operation {
  operationId?: string;
  parameters?: { name: string; in: string; required?: boolean; schema?: { type?: string } }[];
  requestBody?: { required?: boolean; content?: Record<string, MediaType> };
  responses: Record<string, { content?: Record<string, MediaType> }>;
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
}

const SPEC_FILE = fileURLToPath(new URL('../fixtures/github-runners.openapi.json', import.meta.url));

/**
 * Error statuses GitHub may send from any endpoint although an operation does not list them
 * (authentication, permission, rate limits, server trouble). Their body must still be a GitHub
 * error: `message` and `documentation_url`.
 */
const GENERIC_ERROR_STATUSES = new Set([400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503, 504]);
const GENERIC_ERROR_SCHEMA = {
  type: 'object',
  required: ['message', 'documentation_url'],
  properties: { message: { type: 'string' }, documentation_url: { type: 'string' } },
};

interface Compiled {
  spec: Spec;
  ajv: Ajv;
  templates: { template: string; pattern: RegExp; literals: number }[];
  cache: Map<string, ValidateFunction>;
}

let compiled: Compiled | undefined;

function load(): Compiled {
  if (compiled) return compiled;
  const spec = JSON.parse(readFileSync(SPEC_FILE, 'utf8')) as Spec;
  // OpenAPI 3.0 keywords (nullable, example, x-*) are not JSON Schema; strict:false lets them pass.
  const ajv = new Ajv({ strict: false, allErrors: true });
  const addFormats = addFormatsModule as unknown as (a: Ajv) => Ajv;
  addFormats(ajv);
  const templates = Object.keys(spec.paths).map((template) => {
    const segs = template.split('/');
    const source = segs.map((s) => (/^\{\w+\}$/.test(s) ? '[^/]+' : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/');
    return { template, pattern: new RegExp(`^${source}$`), literals: segs.filter((s) => !s.startsWith('{')).length };
  });
  compiled = { spec, ajv, templates, cache: new Map() };
  return compiled;
}

function validator(c: Compiled, key: string, schema: object): ValidateFunction {
  let v = c.cache.get(key);
  if (!v) {
    v = c.ajv.compile(schema);
    c.cache.set(key, v);
  }
  return v;
}

function describe(v: ValidateFunction): string {
  return (v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ');
}

/** The OpenAPI operation for a method and a concrete path, with its template. */
export function findOperation(method: string, apiPath: string): { template: string; op: Operation } | undefined {
  const c = load();
  const m = method.toLowerCase();
  const path = apiPath.replace(/\/$/, '') || '/';
  const hits = c.templates
    .filter((t) => t.pattern.test(path) && c.spec.paths[t.template]?.[m])
    // A literal segment ("downloads") wins over a parameter ("{runner_id}").
    .sort((a, b) => b.literals - a.literals);
  const best = hits[0];
  return best ? { template: best.template, op: c.spec.paths[best.template]![m]! } : undefined;
}

/**
 * Validates one recorded REST exchange: the operation exists; an accepted request (2xx) had a
 * body and query the spec allows; the response body matches the schema of its status code (an
 * undocumented error status must still carry a GitHub error body). Returns the problems found.
 */
export function validateAgainstOpenApi(rec: RecordedRequest): string[] {
  if (rec.kind !== 'rest') return [];
  const c = load();
  const where = `${rec.method} ${rec.apiPath} → ${rec.status}`;
  const found = findOperation(rec.method, rec.apiPath);
  if (!found) return [`${where}: no operation in the OpenAPI description`];
  const { template, op } = found;
  const problems: string[] = [];
  const ok = rec.status >= 200 && rec.status < 300;

  if (ok) {
    const rb = op.requestBody;
    const schema = rb?.content?.['application/json']?.schema;
    if (rec.reqBody === undefined) {
      if (rb?.required) problems.push(`${where}: accepted a request without the required body`);
    } else if (schema) {
      const v = validator(c, `${template} ${rec.method} request`, schema);
      if (!v(rec.reqBody)) problems.push(`${where}: accepted a request body the API rejects: ${describe(v)}`);
    }
    for (const p of op.parameters ?? []) {
      if (p.in !== 'query') continue;
      const value = rec.query[p.name];
      if (value === undefined) {
        if (p.required) problems.push(`${where}: accepted a request without query parameter ${p.name}`);
      } else if (p.schema?.type === 'integer' && !/^-?\d+$/.test(value)) {
        problems.push(`${where}: accepted non-integer query parameter ${p.name}=${value}`);
      }
    }
  }

  const documented = op.responses[String(rec.status)];
  if (!documented) {
    if (ok) return [...problems, `${where}: status ${rec.status} is not documented for ${template}`];
    if (!GENERIC_ERROR_STATUSES.has(rec.status)) return [...problems, `${where}: unexpected status ${rec.status}`];
    const v = validator(c, 'generic error', GENERIC_ERROR_SCHEMA);
    if (!v(rec.resBody)) problems.push(`${where}: error body is not a GitHub error: ${describe(v)}`);
    return problems;
  }
  const schema = documented.content?.['application/json']?.schema;
  if (!schema) {
    if (rec.resBody !== undefined) problems.push(`${where}: the API sends no body here, the fake sent one`);
    return problems;
  }
  const v = validator(c, `${template} ${rec.method} ${rec.status}`, schema);
  if (!v(rec.resBody)) problems.push(`${where}: response body does not match the schema: ${describe(v)}`);
  return problems;
}
