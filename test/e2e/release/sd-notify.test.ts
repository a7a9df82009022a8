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
import { startSystemdNotify, watchdogUsecFor } from '../../../src/lib/sd-notify.js';
import { systemClock } from '../../../src/lib/clock.js';
import { silentLogger } from '../../../src/lib/log.js';
import { startNotifySocket } from './notify-socket.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits for `pred`, bounded generously: on a loaded two-core machine one systemd-notify run can take a second. */
async function until(what: string, pred: () => Promise<boolean>, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (await pred()) return;
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

test('READY=1 waits for readiness; the watchdog is fed while alive and starves while the loop is wedged', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rw-sdnotify-'));
  const sock = await startNotifySocket(dir);
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
  // Stopped whatever an assertion says: a running notifier would hold the test process forever.
  let stopped = false;
  try {
    await sleep(800);
    assert.equal((await sock.messages()).filter((m) => m.vars.includes('READY=1')).length, 0, 'READY=1 before the agent served');
    const readyAt = Date.now();
    ready = true;
    await n.readySent;
    const firstReady = (await sock.messages()).find((m) => m.vars.includes('READY=1'));
    assert.ok(firstReady && firstReady.at >= readyAt - 5, 'READY=1 sent once ready');
    const watchdogs = async (after: number): Promise<number> =>
      (await sock.messages()).filter((m) => m.at > after && m.vars.includes('WATCHDOG=1')).length;
    await until('three pings while alive', async () => (await watchdogs(readyAt)) >= 3);

    alive = false;
    // Pings are sent one after another: at most one already started may still land, late on a
    // loaded machine. Then two watchdog intervals and more without a ping: systemd would kill.
    await sleep(3_000);
    const wedgedFrom = Date.now();
    await sleep(1_500);
    assert.equal(await watchdogs(wedgedFrom), 0, 'no ping while the loop is not alive');

    alive = true;
    const aliveAgain = Date.now();
    await until('pings again once alive', async () => (await watchdogs(aliveAgain)) >= 1);
    await n.stop();
    stopped = true;
    // systemd-notify follows each message with BARRIER=1 and waits until systemd has read it.
    const last = (await sock.messages()).filter((m) => !m.vars.includes('BARRIER=1')).at(-1);
    assert.deepEqual(last?.vars, ['STOPPING=1']);
  } finally {
    if (!stopped) await n.stop();
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
