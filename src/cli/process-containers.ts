/**
 * The per-listener process containers (cgroups) of one slot: one parent per slot, named after its
 * state directory, so containers a crashed agent of this slot left are removed at boot, and never
 * another slot's (or another test's).
 */
import { readdir, rmdir, stat } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Logger } from '../lib/log.js';
import { createProcessContainer, detectCgroupSupport, openProcessContainer, DEFAULT_CGROUP_PARENT } from '../lib/cgroup.js';
import type { Slot } from '../cleanup/types.js';
import type { ProcessContainerFactory } from '../agent/deps.js';

type CgroupSupport = Awaited<ReturnType<typeof detectCgroupSupport>>;

/** The cgroup parent (relative to each hierarchy's mount point) of the slot whose state is in `stateDir`. */
export function slotCgroupParent(stateDir: string): string {
  return `${DEFAULT_CGROUP_PARENT}/slot-${createHash('sha256').update(path.resolve(stateDir)).digest('hex').slice(0, 12)}`;
}

/** The slot's process containers: the agent's port, and `close` removing the (empty) parent. */
export interface SlotContainers {
  port: ProcessContainerFactory;
  close(): Promise<void>;
}

/** Detects cgroup support, removes what a previous agent of this slot left, and builds the port. */
export async function slotContainers(slot: Slot, log: Logger): Promise<SlotContainers> {
  const parent = slotCgroupParent(slot.stateDir);
  const support = await detectCgroupSupport();
  await removeStaleContainers(support, parent, log);
  // Unique per agent instance: two agents (or two tests) must never share a cgroup.
  const instance = randomBytes(3).toString('hex');
  return {
    port: {
      create: async (name) => {
        const c = await createProcessContainer(`${name.replace(/[^A-Za-z0-9._-]/g, '_')}-${instance}`, { parent, support });
        slot.cgroup = c.path;
        return {
          add: (pid: number) => c.add(pid),
          ...(c.path ? { path: c.path } : {}),
          remove: async () => {
            await c.remove();
            if (slot.cgroup === c.path) delete slot.cgroup;
          },
        };
      },
    },
    async close() {
      // The slot's (empty) cgroup parent: each job's container was removed after its cleanup.
      for (const mount of [support.v2, support.v1Freezer]) {
        if (mount) await rmdir(path.join(mount, parent)).catch(() => {});
      }
    },
  };
}

/** Kills and removes the process containers a previous agent of this slot left (after a crash). */
async function removeStaleContainers(support: CgroupSupport, parent: string, log: Logger): Promise<void> {
  for (const mount of [support.v2, support.v1Freezer]) {
    if (!mount) continue;
    const dir = path.join(mount, parent);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const child = path.join(dir, name);
      if (!(await stat(child).catch(() => undefined))?.isDirectory()) continue;
      await openProcessContainer(child)
        .remove()
        .then(() => log.info({ cgroup: child }, 'removed a process container left by a previous agent'))
        .catch((err: unknown) => log.warn({ cgroup: child, err: String(err) }, 'could not remove a stale process container'));
    }
  }
}
