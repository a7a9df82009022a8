/**
 * Lays out a simulated runner installation shaped like the real tarball (actions-runner-linux-x64):
 *
 *   <root>/bin/Runner.Listener, bin/Runner.Worker   sh wrappers exec'ing node + tsx on listener.ts / worker.ts
 *   <root>/bin/runner.version, bin/*.dll            version marker and placeholder assemblies
 *   <root>/externals/node20/bin/node                symlink to this node
 *   <root>/run.sh, run-helper.sh.template, config.sh, env.sh, safe_sleep.sh, svc.sh
 *   <root>/_diag, <root>/_work                      owned by `owner` when given
 *
 * Everything is root-owned and world-readable/executable; the root dir itself, `_diag` and `_work`
 * are chowned to `owner` because the runner writes `.runner`, `.env`, `_diag` and `_work` there.
 */
import { chmod, chown, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { binWrapper, CONFIG_SH, ENV_SH, RUN_HELPER_TEMPLATE, RUN_SH, SAFE_SLEEP_SH, SVC_SH } from './scripts.js';
import { DEFAULT_RUNNER_VERSION, VERSION_FILE } from './version.js';

/** Options of installSimulatedRunner; defaults: version 2.336.0, no chown. */
export interface InstallOptions {
  version?: string;
  /** The runner user: gets the root dir, `_diag` and `_work` (never `bin/`). */
  owner?: { uid: number; gid: number };
  /**
   * Defaults for the simulator's RUNNER_SIM_* knobs (listener.ts, worker.ts), written into the
   * `bin/` wrappers; the environment still wins. Tests use it to shorten the real runner's waits
   * (a cancelled step's 7.5 s + 2.5 s, update.sh's 2 s poll) where the agent builds the environment.
   */
  simEnv?: Record<string, string>;
}

/** Placeholder assemblies, named like the real ones so layout checks find them. */
const PLACEHOLDER_DLLS = ['Runner.Listener.dll', 'Runner.Worker.dll', 'Runner.Common.dll', 'Runner.Sdk.dll'];

let bundled: Promise<{ listener: string; worker: string }> | undefined;

/** The listener and worker as single ESM files (built once per process with esbuild). */
function simBundles(here: string): Promise<{ listener: string; worker: string }> {
  bundled ??= (async () => {
    const one = async (entry: string): Promise<string> => {
      const r = await build({
        entryPoints: [path.join(here, entry)],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        write: false,
        logLevel: 'silent',
        // Bundled CommonJS dependencies call require(); give the ESM bundle one.
        banner: {
          js: "import { createRequire as __rwCreateRequire } from 'node:module'; const require = __rwCreateRequire(import.meta.url);",
        },
      });
      return r.outputFiles[0]?.text ?? '';
    };
    const [listener, worker] = await Promise.all([one('listener.ts'), one('worker.ts')]);
    return { listener, worker };
  })();
  return bundled;
}

/** Installs the simulated runner into `root` (created if missing; existing layout files are replaced). */
export async function installSimulatedRunner(root: string, opts: InstallOptions = {}): Promise<void> {
  const version = opts.version ?? DEFAULT_RUNNER_VERSION;
  const abs = path.resolve(root);
  const here = path.dirname(fileURLToPath(import.meta.url));
  const bin = path.join(abs, 'bin');
  await mkdir(abs, { recursive: true, mode: 0o755 });
  await chmod(abs, 0o755);
  await rm(bin, { recursive: true, force: true });
  await mkdir(bin, { mode: 0o755 });

  const exe = async (file: string, text: string): Promise<void> => {
    await writeFile(file, text, { mode: 0o755 });
    await chmod(file, 0o755);
  };
  const plain = async (file: string, text: string): Promise<void> => {
    await writeFile(file, text, { mode: 0o644 });
    await chmod(file, 0o644);
  };

  // The listener and worker are bundled into the installation itself, like a real runner's
  // binaries: the runner user then needs no access to this checkout (which may sit in a directory
  // only root can enter, as a CI clone does), and no TypeScript loader runs per process.
  const bundles = await simBundles(here);
  await mkdir(path.join(bin, 'sim'), { mode: 0o755 });
  await chmod(path.join(bin, 'sim'), 0o755);
  await plain(path.join(bin, 'sim', 'listener.mjs'), bundles.listener);
  await plain(path.join(bin, 'sim', 'worker.mjs'), bundles.worker);
  await exe(path.join(bin, 'Runner.Listener'), binWrapper(process.execPath, path.join(bin, 'sim', 'listener.mjs'), abs, opts.simEnv));
  await exe(path.join(bin, 'Runner.Worker'), binWrapper(process.execPath, path.join(bin, 'sim', 'worker.mjs'), abs, opts.simEnv));
  await plain(path.join(bin, VERSION_FILE), `${version}\n`);
  for (const dll of PLACEHOLDER_DLLS) {
    await plain(path.join(bin, dll), `simulated ${dll} ${version} (runner-warden runner simulator)\n`);
  }

  const ext = path.join(abs, 'externals');
  await rm(ext, { recursive: true, force: true });
  await mkdir(path.join(ext, 'node20', 'bin'), { recursive: true, mode: 0o755 });
  for (const d of [ext, path.join(ext, 'node20'), path.join(ext, 'node20', 'bin')]) await chmod(d, 0o755);
  await symlink(process.execPath, path.join(ext, 'node20', 'bin', 'node'));

  await exe(path.join(abs, 'run.sh'), RUN_SH);
  await exe(path.join(abs, 'run-helper.sh.template'), RUN_HELPER_TEMPLATE);
  await exe(path.join(abs, 'config.sh'), CONFIG_SH);
  await exe(path.join(abs, 'env.sh'), ENV_SH);
  await exe(path.join(abs, 'safe_sleep.sh'), SAFE_SLEEP_SH);
  await exe(path.join(abs, 'svc.sh'), SVC_SH);

  for (const d of ['_diag', '_work']) {
    await mkdir(path.join(abs, d), { recursive: true, mode: 0o755 });
    if (opts.owner) await chown(path.join(abs, d), opts.owner.uid, opts.owner.gid);
  }
  if (opts.owner) await chown(abs, opts.owner.uid, opts.owner.gid);
}
