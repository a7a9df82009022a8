/**
 * The systemd notifier against a real unix datagram socket, sent through the real
 * `systemd-notify`: READY=1 only once the agent serves, WATCHDOG=1 only while the loop is alive,
 * STOPPING=1 at the end; nothing at all when not started by systemd.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startSystemdNotify, watchdogUsecFor } from '../../src/lib/sd-notify.js';
import { systemClock } from '../../src/lib/clock.js';
import { silentLogger } from '../../src/lib/log.js';
import { startNotifySocket } from './notify-socket.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('READY=1 waits for readiness; the watchdog is fed while alive and starves while the loop is wedged', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-sdnotify-'));
  const sock = await startNotifySocket(dir);
  try {
    let ready = false;
    let alive = true;
    const n = startSystemdNotify({
      socket: sock.path,
      watchdogUsec: 600_000, // 600 ms: a ping every 200 ms
      ready: async () => ready,
      alive: () => alive,
      clock: systemClock,
      log: silentLogger(),
      env: { PATH: process.env.PATH },
    });
    await sleep(800);
    assert.equal((await sock.messages()).filter((m) => m.vars.includes('READY=1')).length, 0, 'READY=1 before the agent served');
    const readyAt = Date.now();
    ready = true;
    await n.readySent;
    await sleep(800);
    const before = await sock.messages();
    const firstReady = before.find((m) => m.vars.includes('READY=1'));
    assert.ok(firstReady && firstReady.at >= readyAt - 5, 'READY=1 sent once ready');
    assert.ok(before.filter((m) => m.vars.includes('WATCHDOG=1')).length >= 4, `pings while alive: ${JSON.stringify(before)}`);

    alive = false;
    await sleep(300); // a ping already on its way may still land
    const wedgedFrom = Date.now();
    await sleep(1_200); // two watchdog intervals: systemd would have killed the agent
    const starving = (await sock.messages()).filter((m) => m.at > wedgedFrom && m.vars.includes('WATCHDOG=1'));
    assert.deepEqual(starving, [], 'no ping while the loop is not alive');

    alive = true;
    await sleep(700);
    assert.ok((await sock.messages()).some((m) => m.at > wedgedFrom + 1_200 && m.vars.includes('WATCHDOG=1')), 'pings again once alive');
    await n.stop();
    // systemd-notify follows each message with BARRIER=1 and waits until systemd has read it.
    const last = (await sock.messages()).filter((m) => !m.vars.includes('BARRIER=1')).at(-1);
    assert.deepEqual(last?.vars, ['STOPPING=1']);
  } finally {
    await sock.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('without NOTIFY_SOCKET nothing is sent; WATCHDOG_PID of another process disables the watchdog', async () => {
  let probed = 0;
  const n = startSystemdNotify({
    socket: undefined,
    watchdogUsec: 600_000,
    ready: async () => ((probed += 1), true),
    alive: () => true,
    clock: systemClock,
    log: silentLogger(),
    command: '/nonexistent/systemd-notify',
  });
  await n.readySent;
  await n.stop();
  assert.equal(n.sent, 0);
  assert.equal(probed, 0);
  assert.equal(watchdogUsecFor('60000000', undefined, 42), 60_000_000);
  assert.equal(watchdogUsecFor('60000000', '42', 42), 60_000_000);
  assert.equal(watchdogUsecFor('60000000', '43', 42), undefined);
  assert.equal(watchdogUsecFor('0', undefined, 42), undefined);
  assert.equal(watchdogUsecFor('6e7', undefined, 42), undefined);
});
