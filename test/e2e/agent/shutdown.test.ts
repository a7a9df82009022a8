/**
 * A runner shutdown during a job skips every remaining step, post steps and the job-completed hook
 * included (docs/runner-contract.md §4): the agent cleans what they would have (the job's
 * containers and networks, the credentials actions/checkout persists in the workspace's .git) and
 * journals the result as the listener reports it, with GitHub's beside it. Through the simulator
 * with shortened step-stop waits; the drain case starts a real dockerd (~10 s, skipped where it
 * cannot start).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentPolicy, createWorld, until, SIM_ENV, type World } from './agent-world.js';
import { startDockerd, importBusybox } from '../../helpers/dockerd.js';
import { DockerApi } from '../../../src/cleanup/docker-api.js';
import { systemClock, type Clock } from '../../../src/lib/clock.js';
import type { JournalRecord } from '../../../src/agent/journal.js';

/** The worker's step stop shortened from 7.5 s + 2.5 s, so the step below holds it for its whole stop. */
const SHORT_STOP = { ...SIM_ENV, RUNNER_SIM_STEP_SIGINT_TIMEOUT_SECONDS: '1', RUNNER_SIM_STEP_SIGTERM_TIMEOUT_SECONDS: '0.5' };

const MARK = 'persisted-credential-4f1c9a';

/** What actions/checkout leaves in the workspace until its post step runs, then a step that ignores SIGINT and SIGTERM. */
const checkoutThenHang = [
  {
    name: 'checkout',
    run: `mkdir -p .git && printf '[http "https://github.com/"]\\n\\textraheader = AUTHORIZATION: basic ${MARK}\\n' > .git/config`,
  },
  { name: 'hang', run: "trap '' INT TERM; while :; do sleep 1; done" },
];

/** Nothing under the runner root or the lab still holds the persisted credential. */
async function credentialLeft(w: World): Promise<string[]> {
  const hits: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && (await fsp.readFile(p, 'utf8').catch(() => '')).includes(MARK)) hits.push(p);
    }
  };
  await walk(w.runnerRoot);
  return hits;
}

function assertShutdownRecord(records: JournalRecord[], w: World): void {
  const jobs = records.filter((r): r is Extract<JournalRecord, { type: 'job' }> => r.type === 'job');
  assert.equal(jobs.length, 1);
  const job = jobs[0]!;
  assert.equal(job.result, 'Canceled', 'the record keeps the result the listener printed');
  const note = job.notes?.find((n) => /runner shut down during the job/.test(n)) ?? '';
  assert.match(note, /GitHub records the job as Failed/, 'the record says which result it keeps and what GitHub has');
  assert.match(note, /no job-completed hook report/, 'no completed hook runs after a shutdown');
  assert.equal(w.fake.jobs()[0]?.result, 'Failed', 'the worker completes a shut-down job as Failed');
  assert.equal(job.cleanup.clean, true, JSON.stringify(job.cleanup.verify.problems));
}

test('a drain that outlives its grace: no completed hook, the job containers, network and persisted git credential are removed, the host verified clean', async (t) => {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'rw-shutdown-docker-'));
  const started = await startDockerd(root);
  if (!started.ok) {
    await fsp.rm(root, { recursive: true, force: true });
    t.skip(`dockerd could not start here: ${started.reason}`);
    return;
  }
  const d = started.dockerd;
  t.after(async () => {
    await d.stop();
    await fsp.rm(root, { recursive: true, force: true });
  });
  await importBusybox(d, root, 'envlab/busybox:latest');
  const w = await createWorld({ timeouts: { drainGraceMs: 300, listenerStopGraceMs: 20_000 }, runner: { env: SHORT_STOP } });
  t.after(() => w.dispose());
  await fsp.chmod(root, 0o711);
  await fsp.chmod(path.dirname(d.socket), 0o711);
  await fsp.chown(d.socket, 0, w.lab.user.gid);
  await fsp.chmod(d.socket, 0o660);
  await fsp.writeFile(
    path.join(w.policyDir, 'test.yaml'),
    JSON.stringify(
      agentPolicy(w.lab, {
        docker: { mode: 'host' },
        cleanup: { ...(agentPolicy(w.lab).cleanup as object), containers: { socket: d.socket } },
      }),
    ),
  );
  w.fake.enqueueJob({
    repository: 'octo/app',
    steps: [
      checkoutThenHang[0]!,
      {
        name: 'service containers',
        run: `export DOCKER_HOST=unix://${d.socket}; docker network create job-net && docker run -d --name job-db --network job-net envlab/busybox sleep 600 && touch ${w.dropDir}/ready`,
      },
      checkoutThenHang[1]!,
    ],
  });
  const rt = await w.runtime();
  const shutdown = new AbortController();
  const running = rt.agent.run(shutdown.signal);
  // Drain only once the containers exist and the job hangs.
  const api = new DockerApi(d.socket);
  const ready = path.join(w.dropDir, 'ready');
  await until(
    async () =>
      (await fsp.access(ready).then(
        () => true,
        () => false,
      )) || w.fake.jobs()[0]?.status === 'completed',
    'the job containers',
    40_000,
  );
  shutdown.abort();
  const exit = await running;
  await rt.close();
  assert.equal(exit.code, 0, exit.reason);
  assert.equal(
    w.fake.jobs()[0]?.status === 'completed' &&
      !(await fsp.access(ready).then(
        () => true,
        () => false,
      )),
    false,
    `the docker step failed: ${JSON.stringify(w.fake.jobs()[0])}`,
  );
  assertShutdownRecord(await w.journal(), w);
  assert.deepEqual(
    (await api.containers()).map((c) => c.Names),
    [],
    'the job container survived (no "Stop containers" ran)',
  );
  assert.deepEqual(
    (await api.networks()).map((n) => n.Name).filter((n) => !['bridge', 'host', 'none'].includes(n)),
    [],
  );
  assert.deepEqual(await credentialLeft(w), [], 'the credential checkout persisted is still on the host');
});

test('a job over limits.maxJobMinutes is stopped the same way: result as the runner reports it, no completed hook, credential removed', async (t) => {
  // The one-minute job limit passes in 2 s; every other wait is real.
  const clock: Clock = { now: () => systemClock.now(), sleep: (ms, signal) => systemClock.sleep(ms === 60_000 ? 2_000 : ms, signal) };
  const w = await createWorld({ timeouts: { listenerStopGraceMs: 20_000 }, runner: { env: SHORT_STOP, maxJobs: 1 } });
  t.after(() => w.dispose());
  await fsp.writeFile(path.join(w.policyDir, 'test.yaml'), JSON.stringify(agentPolicy(w.lab, { limits: { maxJobMinutes: 1 } })));
  w.fake.enqueueJob({ repository: 'octo/app', steps: checkoutThenHang });
  const rt = await w.runtime({ clock });
  const exit = await rt.agent.run(AbortSignal.timeout(150_000));
  await rt.close();
  const records = await w.journal();
  assertShutdownRecord(records, w);
  assert.ok(
    records.some((r) => r.type === 'job' && r.notes?.some((n) => /maxJobMinutes/.test(n))),
    `the record must say the job limit stopped it (${exit.reason})`,
  );
  assert.deepEqual(await credentialLeft(w), []);
});
