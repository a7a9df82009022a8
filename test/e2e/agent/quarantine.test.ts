/**
 * Quarantine survives restarts, end to end: the real agent process, the simulator and the fake API.
 * Before the fix, a quarantined agent stopped with SIGTERM and started again exited 75
 * (`IllegalTransitionError recovering -> quarantined`) with the reason erased, and the start after
 * that cleaned, verified and served the dirty host. Now every start holds the quarantine until
 * `runner-warden unquarantine --reason TEXT`, which is journaled and followed by a verified cleanup.
 */
import { test } from 'node:test';
import { appendFile } from 'node:fs/promises';
import path from 'node:path';
import assert from 'node:assert/strict';
import { createWorld } from './agent-world.js';
import { startAgentProcess, waitForState } from '../../helpers/agent-process.js';
import { main } from '../../../src/cli/main.js';
import { captureIo } from '../../helpers/io.js';
import { Journal } from '../../../src/agent/journal.js';

test('a quarantined host stays quarantined through restarts until an operator runs unquarantine', async (t) => {
  const w = await createWorld();
  t.after(() => w.dispose());
  await (await w.runtime()).close();
  // The runner installation is tampered with (as a job that got root would): verification fails
  // at the preflight, the host is quarantined.
  await appendFile(path.join(w.runnerRoot, 'run.sh'), '\necho evil\n');
  const first = startAgentProcess(w.configFile);
  await waitForState(w.stateDir, 'quarantined', { agent: first, timeoutMs: 90_000 });
  assert.equal((await first.kill('SIGTERM')).code, 0, first.tail());

  for (let i = 0; i < 2; i++) {
    const again = startAgentProcess(w.configFile);
    await again.waitForLog((l) => l.msg === 'host still quarantined', `restart ${i + 1} to keep the quarantine`, 60_000);
    const exit = await again.kill('SIGTERM');
    assert.equal(exit.code, 0, `restart ${i + 1} exited ${exit.code}:\n${again.tail()}`);
    assert.equal(
      again.indexOf((l) => l.msg === 'runner registered'),
      -1,
      'a quarantined host registered a runner after a restart',
    );
    assert.equal(
      again.indexOf((l) => l.to === 'cleaning'),
      -1,
      'a quarantined host was cleaned for service after a restart',
    );
  }

  // The operator's release, handed to a running agent through the state directory.
  const held = startAgentProcess(w.configFile);
  await held.waitForLog((l) => l.msg === 'host still quarantined', 'the agent to hold the quarantine', 60_000);
  const cap = captureIo();
  const code = await main(['unquarantine', '--config', w.configFile, '--reason', 'run.sh was reviewed'], cap.io, { SUDO_USER: 'alice' });
  assert.equal(code, 0, cap.err());
  await held.waitForLog((l) => l.msg === 'quarantine released by an operator', 'the agent to take the release', 30_000);
  await held.waitForLog((l) => l.to === 'cleaning', 'the released host to be cleaned before anything else', 60_000);
  await held.kill('SIGTERM');
  const records = (await new Journal({ dir: w.stateDir }).readAll()).records;
  const released = records.find((r) => r.type === 'event' && r.event === 'unquarantine');
  assert.ok(released && released.type === 'event', 'the release must be journaled');
  assert.match(String(released.detail?.by), /^alice /, 'the journal names who released it');
  assert.equal(released.detail?.reason, 'run.sh was reviewed');
});
