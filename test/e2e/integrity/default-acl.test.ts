/**
 * A default ACL set through sudo, end to end: the real agent, `runner.sudo: allow`, the check on a
 * host tree this test builds. `setfacl -d -m u:runner:rwx /etc/cron.d` changes no file (no mode,
 * byte or mtime), but every file root later creates there is the runner user's to write: a delayed
 * escalation. The check names it and the host is quarantined; once the operator removes the ACL
 * and runs `runner-warden unquarantine`, the agent verifies again, finds nothing, and serves the
 * next job.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { jobRecords, testPolicy, type World } from '../../helpers/world.js';
import { unquarantineCli } from '../../../src/cli/unquarantine.js';
import { sudoTreeWorld, wireOnTree } from './sudo-tree-world.js';

/** One job and a cleanup per run, and a preflight: 10-20 s here; room for a loaded two-core machine. */
const AGENT_RUN_LIMIT_MS = 120_000;
/** The ACL is read on the setuid surface, over the trees of the file surfaces. */
const SURFACES = ['etc', 'setuid', 'accounts'];

function unsupported(): string | undefined {
  if (!existsSync('/usr/bin/sudo')) return 'sudo is not installed (scripts/install-test-deps.sh)';
  if (!existsSync('/usr/bin/setfacl')) return 'acl is not installed (scripts/install-test-deps.sh)';
  return undefined;
}

/** Runs the agent of `w` on `T` until it is quarantined or has recorded `jobs` jobs. */
async function runAgent(w: World, T: string, jobs: number): Promise<void> {
  const rt = await wireOnTree(w, T);
  const stop = new AbortController();
  const watch = setInterval(() => {
    if (rt.agent.snapshot().quarantined) stop.abort();
    void w.journal().then((r) => jobRecords(r).length >= jobs && stop.abort());
  }, 250);
  try {
    await rt.agent.run(AbortSignal.any([AbortSignal.timeout(AGENT_RUN_LIMIT_MS), stop.signal]));
  } finally {
    clearInterval(watch);
    await rt.close();
  }
}

test(
  'a default ACL set on /etc/cron.d through sudo is named and the host quarantined; removed, the host serves again',
  { skip: unsupported(), timeout: 300_000 },
  async (t) => {
    const { w, T } = await sudoTreeWorld(t);
    await writeFile(
      path.join(w.policyDir, 'test.yaml'),
      stringify({ ...testPolicy(w.lab, { host: { integrity: { enabled: true, surfaces: SURFACES } } }), runner: { sudo: 'allow' } }),
    );
    const dir = `${T}/etc/cron.d`;
    const plant = `sudo -n setfacl -d -m u:${w.lab.user.name}:rwx ${dir}`;
    w.fake.enqueueJob({ repository: 'octo/app', runId: 1, job: 'acl', steps: [{ name: 'default ACL through sudo', run: plant }] });
    w.fake.enqueueJob({ repository: 'octo/app', runId: 2, job: 'next', steps: [{ name: 'build', run: 'true' }] });

    await runAgent(w, T, 2);
    const [planted, ...rest] = jobRecords(await w.journal());
    assert.ok(planted, 'no job recorded');
    assert.equal(rest.length, 0, 'a job ran after the plant');
    assert.equal(planted.result, 'Succeeded', 'the job could not set the default ACL');
    assert.match(
      execFileSync('getfacl', ['-d', dir], { encoding: 'utf8', stdio: 'pipe' }),
      new RegExp(`^user:${w.lab.user.name}:rwx`, 'm'),
    );
    const lines = (planted.guardFindings ?? []).filter((f) => f.guard === 'integrity').map((f) => f.problem);
    assert.ok(
      lines.some((l) => /^setuid: acl:\/etc\/cron\.d added \(the job through sudo/.test(l)),
      `the default ACL is not named:\n${lines.join('\n')}`,
    );
    const detail = (planted.guardFindings ?? []).find((f) => f.problem.startsWith('setuid: acl:/etc/cron.d'))?.detail;
    assert.match(String(detail?.after), new RegExp(`default:user:${w.lab.user.name}:rwx`), 'the drift does not say which entry');
    assert.equal(planted.decision, 'quarantine', planted.decisionReason);

    // The operator: the ACL removed, the quarantine released; the agent verifies again before serving.
    execFileSync('setfacl', ['-k', dir]);
    const io = { stdout: { write: () => true }, stderr: { write: (s: string) => process.stderr.write(s) } };
    assert.equal(await unquarantineCli(['--reason', 'default ACL removed', '--config', w.configFile], io, {}), 0);
    await runAgent(w, T, 2);
    const next = jobRecords(await w.journal())[1];
    assert.ok(next, 'the host did not serve again once the ACL was removed');
    assert.equal(next.job.job, 'next');
    assert.deepEqual(next.guardFindings ?? [], [], 'drift after the ACL was removed');
    assert.equal(next.decision, 'reuse', next.decisionReason);
  },
);
