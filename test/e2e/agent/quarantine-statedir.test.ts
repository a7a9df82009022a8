/**
 * A quarantine outlives its state directory: an operator who deletes the state dir to "reset" the
 * agent, or points the config at another one, gets a host that boots quarantined (no cleanup, no
 * registration) and records nothing of the judged installation as its baseline. The fact's copy in
 * the runner root says so; only `runner-warden unquarantine` removes it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { createWorld, runUntilState, type World } from '../../helpers/world.js';
import { agentLockDir, cliCommand } from '../../helpers/agent-process.js';

/** A boot reaches quarantined (or, the bug, idle) in seconds; this bounds a hang. */
const BOOT_LIMIT_MS = 60_000;

const MARKER = '.runner-warden.quarantined';

/** Boots the agent on the world's current config and stops it once it is quarantined or serving. */
async function bootState(w: World): Promise<string> {
  return runUntilState(await w.runtime(), ['quarantined', 'idle'], BOOT_LIMIT_MS);
}

async function setStateDir(w: World, stateDir: string): Promise<void> {
  const cfg = parse(await readFile(w.configFile, 'utf8')) as Record<string, unknown>;
  await writeFile(w.configFile, stringify({ ...cfg, stateDir }), { mode: 0o600 });
}

test('a quarantined host stays quarantined when its state dir is deleted or the config names another one, and records no baseline from it', async (t) => {
  const w = await createWorld({ runner: { maxJobs: 2 } });
  t.after(() => w.dispose());
  // Attack 11: a changed file in the runner installation quarantines the host.
  // (run.sh is root's, its directory the runner user's: the job replaces it.)
  const plant = `cd '${w.runnerRoot}' && cp run.sh .n && echo 'echo planted' >> .n && mv -f .n run.sh`;
  w.fake.enqueueJob({ repository: 'octo/app', steps: [{ name: 'plant', run: plant }] });
  const first = await w.drainWhen('quarantined');
  assert.equal(first.jobs[0]?.decision, 'quarantine', first.jobs[0]?.decisionReason);
  const marker = path.join(w.runnerRoot, MARKER);
  const st = await lstat(marker);
  assert.ok(st.isFile() && st.uid === 0, 'the fact has a root-owned copy in the runner root');
  const registrations = w.fake.restCalls({ path: /generate-jitconfig/ });

  const variants: { name: string; prepare: () => Promise<string> }[] = [
    {
      name: 'the config names another state dir',
      prepare: async () => {
        const other = path.join(w.lab.root, 'state-other');
        await setStateDir(w, other);
        return other;
      },
    },
    {
      name: 'the state dir was deleted',
      prepare: async () => {
        await setStateDir(w, w.stateDir);
        await rm(w.stateDir, { recursive: true, force: true });
        return w.stateDir;
      },
    },
  ];
  for (const v of variants) {
    const dir = await v.prepare();
    assert.equal(await bootState(w), 'quarantined', `${v.name}: the host served again without unquarantine`);
    assert.equal(w.fake.restCalls({ path: /generate-jitconfig/ }), registrations, `${v.name}: a runner was registered`);
    assert.equal(
      existsSync(path.join(dir, 'runner-install.json')),
      false,
      `${v.name}: the judged installation was recorded as the baseline`,
    );
  }

  // The one way out: the operator's release, which removes the copy too.
  const r = spawnSync(process.execPath, [...cliCommand(), 'unquarantine', '--config', w.configFile, '--reason', 'reimaged the runner'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', RUNNER_WARDEN_LOG_LEVEL: 'warn', RUNNER_WARDEN_LOCK_DIR: agentLockDir(w.configFile) },
    timeout: 60_000,
  });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.equal(existsSync(marker), false, 'unquarantine left the copy in the runner root');
});
