/** The policy's docker section: its defaults, and bad values named by file, line and field. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadPolicy } from '../../../src/policy/load.js';
import { PolicyError } from '../../../src/lib/errors.js';

async function load(text: string): Promise<{ policy?: unknown; problems?: string[]; file: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-docker-policy-'));
  const file = path.join(dir, 'team.yaml');
  await writeFile(file, text);
  try {
    return { policy: (await loadPolicy(file)).policy, file };
  } catch (err) {
    if (err instanceof PolicyError) return { problems: err.problems, file };
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('an empty docker section means auto mode, no mirror, and nothing extra allowed', async () => {
  const { policy } = await load('version: 1\n');
  assert.deepEqual((policy as { docker: unknown }).docker, {
    mode: 'auto',
    mirror: null,
    mirrorCapGiB: 20,
    warm: { images: [], learn: false, max: 5 },
    allow: { privileged: false, hostNamespaces: false, hostPaths: [], devices: [], capabilities: [] },
  });
});

test('bad docker values are named with the file, line, field and what was expected', async () => {
  const { problems, file } = await load(
    'version: 1\ndocker:\n  mode: rootful\n  mirror: ftp://x\n  allow:\n    hostPaths: [relative]\n    devices: [/etc/passwd]\n    capabilities: [sys_admin]\n  warm:\n    images: [ghcr.io/acme/tool:1]\n    max: 50\n',
  );
  const text = (problems ?? []).join('\n');
  assert.match(text, new RegExp(`${file}:3:\\d+: docker\\.mode: expected one of "auto", "isolated", "host", "none", got "rootful"`));
  assert.match(text, /:4:\d+: docker\.mirror: expected an http\(s\):\/\/ URL of the registry mirror/);
  assert.match(text, /:6:\d+: docker\.allow\.hostPaths\[0\]: expected an absolute directory path/);
  assert.match(text, /:7:\d+: docker\.allow\.devices\[0\]: expected a device path under \/dev/);
  assert.match(text, /:8:\d+: docker\.allow\.capabilities\[0\]: expected a capability name such as NET_ADMIN/);
  assert.match(text, /:10:\d+: docker\.warm\.images\[0\]: expected a Docker Hub image such as node:20.*got "ghcr\.io\/acme\/tool:1"/);
  assert.match(text, /:11:\d+: docker\.warm\.max: expected an integer from 1 to 20, got 50/);
});
