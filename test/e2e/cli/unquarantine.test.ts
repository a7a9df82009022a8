/**
 * `runner-warden unquarantine --reason TEXT` with no agent running: the release is journaled (who,
 * why, what the quarantine was) before the fact is removed, and the state left for the next start
 * says dirty, so that start cleans and verifies before it serves (the running agent's path is in
 * test/e2e/agent/quarantine.test.ts). A host that is not quarantined is left alone.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { main } from '../../../src/cli/main.js';
import { Journal } from '../../../src/agent/journal.js';
import { initialState } from '../../../src/agent/state-store.js';
import { QuarantineStore, quarantineFact } from '../../../src/agent/quarantine-store.js';
import { captureIo } from '../../helpers/io.js';

async function host(t: TestContext): Promise<{ config: string; stateDir: string }> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'rw-unq-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  const stateDir = path.join(d, 'state');
  await mkdir(stateDir, { mode: 0o711 });
  await writeFile(path.join(d, 'token'), 'x\n', { mode: 0o600 });
  const config = path.join(d, 'config.yaml');
  await writeFile(
    config,
    `github:\n  url: https://github.com\n  org: acme\n  token: { file: ${d}/token }\nrunner:\n  root: ${d}/runner\n  user: nobody\nstateDir: ${stateDir}\n`,
  );
  return { config, stateDir };
}

test('with no agent running, unquarantine journals who and why, removes the fact and leaves the state dirty for the next start', async (t) => {
  const { config, stateDir } = await host(t);
  const since = new Date('2026-01-01T00:00:00Z');
  await new QuarantineStore(stateDir).save(quarantineFact('verification failed: /tmp/x left', since, ['/tmp/x']));
  await writeFile(
    path.join(stateDir, 'state.json'),
    JSON.stringify({ ...initialState(since), state: 'quarantined', dirty: true, quarantineReason: 'verification failed: /tmp/x left' }),
  );
  const c = captureIo();
  const code = await main(['unquarantine', '--config', config, '--reason', 'removed /tmp/x; checked by bob'], c.io, { SUDO_USER: 'bob' });
  assert.equal(code, 0, c.err());
  assert.match(c.out(), /quarantine ended \(was: verification failed: \/tmp\/x left\)/);
  assert.equal(existsSync(path.join(stateDir, 'quarantine.json')), false, 'the fact is still there');
  const state = JSON.parse(await readFile(path.join(stateDir, 'state.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(state.state, 'stopped', 'a state left saying quarantined is read back as the fact by the next start');
  assert.equal(state.dirty, true, 'the next start must clean and verify before it serves');
  assert.equal(state.quarantineReason, undefined);
  const records = (await new Journal({ dir: stateDir }).readAll()).records;
  const ev = records.find((r) => r.type === 'event' && r.event === 'unquarantine');
  assert.ok(ev && ev.type === 'event', 'the release is not journaled');
  assert.match(String(ev.detail?.by), /^bob \(uid \d+\)/);
  assert.equal(ev.detail?.reason, 'removed /tmp/x; checked by bob');
  assert.equal(ev.detail?.quarantineReason, 'verification failed: /tmp/x left');
  assert.equal(ev.detail?.via, 'cli');
});

test('a host that is not quarantined is left alone, and a blank reason is refused', async (t) => {
  const { config, stateDir } = await host(t);
  const c = captureIo();
  assert.equal(await main(['unquarantine', '--config', config, '--reason', 'nothing to do'], c.io, {}), 0, c.err());
  assert.match(c.out(), /not quarantined/);
  assert.deepEqual((await new Journal({ dir: stateDir }).readAll()).records, [], 'nothing happened, so nothing is journaled');
  await new QuarantineStore(stateDir).save(quarantineFact('x', new Date()));
  const blank = captureIo();
  assert.equal(await main(['unquarantine', '--config', config, '--reason', '   '], blank.io, {}), 64);
  assert.equal(existsSync(path.join(stateDir, 'quarantine.json')), true, 'a release without a reason ended the quarantine');
});
