/**
 * `runner-warden drain --url URL` (in its usage text) reaches the agent's health endpoint with the
 * health token, and only with it: before, the option was ignored and the command went to the pid
 * file. The token comes from --token-file, or from the host config's health.tokenFile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { main } from '../../../src/cli/main.js';
import { startHealthServer } from '../../../src/health/server.js';
import { AgentMetrics } from '../../../src/health/metrics.js';
import type { StatusSnapshot } from '../../../src/health/snapshot.js';
import { captureIo } from '../../helpers/io.js';

const TOKEN = 'drain-url-token-0123456789';

function snapshot(): StatusSnapshot {
  return {
    state: 'idle',
    stateSince: '2026-01-01T00:00:00.000Z',
    loopAlive: true,
    quarantined: false,
    jobsServed: 0,
    policy: { team: 'default', file: '/etc/runner-warden/policies/default.yaml', version: 'v1' },
    agent: { version: '0', pid: 1, startedAt: '2026-01-01T00:00:00.000Z', uptimeSeconds: 1 },
  };
}

test('drain --url asks the health endpoint with the token (from --token-file or the config), and nothing without it', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-drain-url-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tokenFile = path.join(dir, 'token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const wrongFile = path.join(dir, 'wrong');
  await writeFile(wrongFile, 'another-token-0123456789\n', { mode: 0o600 });
  let drains = 0;
  const server = await startHealthServer({
    listen: '127.0.0.1:0',
    tokenFile,
    snapshot,
    metrics: new AgentMetrics({ version: '0' }),
    onDrain: () => void drains++,
  });
  t.after(() => server.close());
  const url = `http://127.0.0.1:${server.address.port}`;
  const run = async (args: string[]): Promise<{ code: number; out: string; err: string }> => {
    const c = captureIo();
    const code = await main(['drain', ...args], c.io, {});
    return { code, out: c.out(), err: c.err() };
  };

  const bare = await run(['--url', url]);
  assert.equal(bare.code, 78, `no token: refused as a configuration problem\n${bare.err}`);
  const wrong = await run(['--url', url, '--token-file', wrongFile]);
  assert.equal(wrong.code, 78, wrong.err);
  assert.equal(drains, 0, 'a drain without the right token reached the agent');

  const ok = await run(['--url', url, '--token-file', tokenFile]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /drain requested from http:\/\/127\.0\.0\.1:/);
  assert.equal(drains, 1, '--url was ignored: the health endpoint was never asked');

  const config = path.join(dir, 'config.yaml');
  await writeFile(
    config,
    `github:\n  url: https://github.com\n  org: acme\n  token: { file: ${tokenFile} }\nrunner:\n  root: ${dir}/runner\n  user: nobody\n` +
      `stateDir: ${dir}/state\nhealth:\n  tokenFile: ${tokenFile}\n`,
  );
  const fromConfig = await run(['--config', config, '--url', url]);
  assert.equal(fromConfig.code, 0, fromConfig.err);
  assert.equal(drains, 2, "the config's health.tokenFile was not used");

  await server.close();
  const gone = await run(['--url', url, '--token-file', tokenFile]);
  assert.equal(gone.code, 75, `no agent answering is a temporary failure\n${gone.err}`);
  assert.match(gone.err, /no running agent answered/);
});
