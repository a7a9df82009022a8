/**
 * The simulated self-update (actions/runner `Runner.Listener/SelfUpdaterV2.cs`,
 * `Misc/layoutbin/update.sh.template`). Instead of downloading a package, the "new version" is a
 * copy of the current `bin/` and `externals/` with the version marker changed, staged as
 * `bin.<new>` / `externals.<new>`, and the package's root files (run.sh, config.sh, ...) deleted and
 * written again in the runner root (`CopyLatestRunnerToRoot`), all as the runner user and before the
 * job ends. Then, as the real updater, it waits for the running job to end
 * (a refresh can arrive during a job), deletes `update.finished`, and starts `_work/_update.sh`
 * detached. That script polls until the listener's pid is gone (every 2 s, as update.sh's
 * `safe_sleep.sh 2`), sleeps 1 s more, swaps `bin` → `bin.<new>` and `externals` → `externals.<new>`
 * (symlinks; real directories are first moved to `bin.<old>`), then touches `update.finished` in the
 * listener's cwd. So after exit 3/4 the installation keeps changing for a few seconds. Its log is
 * `_diag/SelfUpdate-<stamp>.log`, renamed `.succeed` (or `.failed`).
 */
import { spawn } from 'node:child_process';
import { cp, mkdir, rm, writeFile, readlink } from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import path from 'node:path';
import type { Terminal, Trace } from './diag.js';
import { fileStamp } from './diag.js';
import { VERSION_FILE } from './version.js';
import { CONFIG_SH, ENV_SH, RUN_HELPER_TEMPLATE, RUN_SH, SAFE_SLEEP_SH } from './scripts.js';

/**
 * The files at the root of a runner package (actions/runner `src/Misc/layoutroot`, the Linux
 * ones), which the updater copies over the installation's: the new version's are this simulator's.
 */
const PACKAGE_ROOT_FILES: readonly [string, string][] = [
  ['config.sh', CONFIG_SH],
  ['env.sh', ENV_SH],
  ['run-helper.sh.template', RUN_HELPER_TEMPLATE],
  ['run.sh', RUN_SH],
  ['safe_sleep.sh', SAFE_SLEEP_SH],
];

/** Inputs of one update. */
export interface UpdateRequest {
  root: string;
  workDir: string;
  currentVersion: string;
  targetVersion: string;
  term: Terminal;
  trace: Trace;
  listenerPid: number;
  /** Resolves when the running job (if any) has ended (JobDispatcher.WaitAsync). */
  waitForJob: () => Promise<void>;
  /** update.sh's pid poll interval (real: 2 s) and its settle sleep after the exit (real: 1 s). */
  pollSeconds: number;
  settleSeconds: number;
  now?: () => number;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The text of `_work/_update.sh` (bash). */
export function updateScript(r: {
  root: string;
  listenerPid: number;
  currentVersion: string;
  targetVersion: string;
  logFile: string;
  pollSeconds: number;
  settleSeconds: number;
}): string {
  return `#!/bin/bash
# Written by the simulated runner before it exits for a self-update; mirrors update.sh.template.
runnerpid=${r.listenerPid}
existrunnerversion=${q(r.currentVersion)}
downloadrunnerversion=${q(r.targetVersion)}
rootfolder=${q(r.root)}
logfile=${q(r.logFile)}

log() { echo "[$(date -u '+%Y-%m-%d %H:%M:%SZ')] $*" >> "$logfile"; }
fail() { log "$*"; mv -f "$logfile" "$logfile.failed"; exit 1; }

log "Waiting for runner process $runnerpid to exit"
while [ -e "/proc/$runnerpid" ] && ! grep -q '^State:.*Z' "/proc/$runnerpid/status" 2>/dev/null; do
  log "Process $runnerpid still running"
  sleep ${r.pollSeconds}
done
log "Process $runnerpid finished running"
log "Sleep ${r.settleSeconds} more second to make sure process exited"
sleep ${r.settleSeconds}

if [ "$(readlink "$rootfolder/bin")" != "$rootfolder/bin.$downloadrunnerversion" ]; then
  for d in bin externals; do
    if [ -L "$rootfolder/$d" ]; then
      rm -f "$rootfolder/$d" || fail "Can't delete the $d symlink"
    else
      rm -rf "$rootfolder/$d.$existrunnerversion"
      mv -f "$rootfolder/$d" "$rootfolder/$d.$existrunnerversion" || fail "Can't move $d to $d.$existrunnerversion"
    fi
    ln -s "$rootfolder/$d.$downloadrunnerversion" "$rootfolder/$d" || fail "Can't link $d to $d.$downloadrunnerversion"
  done
fi
log "Update succeed"
touch update.finished
mv -f "$logfile" "$logfile.succeed"
`;
}

/**
 * Stages the new version, waits for the job, writes and launches the update script, printing the
 * updater's console lines in order. Resolves true when the caller must exit with 3 (4 in
 * single-job mode); false when the update failed and the listener carries on.
 */
export async function selfUpdate(r: UpdateRequest): Promise<boolean> {
  const now = r.now ?? Date.now;
  const { term, trace, root } = r;
  try {
    term.writeLine('Runner update in progress, do not shutdown runner.');
    term.writeLine(`Downloading ${r.targetVersion} runner`);
    const newBin = path.join(root, `bin.${r.targetVersion}`);
    const newExt = path.join(root, `externals.${r.targetVersion}`);
    const binTarget = await readlink(path.join(root, 'bin')).catch(() => '');
    if (binTarget !== newBin) {
      await rm(newBin, { recursive: true, force: true });
      await rm(newExt, { recursive: true, force: true });
      await mkdir(path.join(r.workDir, '_update'), { recursive: true });
      await cp(path.join(root, 'bin'), newBin, { recursive: true, verbatimSymlinks: true });
      await cp(path.join(root, 'externals'), newExt, { recursive: true, verbatimSymlinks: true });
      await writeFile(path.join(newBin, VERSION_FILE), `${r.targetVersion}\n`);
      await rm(path.join(r.workDir, '_update'), { recursive: true, force: true });
    }
    // CopyLatestRunnerToRoot: every file at the package's root is deleted and copied into the
    // runner root, before the wait for the job (so while a job runs, as the runner user).
    for (const [name, text] of PACKAGE_ROOT_FILES) {
      const file = path.join(root, name);
      await rm(file, { force: true });
      await writeFile(file, text, { mode: 0o755 });
    }
    trace.info('SelfUpdater', `Staged runner ${r.targetVersion} in ${newBin}.`);
    term.writeLine('Waiting for current job finish running.');
    await r.waitForJob();
    trace.info('SelfUpdater', 'All running job has exited.');
    term.writeLine('Generate and execute update script.');
    const logFile = path.join(root, '_diag', `SelfUpdate-${fileStamp(now())}.log`);
    const script = path.join(r.workDir, '_update.sh');
    await mkdir(r.workDir, { recursive: true });
    await writeFile(
      script,
      updateScript({
        root,
        listenerPid: r.listenerPid,
        currentVersion: r.currentVersion,
        targetVersion: r.targetVersion,
        logFile,
        pollSeconds: r.pollSeconds,
        settleSeconds: r.settleSeconds,
      }),
      { mode: 0o755 },
    );
    // IOUtil.DeleteFile("update.finished"): relative to the listener's cwd, like the script's touch
    await rm('update.finished', { force: true });
    const fd = openSync(logFile, 'a', 0o644);
    try {
      // detached and in its own session: it must outlive the listener it waits for
      const child = spawn('bash', [script], { cwd: process.cwd(), detached: true, stdio: ['ignore', fd, fd] });
      child.unref();
    } finally {
      closeSync(fd);
    }
    term.writeLine('Runner will exit shortly for update, should be back online within 10 seconds.');
    return true;
  } catch (err) {
    trace.error('SelfUpdater', (err as Error).stack ?? String(err));
    term.writeError(`Runner update failed: ${(err as Error).message}`);
    return false;
  } finally {
    term.writeLine('Runner update process finished.');
  }
}
