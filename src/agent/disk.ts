/**
 * Free disk as the decision must see it: after the trash is empty. The workdir step renames the
 * job's `_work` into the trash and deletes it in the background, so a figure taken during
 * verification still counts the job's files; when that figure is below a watermark and the trash
 * is not empty yet, the settle path waits (bounded) for the deletion and measures again.
 */
import { readdir } from 'node:fs/promises';
import type { Slot } from '../cleanup/types.js';
import { measureWorkDisk } from '../cleanup/verify.js';

/** Free space and inodes of the work filesystem, in percent. */
export interface DiskFigures {
  freePercent: number;
  freeInodesPercent: number;
}

/** The work filesystem and the trash. */
export interface DiskPort {
  /** True when the background deletion has nothing left to delete. */
  trashEmpty(): Promise<boolean>;
  measure(): Promise<DiskFigures>;
}

/** The real work filesystem of a slot. */
export function realDisk(slot: Slot): DiskPort {
  return {
    trashEmpty: async () => (await readdir(slot.trashDir).catch(() => [] as string[])).length === 0,
    measure: () => measureWorkDisk(slot.workDir),
  };
}
