/**
 * docker.mode isolated through the real agent: the runner simulator's listener gets DOCKER_HOST,
 * the job loads busybox into its own rootless engine, runs containers, leaves a running container
 * (--restart always), a volume, a network and a retagged "trusted" image, and tries the host's
 * root engine socket. After it: the engine and every process it started are gone, the host is
 * verified clean and reused, and the second job's engine (started while the first host was
 * verified) sees nothing of the first. A root dockerd of the test's own stands for the host's
 * engine (the policy's cleanup socket), root-only as on a host where the runner user is not in
 * the docker group. Skipped, with the reason, where a rootless engine or dockerd cannot run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { stringify } from 'yaml';
import { createWorld, testPolicy } from '../../helpers/world.js';
import { startDockerd } from '../../helpers/dockerd.js';
import { DockerApi } from '../../../src/cleanup/docker-api.js';
import { processesOfUid } from '../../../src/cleanup/proc.js';
import { DEFAULT_ENGINE_HOST_PATHS, isolatedHostProblems, readSubids } from '../../../src/engine/host-checks.js';
import { processesInRanges } from '../../../src/engine/id-processes.js';
import { busyboxTar, openTun } from './fixture.js';

/** Two jobs with an engine each (about 2 s per start here), a root dockerd's start and stop: 120 s covers a loaded host. */
const AGENT_RUN_LIMIT_MS = 120_000;

/** The processes whose command line names `needles`, as `pid cmdline` lines (none when all are gone). */
async function processesNaming(needles: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const cmd = (await fsp.readFile(`/proc/${e}/cmdline`, 'latin1').catch(() => '')).replace(/\0/g, ' ');
    if (needles.some((n) => cmd.includes(n))) out.push(`${e} ${cmd}`);
  }
  return out;
}

test('isolated mode through the agent: each job gets its own rootless engine, gone after it; the reused host sees nothing of the first job', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 2 } });
  // after() hooks run in the order they are added: the host's engine stops before the lab holding it is removed.
  let stopHost = async (): Promise<void> => {};
  t.after(async () => {
    await stopHost();
    await w.dispose();
  });
  const restoreTun = await openTun();
  t.after(restoreTun);
  const problems = await isolatedHostProblems(w.lab.user, DEFAULT_ENGINE_HOST_PATHS);
  if (problems.length > 0) return t.skip(`a rootless engine cannot run here: ${problems.map((p) => `${p.what} (${p.fix})`).join('; ')}`);
  const hostRoot = path.join(w.lab.root, 'host-engine');
  await fsp.mkdir(hostRoot, { mode: 0o711 });
  const started = await startDockerd(hostRoot);
  if (!started.ok) return t.skip(`the host's stand-in dockerd could not start here: ${started.reason}`);
  const host = started.dockerd;
  stopHost = () => host.stop();
  // The host's engine socket as Debian ships it, without the runner user in its group: visible, root-only.
  await fsp.chmod(path.dirname(host.socket), 0o711);
  await fsp.chmod(host.socket, 0o660);
  const hostApi = new DockerApi(host.socket);
  const hostImagesBefore = (await hostApi.images()).length;

  const tar = await busyboxTar(w.lab.root);
  await fsp.chmod(tar, 0o644);
  const jobRoot = path.join(w.stateDir, 'jobs');
  await fsp.writeFile(
    path.join(w.policyDir, 'test.yaml'),
    stringify(testPolicy(w.lab, { docker: { mode: 'isolated' }, cleanup: { containers: { socket: host.socket, images: 'job' } } })),
  );
  const mark = `rwiso${Date.now().toString(36)}`;
  const drop = w.dropDir;
  w.fake.enqueueJob({
    repository: 'octo/app',
    runId: 901,
    steps: [
      {
        name: 'leave docker state',
        run: [
          'set -e',
          `echo "$DOCKER_HOST" > ${drop}/host1`,
          `docker info --format '{{.SecurityOptions}}' > ${drop}/info1`,
          `docker import -c 'CMD ["/bin/sh"]' ${tar} job/busybox:1`,
          `docker run --rm job/busybox:1 echo "hello from ${mark}" > ${drop}/run1`,
          `docker network create net-${mark}`,
          `docker volume create vol-${mark}`,
          `docker run -d --name ctr-${mark} --restart always --network net-${mark} -v vol-${mark}:/data job/busybox:1 sh -c "echo ${mark} > /data/m; exec sleep 600"`,
          'docker tag job/busybox:1 node:20',
          // What this engine runs, as the runner user sees it: every process naming this engine's directory or the marker.
          `ENGINE_DIR=$(dirname "\${DOCKER_HOST#unix://}")`,
          // One perl process reads every cmdline, skipping its own (which names both); a shell loop
          // forks twice per process, seconds of CPU with an engine running.
          `perl -e 'for my $p (glob "/proc/[0-9]*") { next if $p eq "/proc/$$"; open(my $f, "<", "$p/cmdline") or next; local $/; my $c = <$f> // ""; $c =~ tr/\\0/ /; print substr($p, 6), "\\n" if index($c, $ARGV[0]) >= 0 || index($c, "sleep 600") >= 0 }' "$ENGINE_DIR" > ${drop}/pids1`,
          // The host's engine: refused, whatever the job does with the variable.
          `if DOCKER_HOST=unix://${host.socket} docker ps > ${drop}/hostsock 2>&1; then echo REACHED >> ${drop}/hostsock; fi`,
          `if DOCKER_HOST=unix://${host.socket} docker run --rm -v /:/host job/busybox:1 true >> ${drop}/hostsock 2>&1; then echo REACHED >> ${drop}/hostsock; fi`,
          `test "$(docker ps -q | wc -l)" -ge 1`,
        ].join('\n'),
      },
    ],
  });
  w.fake.enqueueJob({
    repository: 'octo/other',
    runId: 902,
    steps: [
      {
        name: 'look for the first job',
        run: [
          'set -e',
          `echo "$DOCKER_HOST" > ${drop}/host2`,
          `{ docker ps -aq; docker volume ls -q; docker network ls --format '{{.Name}}' | grep -vxE 'bridge|host|none' || true; docker images -q; } > ${drop}/seen2`,
          `docker image inspect node:20 > /dev/null 2>&1 && echo "node:20 present" >> ${drop}/seen2 || true`,
          `docker import ${tar} job2/busybox:1 > /dev/null`,
          `docker run --rm job2/busybox:1 sh -c 'ls /; echo done' > ${drop}/run2`,
        ].join('\n'),
      },
    ],
  });
  const { exit, jobs } = await w.runToEnd(AGENT_RUN_LIMIT_MS);
  const read = (f: string): Promise<string> => fsp.readFile(path.join(drop, f), 'utf8').catch(() => '');

  assert.equal(exit.code, 0, `agent exit: ${exit.reason}`);
  assert.equal(jobs.length, 2, 'two jobs on one host');
  for (const j of jobs) {
    assert.equal(j.result, 'Succeeded', `job ${j.job.repository}: ${j.result}`);
    assert.equal(j.cleanup.clean, true, `cleanup: ${JSON.stringify(j.cleanup.verify.problems)}`);
    assert.deepEqual(j.guardFindings ?? [], [], 'the engine guard verified nothing left');
  }
  assert.equal(jobs[0]?.decision, 'reuse', `the first host is reused: ${jobs[0]?.decisionReason}`);

  // The listener got the job's own engine, under the job root, a new one for each job.
  const host1 = (await read('host1')).trim();
  const host2 = (await read('host2')).trim();
  const underJobRoot = new RegExp(`^unix://${jobRoot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[^/]+/engine/docker\\.sock$`);
  assert.match(host1, underJobRoot, 'job 1: DOCKER_HOST is the engine in its job directory');
  assert.match(host2, underJobRoot, 'job 2: DOCKER_HOST is an engine under the job root (the warm one)');
  assert.notEqual(host1, host2);
  t.diagnostic(`job 2's engine: ${host2.includes('/.engine-warm-') ? 'warm (started while job 1 was verified)' : 'cold'}`);
  assert.match(await read('info1'), /rootless/, 'the engine runs rootless');
  assert.equal((await read('run1')).trim(), `hello from ${mark}`, 'a container ran on the job engine');

  // The host's engine was never reached, and holds nothing of the job.
  const hostsock = await read('hostsock');
  assert.doesNotMatch(hostsock, /REACHED/, `the job reached the host engine: ${hostsock}`);
  assert.match(hostsock, /permission denied/i);
  assert.deepEqual(await hostApi.containers(), [], 'no container on the host engine');
  assert.equal((await hostApi.images()).length, hostImagesBefore, 'no image on the host engine');

  // The first job's engine and everything it ran are gone, and so is every process of the runner user.
  const pids1 = (await read('pids1')).split('\n').filter((l) => l !== '');
  assert.ok(pids1.length >= 3, `job 1 saw its engine's processes (rootlesskit, dockerd, containerd, the container): ${pids1.join(' ')}`);
  const engineDir1 = path.dirname(host1.slice('unix://'.length));
  assert.deepEqual(await processesNaming([engineDir1, mark]), [], "no process of job 1's engine or container is left");
  assert.deepEqual(
    (await processesOfUid(w.lab.user.uid)).map((p) => `${p.pid} ${p.comm}`),
    [],
    'no process of the runner user is left',
  );
  const ranges = [...(await readSubids('/etc/subuid', w.lab.user))];
  assert.deepEqual(await processesInRanges(ranges), [], "no process under the runner user's subordinate ids");
  await assert.rejects(fsp.stat(engineDir1), 'the engine directory of job 1 is deleted');
  await assert.rejects(fsp.stat(path.dirname(host2.slice('unix://'.length))), 'the engine directory of job 2 is deleted');

  // Job 2's engine saw nothing of job 1: no container, volume, network, image, and no node:20.
  assert.equal((await read('seen2')).trim(), '', `job 2 saw: ${await read('seen2')}`);
  assert.match(await read('run2'), /done/, 'job 2 ran its own container');
});

test('isolated mode on a host that cannot give it (no subordinate ids) is quarantined at preflight with the fix, never downgraded', async (t) => {
  const w = await createWorld({ config: { recycle: { provider: 'exit', exitCode: 4 } } });
  t.after(() => w.dispose());
  const restoreTun = await openTun();
  t.after(restoreTun);
  // The runner user loses its subordinate ids (the user, and so its lines, go with the lab).
  for (const [file, flag] of [
    ['/etc/subuid', '--del-subuids'],
    ['/etc/subgid', '--del-subgids'],
  ] as const) {
    for (const r of await readSubids(file, w.lab.user))
      execFileSync('usermod', [flag, `${r.start}-${r.start + r.count - 1}`, w.lab.user.name]);
  }
  await fsp.writeFile(path.join(w.policyDir, 'test.yaml'), stringify(testPolicy(w.lab, { docker: { mode: 'isolated' } })));
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'never', run: `touch ${w.dropDir}/ran` }] });
  const { exit, jobs, records } = await w.runToEnd(60_000);
  assert.equal(exit.code, 4, `quarantine recycles through the exit provider: ${exit.reason}`);
  assert.match(exit.reason, /quarantined: verification failed: guard:engine: docker mode isolated: .*no range of 65536 subordinate uids/);
  const findings = records.flatMap((r) => (r.type === 'event' ? (r.guardFindings ?? []) : []));
  assert.ok(
    findings.some((f) => /subordinate uids/.test(f.problem) && /usermod --add-subuids/.test(String(f.detail?.fix))),
    `the journal names the fix: ${JSON.stringify(findings)}`,
  );
  assert.doesNotMatch(exit.reason, /docker mode (host|none)/, 'never downgraded');
  assert.equal(jobs.length, 0, 'no job ran');
  assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), 0, 'nothing was registered on the unfit host');
  await assert.rejects(fsp.stat(path.join(w.dropDir, 'ran')), 'the job never ran, with or without an engine');
});
