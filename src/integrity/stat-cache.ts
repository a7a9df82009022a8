/**
 * A value derived from one file, kept while the file's metadata is unchanged: the stored baseline
 * (parsed, its digest checked) and the package database (parsed, its set digested) are read once,
 * not at every check. The key is what the check itself trusts for every file it walks: device,
 * inode, size, mode, owner, and mtime and ctime in nanoseconds. A write, a rename over the file or
 * a chmod changes ctime, which not even root can set back without moving the system clock.
 */
import { lstat } from 'node:fs/promises';

/** The metadata signature of a file, or undefined when it does not exist. */
export async function statSignature(file: string): Promise<string | undefined> {
  const s = await lstat(file, { bigint: true }).catch(() => undefined);
  if (!s) return undefined;
  return `${s.dev}:${s.ino}:${s.size}:${s.mode}:${s.uid}:${s.gid}:${s.mtimeNs}:${s.ctimeNs}`;
}

/** One cached value per file path. */
export class ByStat<T> {
  private readonly entries = new Map<string, { sig: string; value: T }>();

  /**
   * The value for `file`: the cached one when its signature still matches, else `compute()`'s
   * (cached unless the file changed while it ran, or it threw).
   */
  async get(file: string, compute: () => Promise<T>): Promise<T> {
    const before = await statSignature(file);
    const hit = this.entries.get(file);
    if (before !== undefined && hit?.sig === before) return hit.value;
    this.entries.delete(file);
    const value = await compute();
    if (before !== undefined && (await statSignature(file)) === before) this.entries.set(file, { sig: before, value });
    return value;
  }
}
