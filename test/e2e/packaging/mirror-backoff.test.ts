/**
 * The image cache's restart backoff (packaging/systemd/runner-warden-mirror-backoff), run by the
 * unit before every start: quick failures in a row wait 5 s, 10 s, ... up to 5 minutes; a start
 * after a long run waits nothing. Driven with its --now clock and --dry-run, against a state file
 * of the test's own.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEB_PREFIX } from '../../../scripts/release.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SCRIPT = path.resolve(HERE, '../../../packaging/systemd/runner-warden-mirror-backoff');
const UNIT = path.resolve(HERE, '../../../packaging/systemd/runner-warden-mirror.service');

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'rw-backoff-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function wait(state: string, now: number): Promise<number> {
  return new Promise((resolve, reject) =>
    execFile('/bin/sh', [SCRIPT, state, '--now', String(now), '--dry-run'], { encoding: 'utf8' }, (err, out, stderr) =>
      err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(Number(out.trim())),
    ),
  );
}

test('quick failures in a row double the wait up to 5 minutes; a long run resets it', async () => {
  const state = path.join(dir, 'a');
  // Each start comes RestartSec (5 s) after the previous run failed at once.
  const waits: number[] = [];
  let now = 1_000;
  for (let i = 0; i < 10; i++) {
    const w = await wait(state, now);
    waits.push(w);
    now += w + 5;
  }
  assert.deepEqual(waits, [0, 5, 10, 20, 40, 80, 160, 300, 300, 300]);
  // The service then ran for an hour before it failed: the next start waits nothing, and the
  // count starts again.
  now += 3_600;
  assert.equal(await wait(state, now), 0);
  assert.equal(await wait(state, now + 5), 5);
  assert.match(await readFile(state, 'utf8'), /^\d+ 1\n$/);
});

test('a damaged state file or a clock that went back counts as no history', async () => {
  const state = path.join(dir, 'b');
  await writeFile(state, 'garbage\n');
  assert.equal(await wait(state, 5_000), 0);
  await writeFile(state, '9000 7\n');
  assert.equal(await wait(state, 5_000), 0, 'the last start lies in the future');
});

test('the unit runs it before each start, from where the .deb installs it, and reads a config the registry user can open', async () => {
  const unit = await readFile(UNIT, 'utf8');
  const pre = /^ExecStartPre=-?(\S+) (\S+)$/m.exec(unit);
  assert.ok(pre, 'an ExecStartPre line');
  assert.equal(pre[1], `${DEB_PREFIX}/mirror-backoff`);
  assert.match(pre[2] ?? '', /^\/run\/runner-warden-mirror\//, 'its state lives in the unit RuntimeDirectory');
  assert.match(unit, /^RuntimeDirectory=runner-warden-mirror$/m);
  assert.match(unit, /^RuntimeDirectoryPreserve=yes$/m, 'the state must outlive each stop between restarts');
  // The wait runs inside the start timeout: it must exceed the longest wait (300 s).
  const timeout = /^TimeoutStartSec=(\d+)min$/m.exec(unit);
  assert.ok(timeout && Number(timeout[1]) * 60 > 300, 'TimeoutStartSec over the longest wait');
  // /etc/runner-warden is root's alone (0700): the docker-registry user could not read a config there.
  const config = /^ExecStart=\/usr\/bin\/docker-registry serve (\S+)$/m.exec(unit)?.[1] ?? '';
  assert.ok(config.startsWith('/etc/') && !config.startsWith('/etc/runner-warden/'), config);
});
