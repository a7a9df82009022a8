import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile, symlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { createLab, runAs } from '../helpers/lab.js';
import { hookPaths, installHooks, readEventFile, watchHookEvents, type HookEvent } from '../../src/runner/hooks.js';
import { silentLogger } from '../../src/lib/log.js';

test('a job-started hook run as the runner user reports the job metadata through the drop directory', async (t) => {
  const lab = await createLab();
  t.after(() => lab.dispose());
  const paths = hookPaths(path.join(lab.root, 'public'));
  await installHooks(paths);
  const events: HookEvent[] = [];
  const ac = new AbortController();
  const watching = watchHookEvents(paths.eventsDir, (e) => events.push(e), { log: silentLogger(), now: Date.now, signal: ac.signal });
  // The runner runs hooks as `bash -e <path>` (contract §3).
  runAs(lab.user, `bash -e ${paths.startedScript}`, {
    GITHUB_REPOSITORY: 'octo/app',
    GITHUB_RUN_ID: '42',
    GITHUB_WORKFLOW: 'CI\nwith a newline',
    GITHUB_TOKEN: 'ghs_should_not_travel',
  });
  for (let i = 0; i < 100 && events.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  ac.abort();
  await watching;
  assert.equal(events.length, 1, 'the watcher did not deliver the hook event');
  assert.equal(events[0]?.event, 'started');
  assert.equal(events[0]?.vars.GITHUB_REPOSITORY, 'octo/app');
  assert.equal(events[0]?.vars.GITHUB_WORKFLOW, 'CI with a newline', 'newlines must not split a value into fake keys');
  assert.equal(JSON.stringify(events[0]).includes('ghs_'), false, 'a token variable travelled through the hook channel');
  assert.deepEqual(await readdir(paths.eventsDir), [], 'the agent must delete an event after reading it');
});

test('the runner user can drop events but cannot list or read the drop directory', async (t) => {
  const lab = await createLab();
  t.after(() => lab.dispose());
  const paths = hookPaths(path.join(lab.root, 'public'));
  await installHooks(paths);
  assert.equal((await stat(paths.eventsDir)).mode & 0o777, 0o733);
  assert.throws(() => runAs(lab.user, `ls ${paths.eventsDir}`), 'the job could list other hook reports');
  assert.equal((await stat(paths.startedScript)).uid, 0, 'hook scripts must be root-owned so the job cannot rewrite them');
  assert.throws(() => runAs(lab.user, `echo x >> ${paths.startedScript}`), 'the job could rewrite the hook');
});

test('an event file that is a symlink, too large or malformed is dropped unread', async (t) => {
  const lab = await createLab();
  t.after(() => lab.dispose());
  const secret = path.join(lab.root, 'secret');
  await writeFile(secret, 'event=started\nGITHUB_REPOSITORY=stolen\n');
  const link = path.join(lab.root, 'a.evt');
  await symlink(secret, link);
  assert.equal(await readEventFile(link, 0), undefined, 'a symlinked event was followed');
  const big = path.join(lab.root, 'b.evt');
  await writeFile(big, `event=started\n${'x'.repeat(100_000)}`);
  assert.equal(await readEventFile(big, 0), undefined);
  const junk = path.join(lab.root, 'c.evt');
  await writeFile(junk, 'no event line\nGITHUB_REPOSITORY=x\n');
  assert.equal(await readEventFile(junk, 0), undefined);
  assert.equal((await stat(secret)).isFile(), true, 'the symlink target must survive');
});
