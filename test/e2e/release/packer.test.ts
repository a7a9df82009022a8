/**
 * The Packer template declares the Packer it needs, and that declaration is true: the template
 * uses what came after Debian 12's packer (1.6.6), which refuses it, while a packer new enough
 * accepts its syntax.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../packaging/packer');

const newer = (a: number[], b: number[]): boolean => {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
};

test('the template says which Packer it needs, and a Packer older than that refuses it', async (t) => {
  const hcl = await readFile(path.join(DIR, 'runner-warden.pkr.hcl'), 'utf8');
  const m = /^\s*required_version\s*=\s*">=\s*(\d+)\.(\d+)\.(\d+)"/m.exec(hcl);
  assert.ok(m, 'packer { required_version = ">= x.y.z" } is missing');
  const needed = [Number(m[1]), Number(m[2]), Number(m[3])];
  // What the template uses and which Packer brought it: required_plugins 1.7, the amazon plugin's
  // imds_support needs the plugin system of 1.7+; HashiCorp supports 1.10 and later.
  assert.ok(/required_plugins\s*\{/.test(hcl));
  assert.ok(newer(needed, [1, 10, 0]), `required_version ${needed.join('.')} is older than what the template uses`);
  assert.match(hcl, /default\s*=\s*"26"/, 'node_version defaults to the newest LTS');
  const which = spawnSync('packer', ['version'], { encoding: 'utf8' });
  if (which.error) {
    t.skip('packer is not installed');
    return;
  }
  const have = (/Packer v(\d+)\.(\d+)\.(\d+)/.exec(which.stdout) ?? []).slice(1, 4).map(Number);
  const v = spawnSync('packer', ['validate', '-syntax-only', '.'], { cwd: DIR, encoding: 'utf8' });
  if (newer(have, needed)) {
    assert.equal(v.status, 0, `packer ${have.join('.')} validate:\n${v.stdout}${v.stderr}`);
  } else {
    assert.notEqual(v.status, 0, `packer ${have.join('.')} accepted a template that declares >= ${needed.join('.')}`);
  }
});
