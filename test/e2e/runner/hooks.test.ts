import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, readdir, stat, mkdir, mkdtemp, writeFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { createLab, runAs, type Lab } from '../../helpers/lab.js';
import type { UserInfo } from '../../../src/lib/users.js';
import {
  hookPaths,
  installHooks,
  parseReport,
  readEventDir,
  watchHookEvents,
  type HookEvent,
  type HookPaths,
} from '../../../src/runner/hooks.js';
import { silentLogger } from '../../../src/lib/log.js';

// The runner user and another local user, shared by the tests (each test has its own state dir).
let lab: Lab;
let other: Lab;
before(async () => {
  lab = await createLab();
  other = await createLab('rw-other-');
});
after(async () => {
  await lab?.dispose();
  await other?.dispose();
});

const execFileAsync = promisify(execFile);

/**
 * runAs without blocking this process: the report socket is served by this process, and a hook
 * waits for its acknowledgement (REPORT_DEADLINE_MS when nobody answers), so a hook whose
 * delivery is checked runs beside the server.
 */
async function runAsAsync(user: UserInfo, script: string, env: Record<string, string> = {}): Promise<void> {
  await execFileAsync('bash', ['-c', script], {
    uid: user.uid,
    gid: user.gid,
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: user.home, USER: user.name, ...env },
    cwd: user.home,
  });
}

/** A fresh state dir in the lab, laid out like the agent's (0711 state dir, 0755 public dir inside). */
async function setup(
  t: TestContext,
  o: { maxPerWindow?: number; windowMs?: number } = {},
): Promise<{ lab: Lab; other: Lab; paths: HookPaths; events: HookEvent[] }> {
  const state = await mkdtemp(path.join(lab.root, 'state-'));
  await chmod(state, 0o711);
  const paths = hookPaths(path.join(state, 'public'), lab.user);
  await installHooks(paths);
  const events: HookEvent[] = [];
  const ac = new AbortController();
  // The agent today passes the old drop directory's path; the socket is found beside it.
  const watching = watchHookEvents(paths.eventsDir, (e) => events.push(e), { log: silentLogger(), now: Date.now, signal: ac.signal, ...o });
  t.after(async () => {
    ac.abort();
    await watching;
  });
  for (let i = 0; i < 200; i++) {
    if (
      await stat(paths.socket).then(
        (s) => (s.mode & 0o777) === 0o660,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return { lab, other, paths, events };
}

async function settle(events: HookEvent[], n: number): Promise<void> {
  for (let i = 0; i < 150 && events.length < n; i++) await new Promise((r) => setTimeout(r, 20));
}

test('a job-started hook run as the runner user reports the job metadata, and no token travels', async (t) => {
  const { lab, paths, events } = await setup(t);
  // The runner runs hooks as `bash -e <path>` (docs/runner-contract.md §5).
  await runAsAsync(lab.user, `bash -e ${paths.startedScript}`, {
    GITHUB_REPOSITORY: 'octo/app',
    GITHUB_RUN_ID: '42',
    GITHUB_WORKFLOW: 'CI\nwith a newline',
    GITHUB_TOKEN: 'ghs_should_not_travel',
    NODE_OPTIONS: '--require /nonexistent/evil.js',
  });
  // The client waits for the agent's acknowledgement: the report is in before the hook returns.
  await settle(events, 1);
  assert.equal(events.length, 1, 'the hook report did not arrive');
  assert.equal(events[0]?.event, 'started');
  assert.equal(events[0]?.vars.GITHUB_REPOSITORY, 'octo/app');
  assert.equal(events[0]?.vars.GITHUB_WORKFLOW, 'CI with a newline', 'newlines must not split a value into fake keys');
  assert.equal(JSON.stringify(events[0]).includes('ghs_'), false, 'a token variable travelled through the hook channel');
});

test('another local user can neither send a report nor reach the channel, by the hook or by hand', async (t) => {
  const { other, paths, events } = await setup(t);
  // The hook script itself, run by someone else: its report must not arrive.
  runAs(other.user, `bash -e ${paths.startedScript}`, { GITHUB_REPOSITORY: 'evil/spoofed', GITHUB_ACTOR: 'mallory' });
  for (const attempt of [
    `echo 'event=started' > ${paths.eventsDir}/job-started.1.evt`,
    `ls ${paths.reportDir}`,
    `python3 -c "import socket; s=socket.socket(socket.AF_UNIX); s.connect('${paths.socket}'); s.sendall(b'event=started\\nGITHUB_REPOSITORY=evil/spoofed\\n')"`,
    `node -e "require('net').connect('${paths.socket}').on('error',()=>process.exit(3)).end('event=started\\n')"`,
  ]) {
    assert.throws(() => runAs(other.user, `${attempt} 2>/dev/null`), `another user succeeded: ${attempt}`);
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(events, [], 'a report from another local user was delivered');
  assert.equal((await stat(paths.reportDir)).mode & 0o777, 0o710);
  assert.equal((await stat(paths.eventsDir)).mode & 0o777, 0o700, 'the old drop directory must be root-only');
  assert.equal((await stat(paths.startedScript)).uid, 0, 'hook scripts must be root-owned so the job cannot rewrite them');
});

test('a flooding runner user is capped in count and size, writes nothing to disk, and the channel keeps working', async (t) => {
  const { lab, paths, events } = await setup(t, { maxPerWindow: 5, windowMs: 500 });
  // 60 well-formed reports, 40 oversized ones (1 MiB each) and 40 silent connections, at once.
  // runAs blocks this process (the server) until the flooder is done: the server then finds the
  // whole burst in its backlog. The flooder gives up on each connection after 2 s (no answer can
  // come while the server is blocked; the silent ones are held until then).
  runAs(
    lab.user,
    `node -e "
      const net = require('net'); let open = 0;
      const go = (body, hold) => { open++; const s = net.connect('${paths.socket}');
        s.on('error', () => {}); s.on('close', () => { if (--open === 0) process.exit(0); });
        s.setTimeout(2000, () => s.destroy());
        if (!hold) s.on('connect', () => s.end(body)); };
      for (let i = 0; i < 60; i++) go('event=started\\nGITHUB_REPOSITORY=flood/' + i + '\\n');
      for (let i = 0; i < 40; i++) go('event=started\\n' + 'x'.repeat(1 << 20));
      for (let i = 0; i < 40; i++) go('', true);
    "`,
  );
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(events.length <= 5, `${events.length} reports delivered with a cap of 5`);
  assert.ok(
    events.every((e) => e.vars.GITHUB_REPOSITORY?.startsWith('flood/')),
    'an oversized report was delivered',
  );
  // Reports never touch a filesystem: nothing was written anywhere under the agent's public dir.
  assert.deepEqual(await readdir(paths.reportDir), ['hook.sock'], 'a report left a file behind');
  assert.deepEqual(await readdir(paths.eventsDir), []);
  // Once the window has passed, the job's real hook is heard again.
  await new Promise((r) => setTimeout(r, 600));
  const n = events.length;
  await runAsAsync(lab.user, `bash -e ${paths.completedScript}`, { GITHUB_REPOSITORY: 'octo/after-flood' });
  await settle(events, n + 1);
  // On a loaded machine the server may still be reading the burst from its backlog, and a late
  // flood report may be taken in the new window too: the hook's own report must be among them.
  assert.ok(
    events.slice(n).some((e) => e.vars.GITHUB_REPOSITORY === 'octo/after-flood'),
    `the channel stopped working after the flood: ${JSON.stringify(events.slice(n).map((e) => e.vars.GITHUB_REPOSITORY))}`,
  );
});

test('reports are parsed defensively and the old drop directory is emptied unread', async () => {
  assert.equal(parseReport('no event line\nGITHUB_REPOSITORY=x\n', 0), undefined);
  assert.equal(parseReport('event=exploded\n', 0), undefined);
  const e = parseReport(`event=completed\nGITHUB_SHA=${'a'.repeat(5000)}\nLD_PRELOAD=/x\nGITHUB_REF=a\u0007b\n`, 7);
  assert.equal(e?.vars.GITHUB_SHA?.length, 512);
  assert.equal(e?.vars.LD_PRELOAD, undefined);
  assert.equal(e?.vars.GITHUB_REF, 'a b', 'control characters must not reach logs or the journal');
  const root = await mkdtemp(path.join(lab.root, 'drop-'));
  const dir = path.join(root, 'events');
  await mkdir(dir);
  await writeFile(path.join(root, 'secret'), 'event=started\n');
  await symlink(path.join(root, 'secret'), path.join(dir, 'a.evt'));
  await writeFile(path.join(dir, 'job-started.1.evt'), 'event=started\nGITHUB_REPOSITORY=evil/spoofed\n');
  assert.deepEqual(await readEventDir(dir, 0), [], 'a dropped file was read');
  assert.deepEqual(await readdir(dir), []);
  assert.equal((await stat(path.join(root, 'secret'))).isFile(), true, 'the symlink target must survive');
});

test('a runner user whose primary group another account shares is refused', async () => {
  const paths = hookPaths(path.join(await mkdtemp(path.join(lab.root, 'shared-')), 'public'), { name: lab.user.name, gid: other.user.gid });
  await assert.rejects(installHooks(paths), /primary group/);
});
