/** Shared fixtures of the engine tests: a job in a lab, a usable /dev/net/tun, a busybox image. */
import { promises as fsp } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Lab } from '../../helpers/lab.js';
import { DEFAULT_ENGINE_HOST_PATHS, type EngineHostPaths } from '../../../src/engine/host-checks.js';
import { DEFAULT_POLICY, type Policy } from '../../../src/policy/types.js';
import type { GuardContext, GuardJob } from '../../../src/lib/job-guard.js';
import { silentLogger } from '../../../src/lib/log.js';
export { openTun } from '../../../src/sim/tun.js';

const run = promisify(execFile);

/**
 * A job of the lab's user: a root-owned 0711 per-job directory `<lab>/jobs/<name>`. The key (which
 * names the engine's cgroup) is unique on the machine, as the agent's are: test files running at
 * once, or another checkout's suite, must never share an engine cgroup.
 */
export async function makeJob(lab: Lab, name = `job-${randomBytes(3).toString('hex')}`): Promise<GuardJob> {
  const jobs = path.join(lab.root, 'jobs');
  await fsp.mkdir(jobs, { recursive: true, mode: 0o711 });
  const dir = path.join(jobs, name);
  await fsp.mkdir(dir, { mode: 0o711 });
  return {
    key: `${name}-${randomBytes(4).toString('hex')}`,
    dir,
    user: { name: lab.user.name, uid: lab.user.uid, gid: lab.user.gid, home: lab.user.home },
    runnerRoot: path.join(lab.root, 'runner'),
    stateDir: path.join(lab.root, 'state'),
  };
}

/** The default policy with a docker section patched in. */
export function dockerPolicy(docker: Partial<Policy['docker']>): Policy {
  const p = structuredClone(DEFAULT_POLICY);
  p.docker = { ...p.docker, ...docker };
  return p;
}

/** A guard context on a generous signal (engines start in about a second; CI is loaded). */
export function guardCtx(): GuardContext {
  return { log: silentLogger(), signal: AbortSignal.timeout(120_000) };
}

/** The docker CLI (run as root, like an operator) against one engine socket. */
export function dockerCli(lab: Lab, socket: string): (...args: string[]) => Promise<string> {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    DOCKER_HOST: `unix://${socket}`,
    DOCKER_CONFIG: path.join(lab.root, 'docker-cli'),
  };
  return async (...args: string[]) => {
    const { stdout } = await run('docker', args, { env, timeout: 60_000 });
    return stdout.trim();
  };
}

/** The docker CLI's result without throwing: code, stdout and stderr. */
export async function dockerTry(docker: (...a: string[]) => Promise<string>, ...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    return { ok: true, out: await docker(...args) };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? e.message}` };
  }
}

/** A busybox-static root filesystem tar (built once per lab). */
export async function busyboxTar(root: string): Promise<string> {
  const tar = path.join(root, 'busybox-rootfs.tar');
  if (
    await fsp.stat(tar).then(
      () => true,
      () => false,
    )
  )
    return tar;
  const rootfs = path.join(root, 'busybox-rootfs');
  await fsp.mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await fsp.copyFile('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  await fsp.chmod(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const app of ['sh', 'ls', 'cat', 'sleep', 'echo', 'touch', 'mkdir', 'id', 'mount', 'head', 'nc', 'ps', 'tail', 'env', 'pwd']) {
    await fsp.symlink('busybox', path.join(rootfs, 'bin', app));
  }
  await fsp.mkdir(path.join(rootfs, 'tmp'), { mode: 0o1777 });
  await run('tar', ['-C', rootfs, '-cf', tar, '.']);
  return tar;
}

/** Imports busybox into an engine as `ref`. */
export async function importBusybox(docker: (...a: string[]) => Promise<string>, root: string, ref: string): Promise<void> {
  await docker('import', '-c', 'CMD ["/bin/sh"]', await busyboxTar(root), ref);
}

/** The hooks entry script in the checkout (runs main.ts through tsx when no bundle is built). */
export const HOOKS_SH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/container-hooks/hooks.sh');

/**
 * A copy of the hooks as a built package lays them out, inside `root`: `src/container-hooks/hooks.sh`
 * beside `dist/container-hooks.js` (main.ts bundled with esbuild), so hooks.sh takes its bundle
 * path. A hook call then costs a node start, not a TypeScript compile per call. Returns hooks.sh.
 */
export async function bundledHooks(root: string): Promise<string> {
  const pkg = path.join(root, 'hooks-pkg');
  const script = path.join(pkg, 'src', 'container-hooks', 'hooks.sh');
  await fsp.mkdir(path.dirname(script), { recursive: true, mode: 0o755 });
  await fsp.copyFile(HOOKS_SH, script);
  await fsp.chmod(script, 0o755);
  await build({
    entryPoints: [path.join(path.dirname(HOOKS_SH), 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: path.join(pkg, 'dist', 'container-hooks.js'),
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: 'silent',
  });
  await fsp.chmod(path.join(pkg, 'dist'), 0o755);
  return script;
}

/**
 * A host fit for isolated mode, inside the lab: the runner user's subordinate ids and groups in
 * `<lab>/etc`, a 0666 tun device node, no host engine socket. Tests break one piece at a time.
 */
export async function fitHostPaths(lab: Lab): Promise<EngineHostPaths> {
  const etc = path.join(lab.root, 'etc');
  await fsp.mkdir(etc);
  await fsp.writeFile(path.join(etc, 'subuid'), `${lab.user.name}:300000:65536\n`);
  await fsp.writeFile(path.join(etc, 'subgid'), `${lab.user.name}:300000:65536\n`);
  await fsp.writeFile(path.join(etc, 'group'), `${lab.user.name}:x:${lab.user.gid}:\n`);
  await run('mknod', ['-m', '666', path.join(lab.root, 'tun'), 'c', '10', '200']);
  return {
    ...DEFAULT_ENGINE_HOST_PATHS,
    subuid: path.join(etc, 'subuid'),
    subgid: path.join(etc, 'subgid'),
    group: path.join(etc, 'group'),
    tun: path.join(lab.root, 'tun'),
    hostSockets: [],
  };
}
