/**
 * The Packer template declares the Packer it needs, and that declaration is true: the template
 * uses what came after Debian 12's packer (1.6.6), which refuses it, while a packer new enough
 * accepts its syntax.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DIR = path.join(ROOT, 'packaging/packer');

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

test("the header's example, run from the repository root, puts the tarball where the template looks for it", async () => {
  const hcl = await readFile(path.join(DIR, 'runner-warden.pkr.hcl'), 'utf8');
  const archive = /^#\s+git archive .*-o (\S+) HEAD$/m.exec(hcl);
  assert.ok(archive?.[1], 'the header shows how to make the source tarball');
  // `packer build -var ... \` and its continuation lines: the last word is the template directory.
  const lines = hcl.split('\n');
  let i = lines.findIndex((l) => /^#\s+packer build /.test(l));
  let command = '';
  while (i >= 0 && i < lines.length) {
    command += ` ${(lines[i] as string).replace(/^#/, '').replace(/\\$/, '')}`;
    if (!(lines[i] as string).endsWith('\\')) break;
    i++;
  }
  const build = /(\S+)\s*$/.exec(command);
  const dflt = /variable "runner_warden_tarball" \{[^}]*default\s*=\s*"([^"]+)"/.exec(hcl);
  assert.ok(dflt?.[1]);
  // A file provisioner's relative source is resolved against packer's working directory.
  assert.equal(path.resolve(ROOT, archive[1]), path.resolve(ROOT, dflt[1]), 'git archive -o and runner_warden_tarball disagree');
  const init = /^#\s+packer init (\S+)$/m.exec(hcl);
  assert.ok(init?.[1] && existsSync(path.join(ROOT, init[1], 'runner-warden.pkr.hcl')), 'packer init names the template directory');
  assert.ok(build?.[1] && existsSync(path.join(ROOT, build[1], 'runner-warden.pkr.hcl')), 'packer build names the template directory');
});
