/**
 * An agent (re)started on a host whose disk a job filled: the runner installation and the state
 * directory share one small filesystem (a tmpfs) and a file the job left in `_work` fills it.
 * The agent must not die of ENOSPC (systemd would restart it until its start limit, and nothing
 * would ever clean the host): it cleans, which frees the job's space, and then serves or recycles.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chown, mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { createWorld } from '../../../bench/lib/world.js';
import { startAgentProcess } from '../../helpers/agent-process.js';

/** Room for the runner installation, the state and a job's work; small to fill. */
const HOST_FS_BYTES = 48 * 1024 * 1024;

/** Fills the filesystem of `file` until ENOSPC (as the runner user would, with a file it owns). */
async function fill(file: string, uid: number, gid: number): Promise<void> {
  const fh = await open(file, 'w');
  const chunk = Buffer.alloc(256 * 1024, 1);
  try {
    for (;;) await fh.write(chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
  await chown(file, uid, gid);
}

test(
  'started on a disk a job filled, the agent cleans the job away and serves (or recycles) instead of dying of ENOSPC',
  { timeout: 180_000 },
  async (t) => {
    const w = await createWorld({ hostFsBytes: HOST_FS_BYTES, runner: { maxJobs: 1 } });
    t.after(() => w.dispose());
    await w.baseline();
    const work = path.join(w.runnerRoot, '_work', 'octo', 'app');
    await mkdir(work, { recursive: true });
    await chown(path.join(w.runnerRoot, '_work'), w.user.uid, w.user.gid);
    await fill(path.join(work, 'huge.bin'), w.user.uid, w.user.gid);

    const agent = startAgentProcess(w.configFile, { logLevel: 'info' });
    t.after(() => agent.kill('SIGKILL'));
    const outcome = await Promise.race([
      agent
        .waitForLog((l) => l.msg === 'runner registered', 'a runner registered once the job was cleaned away', 120_000)
        .then(() => 'registered' as const),
      agent.exited.then(() => 'exited' as const),
    ]);
    if (outcome === 'exited') {
      // Also fine: the disk was still low after the trash (a loaded machine deletes slowly) and the
      // host was recycled. Not fine: dying of the full disk (75, or 78 which systemd never restarts).
      const exit = await agent.exited;
      const stopped = agent.lines.find((l) => l.msg === 'agent stopped');
      assert.equal(exit.code, 0, `the agent died on a full disk instead of cleaning it:\n${agent.tail()}`);
      assert.match(String(stopped?.reason), /recycle/, `the agent stopped without cleaning and recycling:\n${agent.tail()}`);
      return;
    }
    const id = w.fake.enqueueJob({ repository: 'octo/app', runId: 1, steps: [{ name: 'ok', run: 'echo ok' }] });
    await w.fake.waitForJob(id, 'completed', 60_000);
    assert.equal(w.fake.job(id)?.result, 'Succeeded', agent.tail());
    const exit = await agent.waitForExit(90_000);
    assert.equal(exit.code, 0, agent.tail());
  },
);
