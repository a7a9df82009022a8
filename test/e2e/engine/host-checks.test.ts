/**
 * A host that cannot give `isolated` (or `none`) is refused with the fix, before any engine
 * starts: missing binaries, no subordinate ids, an unusable /dev/net/tun, a runner user that can
 * reach a root engine. The preflight warns about what does not make a host unfit: a runner in a
 * container without container hooks, an image cache that is down or full. Each case uses files of
 * the test's own root, never the machine's.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { createLab, type Lab } from '../../helpers/lab.js';
import type { EngineHostPaths } from '../../../src/engine/host-checks.js';
import { EngineGuard } from '../../../src/engine/engine-guard.js';
import { GuardUnfitError } from '../../../src/lib/job-guard.js';
import { mirrorProblems } from '../../../src/engine/mirror-checks.js';
import { createLogger } from '../../../src/lib/log.js';
import { freePort } from '../../../bench/registry-upstream.js';
import { dockerPolicy, fitHostPaths, guardCtx, makeJob } from './fixture.js';

let lab: Lab;
let good: EngineHostPaths;
const servers: net.Server[] = [];

before(async () => {
  lab = await createLab('rw-hostcheck-');
  good = await fitHostPaths(lab);
});

after(async () => {
  for (const s of servers) s.close();
  await lab.dispose();
});

/** A root-owned unix socket in the lab with `mode` and group `gid`. */
async function rootSocket(name: string, mode: number, gid = 0): Promise<string> {
  const p = path.join(lab.root, name);
  const s = net.createServer();
  servers.push(s);
  await new Promise<void>((r) => s.listen(p, r));
  await fsp.chown(p, 0, gid);
  await fsp.chmod(p, mode);
  return p;
}

/** prepare's refusal for these host files, or undefined when it did not refuse. */
async function refusal(paths: EngineHostPaths, mode: 'isolated' | 'none' = 'isolated'): Promise<GuardUnfitError | undefined> {
  const guard = new EngineGuard({ paths, net: { sysClassNet: '/sys/class/net', netnsDir: '/run/netns' } });
  const job = await makeJob(lab);
  try {
    // Policies point the host socket at the lab so the machine's own socket plays no part.
    const policy = dockerPolicy({ mode });
    policy.cleanup.containers.socket = path.join(lab.root, 'no-such.sock');
    const prepared = await guard.prepare(job, policy, guardCtx());
    if (mode === 'isolated') await guard.release(job, policy, guardCtx());
    void prepared;
    return undefined;
  } catch (err) {
    if (err instanceof GuardUnfitError) return err;
    throw err;
  } finally {
    await guard.drain();
  }
}

test('the refusals name what is missing and how to fix it', async () => {
  const cases: Array<{ name: string; paths: () => Promise<EngineHostPaths>; what: RegExp; fix: RegExp }> = [
    {
      name: 'no engine installed',
      paths: async () => ({ ...good, binDirs: [path.join(lab.root, 'empty-bin')] }),
      what: /dockerd is not installed/,
      fix: /apt-get install docker\.io/,
    },
    {
      name: 'no subordinate ids',
      paths: async () => {
        const f = path.join(lab.root, 'etc', 'subuid-empty');
        await fsp.writeFile(f, 'someoneelse:100000:65536\n');
        return { ...good, subuid: f };
      },
      what: /no range of 65536 subordinate uids/,
      fix: /usermod --add-subuids/,
    },
    {
      name: 'tun mode 0600',
      paths: async () => {
        const t = path.join(lab.root, 'tun600');
        execFileSync('mknod', ['-m', '600', t, 'c', '10', '200']);
        return { ...good, tun: t };
      },
      what: /tun600 is mode 600/,
      fix: /chmod 666 .*tun600/,
    },
    {
      name: 'runner user in the docker group',
      paths: async () => {
        const f = path.join(lab.root, 'etc', 'group-docker');
        await fsp.writeFile(f, `${lab.user.name}:x:${lab.user.gid}:\ndocker:x:4242:${lab.user.name}\n`);
        return { ...good, group: f };
      },
      what: /is in the docker group/,
      fix: /gpasswd -d .* docker/,
    },
    {
      name: 'a world-writable root engine socket',
      paths: async () => ({ ...good, hostSockets: [await rootSocket('open.sock', 0o666)] }),
      what: /can reach the root engine socket .*open\.sock \(it finds it world-writable\)/,
      fix: /chmod 660/,
    },
    {
      name: "a root engine socket of the runner user's group",
      paths: async () => ({ ...good, hostSockets: [await rootSocket('group.sock', 0o660, lab.user.gid)] }),
      what: /group\.sock \(it is in its group/,
      fix: /keep .* out of its group/,
    },
  ];
  for (const c of cases) {
    const err = await refusal(await c.paths());
    assert.ok(err, `${c.name}: prepare did not refuse`);
    assert.match(err.message, c.what, `${c.name}: ${err.message}`);
    assert.match(err.fix ?? '', c.fix, `${c.name}: ${err.fix}`);
  }
});

test('mode none refuses a host where the runner user reaches a root engine, and passes one where it cannot', async () => {
  const reach = await refusal({ ...good, hostSockets: [await rootSocket('none.sock', 0o666)] }, 'none');
  assert.match(reach?.message ?? '', /docker mode none: .*none\.sock/);
  assert.equal(await refusal({ ...good, hostSockets: [await rootSocket('closed.sock', 0o660)] }, 'none'), undefined);
});

test('preflight (verify without a job) reports the same problems as findings', async () => {
  const guard = new EngineGuard({ paths: { ...good, binDirs: [path.join(lab.root, 'empty-bin')] }, runnerUser: lab.user });
  const findings = await guard.verify(undefined, dockerPolicy({ mode: 'isolated' }), guardCtx());
  assert.ok(
    findings.some((f) => /dockerd is not installed/.test(f.problem) && /apt-get/.test(String(f.detail?.fix))),
    JSON.stringify(findings),
  );
});

test('auto gives isolated only where a rootless engine can run, none otherwise, and never host', async () => {
  const tun600 = path.join(lab.root, 'tun-auto');
  execFileSync('mknod', ['-m', '600', tun600, 'c', '10', '200']);
  const policy = dockerPolicy({ mode: 'auto' });
  policy.cleanup.containers.socket = path.join(lab.root, 'no-such.sock');
  const cases: Array<[string, EngineHostPaths, string]> = [
    ['a fit host', good, 'isolated'],
    ['no dockerd', { ...good, binDirs: [path.join(lab.root, 'empty-bin')] }, 'none'],
    ['tun 0600', { ...good, tun: tun600 }, 'none'],
  ];
  for (const [name, paths, want] of cases) {
    assert.equal(await new EngineGuard({ paths }).mode(policy, lab.user), want, name);
  }
  const job = await makeJob(lab);
  const prepared = await new EngineGuard({ paths: { ...good, tun: tun600 } }).prepare(job, policy, guardCtx());
  assert.equal(prepared.env?.DOCKER_HOST, undefined, 'auto on an unfit host must not hand out an engine');
  assert.match(prepared.notes?.join() ?? '', /docker mode none/);
});

/** A guard context whose logger keeps every line. */
function capturingCtx(): { ctx: ReturnType<typeof guardCtx>; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const log = createLogger({ level: 'warn', destination: { write: (l: string) => void out.push(l) } });
  return { ctx: { ...guardCtx(), log }, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('preflight warns when the runner would refuse container jobs: in a container, no hooks configured', async () => {
  const cg = path.join(lab.root, 'proc1-cgroup');
  await fsp.writeFile(cg, '12:memory:/docker/0123abcd\n11:cpu:/docker/0123abcd\n');
  const runnerRoot = path.join(lab.root, 'runner-env');
  await fsp.mkdir(runnerRoot, { recursive: true });
  const policy = dockerPolicy({ mode: 'isolated' });
  policy.cleanup.containers.socket = path.join(lab.root, 'no-such.sock');
  const warned = async (o: { hooks?: string; envFile?: string; cgroup?: string }): Promise<string | undefined> => {
    const { ctx, lines } = capturingCtx();
    const g = new EngineGuard({
      paths: { ...good, procOneCgroup: o.cgroup ?? cg },
      runnerUser: lab.user,
      runnerRoot,
      ...(o.hooks ? { containerHooks: o.hooks } : {}),
    });
    await fsp.rm(path.join(runnerRoot, '.env'), { force: true });
    if (o.envFile !== undefined) await fsp.writeFile(path.join(runnerRoot, '.env'), o.envFile);
    await g.verify(undefined, policy, ctx);
    const l = lines().find((x) => x.msg === 'container jobs will be refused');
    return l ? `${String(l.problem)} | ${String(l.fix)}` : undefined;
  };
  assert.match(
    (await warned({})) ?? '',
    /runs in a container .* will refuse container: and services: jobs \| point ACTIONS_RUNNER_CONTAINER_HOOKS at/,
  );
  assert.equal(await warned({ hooks: '/opt/hooks.sh' }), undefined, 'hooks given to the guard');
  assert.equal(
    await warned({ envFile: 'LANG=C\nACTIONS_RUNNER_CONTAINER_HOOKS=/opt/hooks.sh\n' }),
    undefined,
    "hooks in the runner's .env",
  );
  const v2 = path.join(lab.root, 'proc1-cgroup-v2');
  await fsp.writeFile(v2, '0::/\n');
  assert.equal(await warned({ cgroup: v2 }), undefined, 'not in a container the runner recognises');
});

test('the image cache down or full: named, with the fix', async () => {
  const closed = `http://127.0.0.1:${await freePort()}`;
  const down = await mirrorProblems(closed, undefined);
  assert.equal(down.length, 1);
  assert.match(down[0]?.what ?? '', new RegExp(`image cache \\(docker.mirror ${closed}\\) does not answer: .*ECONNREFUSED`));
  assert.match(down[0]?.fix ?? '', /systemctl start runner-warden-mirror/);
  // A full disk: a 1 MiB tmpfs of the test's own, filled, then unmounted.
  const fs = path.join(lab.root, 'mirror-fs');
  await fsp.mkdir(fs);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=64', 'rw-test-mirror', fs]);
  try {
    const srv = http.createServer((_q, r) => r.end('{}'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const up = `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
    try {
      assert.deepEqual(await mirrorProblems(up, fs), [], 'an answering cache with room');
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${path.join(fs, 'blob')}`, 'bs=64k'], { stdio: 'ignore' });
      } catch {
        // ENOSPC is the point
      }
      const full = await mirrorProblems(up, fs);
      assert.equal(full.length, 1, JSON.stringify(full));
      assert.match(full[0]?.what ?? '', new RegExp(`disk is full: 0\\.0% space .* at ${fs}`));
      assert.match(full[0]?.fix ?? '', /runner-warden-mirror-gc\.service/);
    } finally {
      srv.close();
    }
  } finally {
    execFileSync('umount', [fs]);
  }
});

test("a job root too deep for containerd's socket is named at preflight with the fix, and a job's start fails at once naming it", async () => {
  // 104 bytes is containerd's limit for <exec root>/containerd/containerd.sock.ttrpc; past it dockerd waited 15 s and failed.
  const deep = path.join(lab.root, 'd'.repeat(Math.max(1, 80 - lab.root.length)));
  await fsp.mkdir(deep, { mode: 0o711 });
  const policy = dockerPolicy({ mode: 'isolated' });
  policy.cleanup.containers.socket = path.join(lab.root, 'no-such.sock');
  const guard = new EngineGuard({ paths: good, runnerUser: lab.user, jobRoot: deep });
  const findings = await guard.verify(undefined, policy, guardCtx());
  assert.ok(
    findings.some(
      (f) => /too deep: containerd's socket .* bytes over the 104/.test(f.problem) && /runner\.jobRoot/.test(String(f.detail?.fix)),
    ),
    JSON.stringify(findings),
  );
  const shallow = new EngineGuard({ paths: good, runnerUser: lab.user, jobRoot: path.join(lab.root, 'jobs') });
  const ok = await shallow.verify(undefined, policy, guardCtx());
  assert.ok(!ok.some((f) => /too deep/.test(f.problem)), JSON.stringify(ok));
  // A cold start in a job directory that deep: refused in milliseconds, not after containerd's 15 s.
  const job = await makeJob(lab);
  job.dir = path.join(deep, 'job-with-a-long-runner-name-0123456789');
  await fsp.mkdir(job.dir, { mode: 0o711 });
  const started = Date.now();
  await assert.rejects(guard.prepare(job, policy, guardCtx()), (err: unknown) => {
    assert.ok(err instanceof GuardUnfitError, String(err));
    assert.match(err.message, /too deep: containerd's socket/);
    return true;
  });
  assert.ok(Date.now() - started < 10_000, 'refused before any engine waited for containerd');
  await guard.drain();
});
