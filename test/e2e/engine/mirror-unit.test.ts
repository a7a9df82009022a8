/**
 * The packaged image cache restarts whatever made it stop, with no start limit (docker-registry
 * in proxy mode exits at every start while its upstream does not answer), and the unit passes
 * `systemd-analyze verify` without a warning. Skipped where systemd-analyze is not installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const UNIT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../packaging/systemd/runner-warden-mirror.service');
const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));

/** `Key=value` lines of one section. */
function section(text: string, name: string): Map<string, string> {
  const out = new Map<string, string>();
  let inside = false;
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t.startsWith('[')) inside = t === `[${name}]`;
    else if (inside && t && !t.startsWith('#')) {
      const i = t.indexOf('=');
      out.set(t.slice(0, i), t.slice(i + 1));
    }
  }
  return out;
}

test('the packaged image cache is restarted after any exit, without a start limit', async () => {
  const text = await fsp.readFile(UNIT, 'utf8');
  const service = section(text, 'Service');
  assert.equal(service.get('Restart'), 'always', 'a clean exit must restart it too');
  assert.match(service.get('RestartSec') ?? '', /^\d+s$/);
  assert.equal(
    section(text, 'Unit').get('StartLimitIntervalSec'),
    '0',
    "systemd's default start limit gives up after five starts in ten seconds",
  );
});

test('the unit passes systemd-analyze verify without a warning', { skip: !ANALYZE && 'systemd-analyze is not installed' }, async () => {
  const r = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(ANALYZE as string, ['verify', UNIT], (err, _out, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
    ),
  );
  assert.equal(r.code, 0, r.stderr);
  // Warnings about the binary or user absent on a test machine are not the unit's.
  const own = r.stderr
    .split('\n')
    .filter((l) => l.includes('runner-warden-mirror.service') && !/docker-registry|not found|No such/i.test(l));
  assert.deepEqual(own, [], r.stderr);
});
