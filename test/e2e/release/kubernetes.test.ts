/**
 * The Kubernetes manifests (kustomize base, kept rather than a Helm chart: Helm is not in Debian
 * and the base is a handful of files) render with kubectl's kustomize, and the
 * PodDisruptionBudget and PodMonitor match what the Deployment really exposes: a schema check of
 * the fields each API requires, and their selectors and port against the Deployment's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { Ajv } from 'ajv';
import { PDB_SCHEMA, PODMONITOR_SCHEMA } from './k8s-schemas.js';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../packaging/kubernetes');

type Obj = Record<string, unknown>;
const get = (o: unknown, p: string): unknown =>
  p.split('.').reduce<unknown>((a, k) => (a && typeof a === 'object' ? (a as Obj)[k] : undefined), o);

test('the base renders; the PDB and PodMonitor select the Deployment pods and its health port', async (t) => {
  const k = spawnSync('kubectl', ['kustomize', DIR], { encoding: 'utf8' });
  if (k.error) {
    t.skip('kubectl is not installed');
    return;
  }
  assert.equal(k.status, 0, k.stderr);
  const docs = parseAllDocuments(k.stdout).map((d) => d.toJS() as Obj);
  const byKind = (kind: string): Obj => {
    const o = docs.find((d) => d.kind === kind);
    assert.ok(o, `no ${kind} rendered`);
    return o;
  };
  const deploy = byKind('Deployment');
  const podLabels = get(deploy, 'spec.template.metadata.labels') as Record<string, string>;
  const ports = (get(deploy, 'spec.template.spec.containers') as Obj[]).flatMap((c) => (c.ports as Obj[] | undefined) ?? []);

  const pdb = byKind('PodDisruptionBudget');
  assert.equal(pdb.apiVersion, 'policy/v1');
  assert.equal(get(pdb, 'metadata.namespace'), get(deploy, 'metadata.namespace'));
  const hasOne = ['spec.maxUnavailable', 'spec.minAvailable'].filter((f) => get(pdb, f) !== undefined);
  assert.equal(hasOne.length, 1, 'exactly one of maxUnavailable and minAvailable');
  assert.ok(['IfHealthyBudget', 'AlwaysAllow', undefined].includes(get(pdb, 'spec.unhealthyPodEvictionPolicy') as string | undefined));
  for (const [key, value] of Object.entries(get(pdb, 'spec.selector.matchLabels') as Record<string, string>)) {
    assert.equal(podLabels[key], value, `PDB selector ${key}=${value} does not match the pods`);
  }

  const pm = parseAllDocuments(await readFile(path.join(DIR, 'podmonitor.yaml'), 'utf8')).map((d) => d.toJS() as Obj)[0] as Obj;
  assert.equal(pm.apiVersion, 'monitoring.coreos.com/v1');
  assert.equal(pm.kind, 'PodMonitor');
  assert.equal(get(pm, 'metadata.namespace'), get(deploy, 'metadata.namespace'));
  for (const [key, value] of Object.entries(get(pm, 'spec.selector.matchLabels') as Record<string, string>)) {
    assert.equal(podLabels[key], value, `PodMonitor selector ${key}=${value} does not match the pods`);
  }
  const endpoints = get(pm, 'spec.podMetricsEndpoints') as Obj[];
  assert.ok(endpoints.length > 0);
  for (const e of endpoints) {
    assert.ok(
      ports.some((p) => p.name === e.port),
      `PodMonitor port "${String(e.port)}" is not a named container port`,
    );
    assert.equal(e.path, '/metrics');
    assert.match(String(e.interval), /^\d+[sm]$/);
  }
});

test('the PodDisruptionBudget and PodMonitor validate against their API schemas, and a misspelt field is refused', async () => {
  const ajv = new Ajv({ allErrors: true, strict: false });
  const pdb = ajv.compile(PDB_SCHEMA);
  const pm = ajv.compile(PODMONITOR_SCHEMA);
  const load = async (f: string): Promise<Obj> =>
    parseAllDocuments(await readFile(path.join(DIR, f), 'utf8')).map((d) => d.toJS() as Obj)[0] as Obj;
  const shipped = { pdb: await load('pdb.yaml'), pm: await load('podmonitor.yaml') };
  assert.ok(pdb(shipped.pdb), `pdb.yaml: ${ajv.errorsText(pdb.errors)}`);
  assert.ok(pm(shipped.pm), `podmonitor.yaml: ${ajv.errorsText(pm.errors)}`);
  // The schemas catch what a hand-edited manifest gets wrong (the API server would drop or refuse it).
  const spec = (o: Obj): Obj => o.spec as Obj;
  const bad: [string, (o: Obj) => boolean, Obj][] = [
    ['maxUnavailabe (typo)', pdb, { ...shipped.pdb, spec: { ...spec(shipped.pdb), maxUnavailabe: 1 } }],
    ['both budgets', pdb, { ...shipped.pdb, spec: { ...spec(shipped.pdb), minAvailable: 1 } }],
    ['eviction policy value', pdb, { ...shipped.pdb, spec: { ...spec(shipped.pdb), unhealthyPodEvictionPolicy: 'Always' } }],
    [
      'endpoints (not podMetricsEndpoints)',
      pm,
      { ...shipped.pm, spec: { selector: spec(shipped.pm).selector, endpoints: spec(shipped.pm).podMetricsEndpoints } },
    ],
    [
      'interval 30 (no unit)',
      pm,
      { ...shipped.pm, spec: { ...spec(shipped.pm), podMetricsEndpoints: [{ port: 'health', path: '/metrics', interval: '30' }] } },
    ],
  ];
  for (const [what, validate, doc] of bad) assert.equal(validate(doc), false, `${what} should be refused`);
});
