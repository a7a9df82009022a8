/**
 * One rootless engine from nothing to running, wherever its directory lives: in the job's
 * directory (a cold start in prepare) or beside the per-job directories (a warm engine started
 * while the previous job's host was verified). Returns once the engine runs and its socket
 * accepts; `ready` settles with its first answer. The root-owned record is written before the
 * engine can do anything, so a failure at any point leaves what is needed to stop it.
 */
import { promises as fsp } from 'node:fs';
import { createProcessContainer, type CgroupSupport } from '../lib/cgroup.js';
import { writeFileAtomic } from '../lib/fs.js';
import { readSubids } from './host-checks.js';
import { snapshotHostNet, type HostNet, type HostNetSources } from './host-net.js';
import {
  createEngineDir,
  EngineStartError,
  socketPathProblem,
  startEngine,
  type EngineLayout,
  type StorageDriver,
} from './rootless-engine.js';
import { killEngine, type EngineRecord } from './teardown.js';

/** What a launch needs. */
export interface LaunchOptions {
  layout: EngineLayout;
  user: { name: string; uid: number; gid: number };
  subuidFile: string;
  net: HostNetSources;
  /** The engine's own cgroup: its name under `cgroupParent`. */
  cgroupName: string;
  cgroupParent: string;
  cgroupSupport: CgroupSupport;
  rootlesskit: string;
  enginePath: string;
  mirror: { url?: string; hostLoopback: boolean };
  storageDriver?: StorageDriver;
  /**
   * The host's network as the previous job's verification saw it, after its engine was gone
   * (nothing of the runner user has run since); otherwise a fresh snapshot is taken here.
   */
  netBefore?: HostNet;
  signal: AbortSignal;
}

/** A running engine and its record (pid included). */
export interface Launched {
  layout: EngineLayout;
  rec: EngineRecord & { pid: number };
  /**
   * Spawn to first /_ping answer, in ms. Rejects with EngineStartError after the engine's
   * processes were killed (so clients waiting on its socket get an error).
   */
  ready: Promise<number>;
}

/**
 * Starts the engine. On a failure before it runs, its processes are killed (the caller moves its
 * directory aside) and the error is rethrown; a later failure rejects `ready` the same way.
 */
export async function launchEngine(o: LaunchOptions): Promise<Launched> {
  const { layout } = o;
  const deep = socketPathProblem(layout);
  if (deep) throw new EngineStartError(`${deep.what}; fix: ${deep.fix}`, '');
  // Independent of each other: at once (the host net snapshot's iptables runs are the slowest part).
  const [subuids, net, container] = await Promise.all([
    readSubids(o.subuidFile, o.user),
    o.netBefore ?? snapshotHostNet(o.net),
    createProcessContainer(o.cgroupName, { parent: o.cgroupParent, support: o.cgroupSupport }),
  ]);
  const rec: EngineRecord = { subuids, net, startedAt: new Date().toISOString() };
  if (container.path !== undefined && container.kind !== 'none') {
    rec.cgroup = container.path;
    rec.cgroupKind = container.kind;
  }
  await writeFileAtomic(layout.record, JSON.stringify(rec));
  let pid: number | undefined;
  try {
    await createEngineDir(layout, o.user);
    const started = await startEngine(
      {
        layout,
        user: o.user,
        rootlesskit: o.rootlesskit,
        path: o.enginePath,
        ...(o.mirror.url ? { mirror: o.mirror.url } : {}),
        hostLoopback: o.mirror.hostLoopback,
        ...(o.storageDriver ? { storageDriver: o.storageDriver } : {}),
        container,
        signal: o.signal,
      },
      async (p) => {
        pid = p;
        await writeFileAtomic(layout.record, JSON.stringify({ ...rec, pid: p }));
      },
    );
    const running = { ...rec, pid: started.pid };
    const ready = started.ready.catch(async (err: unknown) => {
      await killEngine(running).catch(() => undefined);
      throw err;
    });
    // Whoever takes the engine awaits `ready`; until then a failure must not be an unhandled rejection.
    ready.catch(() => undefined);
    return { layout, rec: running, ready };
  } catch (err) {
    await killEngine(pid === undefined ? rec : { ...rec, pid }).catch(() => undefined);
    throw err;
  }
}

/** Creates the root-owned 0711 parent of a warm engine's directory (the engine user may pass, not list). */
export async function createWarmParent(dir: string): Promise<void> {
  await fsp.mkdir(dir, { mode: 0o711 });
  await fsp.chmod(dir, 0o711);
}
