/**
 * eBPF persistence through sudo, end to end: the real agent, the simulated runner, `runner.sudo:
 * allow`, the bpf surface on (bpftool). A job that loads a program and lets it go leaves nothing
 * (the kernel frees it) and the host is reused; a job that attaches one to a cgroup this test made
 * and pins another in a bpffs this test mounted in its own root is named in the drift report
 * (type, name, tag, where), the host is quarantined and the next job never runs there. The loader
 * is bpf-load.py (Debian's python3, the raw bpf(2) call). The cgroup is removed and the bpffs
 * unmounted whatever happens, which frees both programs; the test waits until they are gone.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { jobRecords, testPolicy } from '../../helpers/world.js';
import { sudoTreeWorld, wireOnTree } from './sudo-tree-world.js';

const LOADER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bpf-load.py');
const PYTHON = '/usr/bin/python3';
/** Three short jobs and two cleanups (one with the bpf read's settle): 10-20 s here; room for a loaded machine. */
const AGENT_RUN_LIMIT_MS = 150_000;
/** Freeing a removed cgroup's programs is a kernel worker's job: well under a second, given far more. */
const FREED_LIMIT_MS = 20_000;

/** The cgroup v2 mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid host). */
function cgroup2(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (post?.startsWith('cgroup2 ')) return pre?.split(' ')[4];
  }
  return undefined;
}

function unsupported(): string | undefined {
  if (!existsSync('/usr/sbin/bpftool')) return 'bpftool is not installed (scripts/install-test-deps.sh)';
  if (!existsSync(PYTHON)) return 'Debian python3 is not installed (scripts/install-test-deps.sh)';
  if (!existsSync('/usr/bin/sudo')) return 'sudo is not installed (scripts/install-test-deps.sh)';
  if (!cgroup2()) return 'no cgroup v2 hierarchy is mounted: a program cannot be attached to a cgroup';
  try {
    execFileSync(PYTHON, [LOADER, 'drop', 'rwprobe'], { stdio: 'pipe' });
  } catch (err) {
    return `the kernel refuses bpf(2) to root here: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
  return undefined;
}

/** Names of the loaded programs (bpftool), to see the test's own freed. */
function programNames(): string[] {
  const progs = JSON.parse(execFileSync('/usr/sbin/bpftool', ['--json', 'prog', 'show'], { encoding: 'utf8' })) as { name?: string }[];
  return progs.map((p) => p.name ?? '');
}

test(
  'a program loaded and let go leaves no drift; one attached to a cgroup and one pinned are named, the host quarantined',
  { skip: unsupported(), timeout: 240_000 },
  async (t) => {
    const { w, T } = await sudoTreeWorld(t);
    const cgroup = path.join(cgroup2() as string, `rw-bpf-${process.pid}`);
    const bpffs = path.join(w.lab.root, 'bpffs');
    await mkdir(cgroup);
    await mkdir(bpffs);
    execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
    try {
      await writeFile(
        path.join(w.policyDir, 'test.yaml'),
        stringify({
          ...testPolicy(w.lab, { host: { integrity: { enabled: true, surfaces: ['accounts', 'bpf'] } } }),
          runner: { sudo: 'allow' },
        }),
      );
      const load = (args: string): string => `sudo -n ${PYTHON} ${LOADER} ${args}`;
      w.fake.enqueueJob({
        repository: 'octo/app',
        runId: 1,
        job: 'let-go',
        steps: [{ name: 'load and exit', run: load('drop rwdropped') }],
      });
      w.fake.enqueueJob({
        repository: 'octo/app',
        runId: 2,
        job: 'persist',
        steps: [{ name: 'attach and pin', run: load(`attach ${cgroup} rwattached pin ${bpffs}/rwpinned rwpinned`) }],
      });
      w.fake.enqueueJob({ repository: 'octo/app', runId: 3, job: 'next', steps: [{ name: 'look', run: 'true' }] });

      const rt = await wireOnTree(w, T);
      const stop = new AbortController();
      const watch = setInterval(() => {
        if (rt.agent.snapshot().quarantined) stop.abort();
        // Both jobs decided (a host the check passed serves the third job: stop before it).
        void w.journal().then((r) => jobRecords(r).length >= 2 && stop.abort());
      }, 100);
      try {
        await rt.agent.run(AbortSignal.any([AbortSignal.timeout(AGENT_RUN_LIMIT_MS), stop.signal]));
      } finally {
        clearInterval(watch);
        await rt.close();
      }

      const jobs = jobRecords(await w.journal());
      assert.equal(jobs.length, 2, `expected two jobs, got ${jobs.map((j) => j.job.job ?? j.result).join(', ')}`);
      const [letGo, persist] = jobs;
      assert.ok(letGo && persist);
      // The loader exits non-zero when the kernel refuses: success means the program was loaded.
      assert.equal(letGo.result, 'Succeeded', 'the first job could not load its program');
      assert.deepEqual(letGo.guardFindings ?? [], [], 'a program the job let go of is drift');
      assert.equal(letGo.decision, 'reuse', letGo.decisionReason);

      assert.equal(persist.result, 'Succeeded', 'the second job could not attach or pin');
      const lines = (persist.guardFindings ?? []).filter((f) => f.guard === 'integrity').map((f) => f.problem);
      const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      for (const e of [
        new RegExp(
          `^bpf: bpf:prog#\\d+ cgroup_skb rwattached tag [0-9a-f]{16} attached cgroup ${esc(cgroup)} \\(cgroup_inet_egress\\) added \\(the job through sudo`,
        ),
        new RegExp(`^bpf: bpf:prog#\\d+ cgroup_skb rwpinned tag [0-9a-f]{16} pinned ${esc(bpffs)}/rwpinned added \\(the job through sudo`),
      ])
        assert.ok(
          lines.some((l) => e.test(l)),
          `no line matches ${e}:\n${lines.join('\n')}`,
        );
      assert.ok(!lines.some((l) => l.includes('rwdropped')), `the let-go program of the first job is reported:\n${lines.join('\n')}`);
      assert.equal(persist.decision, 'quarantine', persist.decisionReason);
      const next = w.fake.jobs().find((j) => j.job.displayName === 'next');
      assert.equal(next?.runnerName, null, 'the job after the plant ran on the quarantined host');
    } finally {
      // Before the world's own teardown (it removes the root, where the bpffs is mounted).
      // Unpinning (the mount gone) and removing the cgroup drop the last references: both programs are freed.
      execFileSync('umount', [bpffs]);
      await rmdir(cgroup);
      const limit = Date.now() + FREED_LIMIT_MS;
      while (programNames().some((n) => n === 'rwattached' || n === 'rwpinned') && Date.now() < limit)
        await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(
        programNames().filter((n) => n === 'rwattached' || n === 'rwpinned'),
        [],
        'a test program is left loaded',
      );
    }
  },
);
