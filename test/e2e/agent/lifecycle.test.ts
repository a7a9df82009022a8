/**
 * The agent end to end: the real agent, the runner simulator as real processes as a throwaway
 * runner user, and the fake GitHub API on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { createWorld, jobRecords } from './agent-world.js';

const STEP_SNOOP = (drop: string) =>
  [
    // What a hostile job can see: its environment, every readable cmdline (one line per process)
    // and environ. One perl process reads them all: a shell loop forks two cats and two trs per
    // process, seconds of CPU per job on a shared two-core machine (tens of seconds under load).
    `env > ${drop}/env.$GITHUB_RUN_ID`,
    `perl -e 'for my $p (glob "/proc/[0-9]*") { local $/; if (open my $f, "<", "$p/cmdline") { my $c = <$f> // ""; $c =~ tr/\\0/ /; print $c } print "\\n"; if (open my $f, "<", "$p/environ") { my $e = <$f> // ""; $e =~ tr/\\0/\\n/; print $e } }' > ${drop}/proc.$GITHUB_RUN_ID || true`,
  ].join('\n');

test('the agent serves three jobs on fresh single-use registrations, cleaning between them', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 3 } });
  t.after(() => w.dispose());
  const rt = await w.runtime();
  for (let i = 0; i < 3; i++) {
    w.fake.enqueueJob({
      repository: 'octo/app',
      workflow: 'CI',
      runId: 500 + i,
      job: `job${i}`,
      steps: [{ name: 'work', run: `mkdir -p out && seq 1 50 | while read n; do echo $n > out/$n; done\n${STEP_SNOOP(w.dropDir)}` }],
    });
  }
  // The agent stops on its own after the third job; the signal only bounds a wedged run. At load
  // 20 on two cores three jobs took over 90 s and the third was cancelled by this bound.
  const exit = await rt.agent.run(AbortSignal.timeout(240_000));
  await rt.close();
  assert.equal(exit.code, 0, `agent exit: ${exit.reason}`);
  const jobs = jobRecords(await w.journal());
  assert.equal(jobs.length, 3, 'one journal record per job');
  assert.deepEqual(
    jobs.map((j) => j.result),
    ['Succeeded', 'Succeeded', 'Succeeded'],
  );
  assert.deepEqual(new Set(jobs.map((j) => j.runnerName)).size, 3, 'every job must get a fresh registration');
  for (const j of jobs) {
    assert.equal(j.cleanup.clean, true, `cleanup not clean: ${JSON.stringify(j.cleanup.verify.problems)}`);
    assert.equal(j.job.repository, 'octo/app', 'hook metadata missing from the journal');
  }
  assert.deepEqual(await readdir(path.join(w.runnerRoot, '_work')), [], '_work must be empty after the last job');
  // One JIT call per job, plus the runner-group lookup made once at the first registration.
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 3);
  assert.equal(w.fake.restCalls(), 4, 'steady state must be exactly one GitHub call per job');
  const token = w.fake.defaultToken;
  for (const f of await readdir(w.dropDir)) {
    const text = await readFile(path.join(w.dropDir, f), 'utf8');
    assert.equal(text.includes(token), false, `${f}: the agent's token is visible to the job`);
    assert.equal(/RUNNER_WARDEN_/.test(text), false, `${f}: the agent's environment leaked into the job`);
    if (f.startsWith('proc.')) {
      assert.match(text, /listener\.mjs/, `${f}: the job's view of /proc lacks its own listener (the snoop read nothing)`);
      for (const line of text.split('\n')) {
        assert.equal(/Runner\.Listener.*jitconfig/i.test(line), false, 'a JIT config appeared in a command line');
      }
    }
  }
  assert.equal(w.fake.runners().length, 0, 'no registration may be left behind (ghost runners)');
});

test('with prefetch the next runner is registered while the job runs, and an unused one is deleted at stop', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 3, prefetch: true } });
  t.after(() => w.dispose());
  for (let i = 0; i < 3; i++) w.fake.enqueueJob({ repository: 'octo/app', runId: 700 + i, steps: [{ name: 'work', run: 'sleep 0.3' }] });
  const { exit } = await w.runToEnd(90_000);
  assert.equal(exit.code, 0, exit.reason);
  const jobs = jobRecords(await w.journal());
  assert.deepEqual(
    jobs.map((j) => j.result),
    ['Succeeded', 'Succeeded', 'Succeeded'],
  );
  // Jobs 2 and 3 ran on runners prefetched during jobs 1 and 2; the one prefetched during job 3 is deleted.
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 4);
  assert.equal(w.fake.restCalls({ method: 'DELETE' }), 1, 'only the unused prefetched registration is deleted');
  assert.equal(w.fake.runners().length, 0, 'no ghost registration');
});

test("the job runs with the runner user's supplementary groups (e.g. docker), not only its primary group", async (t) => {
  const w = await createWorld({ runner: { maxJobs: 1 } });
  t.after(() => w.dispose());
  const group = `rwg${w.lab.user.name.slice(2, 8)}`;
  execFileSync('groupadd', [group]);
  t.after(() => execFileSync('groupdel', [group]));
  execFileSync('usermod', ['-aG', group, w.lab.user.name]);
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'groups', run: `id -Gn > ${w.dropDir}/groups` }] });
  const { exit } = await w.runToEnd(60_000);
  assert.equal(exit.code, 0, exit.reason);
  const groups = (await readFile(path.join(w.dropDir, 'groups'), 'utf8')).trim().split(/\s+/);
  assert.ok(groups.includes(group), `the job's groups were ${groups.join(' ')}; a runner in the docker group would lose docker`);
});
