/**
 * The listener does not wait for the job's engine: prepare hands out a socket the agent made and
 * the engine inherits (socket activation). A call made at once waits in the socket's queue and is
 * answered; an engine that dies before answering makes waiting calls fail (never hang) and is a
 * verify finding, so the host is not reused as if it could give the policy's mode.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { DEFAULT_ENGINE_HOST_PATHS } from '../../../src/engine/host-checks.js';
import { dockerPolicy, guardCtx, makeJob, openTun } from './fixture.js';

const run = promisify(execFile);
let lab: Lab;
let closeTun: () => Promise<void>;
const CGROUP_PARENT = 'rw-test-activation';
const policy = dockerPolicy({ mode: 'isolated' });

before(async () => {
  lab = await createLab('rw-activation-');
  closeTun = await openTun();
});

after(async () => {
  await closeTun();
  await lab.dispose();
  await fsp.rmdir(path.join('/sys/fs/cgroup', CGROUP_PARENT)).catch(() => undefined);
});

/** `docker version` as the runner user (what a job's first step would run), with its duration. */
async function dockerAsRunner(socket: string): Promise<{ ok: boolean; out: string; ms: number }> {
  const t = Date.now();
  try {
    const { stdout } = await run(
      'setpriv',
      [`--reuid=${lab.user.uid}`, `--regid=${lab.user.gid}`, '--clear-groups', 'docker', 'version', '--format', '{{.Server.Version}}'],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DOCKER_HOST: `unix://${socket}`, HOME: lab.user.home }, timeout: 60_000 },
    );
    return { ok: true, out: stdout.trim(), ms: Date.now() - t };
  } catch (err) {
    const e = err as { stderr?: string; message: string; killed?: boolean };
    return { ok: false, out: `${e.killed ? 'TIMED OUT ' : ''}${e.stderr ?? e.message}`, ms: Date.now() - t };
  }
}

test('prepare returns before the engine answers, and a docker call made at once waits for it and is answered', async () => {
  let answeredAfter = NaN;
  const guard = new EngineGuard({ cgroupParent: CGROUP_PARENT, onStarted: (ms) => (answeredAfter = ms) });
  const job = await makeJob(lab);
  try {
    const prepared = await guard.prepare(job, policy, guardCtx());
    assert.ok(Number.isNaN(answeredAfter), 'prepare waited for the engine: the listener would wait with it');
    const socket = (prepared.env?.DOCKER_HOST ?? '').replace(/^unix:\/\//, '');
    const st = await fsp.stat(socket);
    assert.ok(st.isSocket() && st.uid === lab.user.uid && (st.mode & 0o077) === 0, "the socket is the runner user's alone");
    const call = await dockerAsRunner(socket);
    assert.ok(call.ok, `the first call failed instead of waiting for the engine: ${call.out}`);
    assert.match(call.out, /^\d+\.\d+/, 'the engine answered the version');
    assert.equal((await guard.release(job, policy, guardCtx())).outcome, 'ok');
    assert.deepEqual(await guard.verify(job, policy, guardCtx()), [], 'a started engine leaves no finding');
  } finally {
    await guard.drain();
  }
});

test('an engine that dies before answering fails the waiting call at once and is a verify finding', async () => {
  // A dockerd that exits at once, found first on the engine's PATH.
  const fakeBin = path.join(lab.root, 'broken-bin');
  await fsp.mkdir(fakeBin, { recursive: true, mode: 0o755 });
  await fsp.writeFile(path.join(fakeBin, 'dockerd'), '#!/bin/sh\necho "broken dockerd for the test" >&2\nsleep 1\nexit 3\n', {
    mode: 0o755,
  });
  const guard = new EngineGuard({
    cgroupParent: CGROUP_PARENT,
    enginePath: [fakeBin, ...DEFAULT_ENGINE_HOST_PATHS.binDirs].join(':'),
  });
  const job = await makeJob(lab);
  try {
    const prepared = await guard.prepare(job, policy, guardCtx());
    const socket = (prepared.env?.DOCKER_HOST ?? '').replace(/^unix:\/\//, '');
    const call = await dockerAsRunner(socket);
    assert.equal(call.ok, false, 'a call to a dead engine succeeded');
    assert.doesNotMatch(call.out, /TIMED OUT/, "the call hung on the dead engine's socket");
    await guard.drain(); // the start's outcome is known
    assert.equal((await guard.release(job, policy, guardCtx())).outcome, 'ok');
    const findings = await guard.verify(job, policy, guardCtx());
    assert.ok(
      findings.some((f) => /engine never answered: the engine exited/.test(f.problem)),
      `no finding for the engine that never answered: ${JSON.stringify(findings)}`,
    );
  } finally {
    await guard.drain();
  }
});
