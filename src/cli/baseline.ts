/**
 * `runner-warden baseline [--home] [--install] [--system]`: records the runner user's home as its
 * baseline (manifest plus root-only copy, baseline.ts), the runner installation's manifest
 * (install-manifest.ts) and the system baseline of the whole-host integrity check
 * (integrity/system-baseline.ts). Run at image build, or by the agent at first boot. Without a flag
 * all three are taken. The policy's home.keep paths (caches) are left out of the home baseline.
 */
import type { Logger } from '../lib/log.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { describeError } from '../lib/errors.js';
import type { Policy } from '../policy/types.js';
import type { Slot } from '../cleanup/types.js';
import { takeBaseline } from '../cleanup/baseline.js';
import { takeInstallManifest } from '../cleanup/install-manifest.js';
import { takeSystemBaseline } from '../integrity/system-baseline.js';
import { agentExclusions, exceptionPatterns } from '../integrity/surfaces.js';
import { EXIT, commandOptions, type CliIO } from './io.js';
import { BASELINE_USAGE as USAGE } from './usage.js';

/** What baselineCommand needs from the composition root. */
export interface BaselineDeps {
  slot: Slot;
  policy: Policy;
  log: Logger;
  clock?: Clock;
}

/** Runs the command; returns 0 on success, 1 when a record could not be taken, 64 on usage errors. */
export async function baselineCommand(args: readonly string[], io: CliIO, deps: BaselineDeps): Promise<number> {
  const opts = commandOptions(args, { flags: ['home', 'install', 'system'] }, USAGE, io);
  if (typeof opts === 'number') return opts;
  const both = !opts.home && !opts.install && !opts.system;
  const clock = deps.clock ?? systemClock;
  let rc: number = EXIT.ok;
  if (both || opts.home) {
    try {
      const s = await takeBaseline(deps.slot, { keep: deps.policy.cleanup.home.keep, clock });
      io.stdout.write(
        `home baseline of ${deps.slot.user.home}: ${s.entries} entries, ${s.files} files, ${s.bytes} bytes (${s.durationMs} ms)\n`,
      );
    } catch (err) {
      io.stderr.write(`home baseline failed: ${describeError(err)}\n`);
      rc = 1;
    }
  }
  if (both || opts.install) {
    try {
      const m = await takeInstallManifest(deps.slot, clock);
      io.stdout.write(`runner installation manifest of ${deps.slot.runnerRoot}: ${m.entries.size} entries\n`);
    } catch (err) {
      io.stderr.write(`runner installation manifest failed: ${describeError(err)}\n`);
      rc = 1;
    }
  }
  if (both || opts.system) {
    try {
      const s = await takeSystemBaseline({
        stateDir: deps.slot.stateDir,
        surfaces: deps.policy.host.integrity.surfaces,
        exceptions: exceptionPatterns(deps.policy.host.integrity),
        excluded: agentExclusions(deps.slot),
        user: deps.slot.user,
        skipPids: [process.pid],
        now: () => clock.now(),
      });
      io.stdout.write(
        `system baseline ${s.file}: ${s.files} files, ${s.objects} kernel, network and account objects (${s.durationMs} ms)\n`,
      );
      for (const u of s.unreadable) io.stderr.write(`system baseline: unreadable: ${u}\n`);
    } catch (err) {
      io.stderr.write(`system baseline failed: ${describeError(err)}\n`);
      rc = 1;
    }
  }
  deps.log.info({ rc }, 'baseline taken');
  return rc;
}
