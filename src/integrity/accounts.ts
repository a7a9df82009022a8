/**
 * The account databases, the package set and the image's identity, read under the check's root:
 * users (`user:<name>`), groups (`group:<name>`), installed packages (`package:<name>:<arch>`).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { HostIdentity } from './types.js';
import type { ByStat } from './stat-cache.js';
import { readTextSync } from './proc-table.js';

type Objects = Record<string, string>;

/** A passwd entry, as far as the check needs it. */
export interface Account {
  name: string;
  uid: number;
  home: string;
}

/**
 * Users and groups as objects, plus the account list (for homes and uid → name). Read
 * synchronously: three small files, read whole at every check (no cache to trust).
 */
export function readAccounts(root: string): { objects: Objects; users: Account[] } {
  const objects: Objects = {};
  const users: Account[] = [];
  const shadow = new Map<string, string>();
  for (const line of readTextSync(path.join(root, 'etc/shadow')).split('\n')) {
    const f = line.split(':');
    if (f[0] && f.length > 1) shadow.set(f[0], passwordState(f[1] ?? ''));
  }
  for (const line of readTextSync(path.join(root, 'etc/passwd')).split('\n')) {
    const f = line.split(':');
    if (!f[0] || f.length < 7) continue;
    users.push({ name: f[0], uid: Number(f[2]), home: f[5] ?? '' });
    objects[`user:${f[0]}`] =
      `uid=${f[2]} gid=${f[3]} home=${f[5]} shell=${f[6]}${shadow.has(f[0]) ? ` password=${shadow.get(f[0])}` : ''}`;
  }
  for (const line of readTextSync(path.join(root, 'etc/group')).split('\n')) {
    const f = line.split(':');
    if (!f[0] || f.length < 4) continue;
    objects[`group:${f[0]}`] = `gid=${f[2]} members=${(f[3] ?? '').split(',').filter(Boolean).sort().join(',')}`;
  }
  return { objects, users };
}

function passwordState(field: string): string {
  if (field === '') return 'empty';
  if (field.startsWith('!') || field === '*') return 'locked';
  return `set:${createHash('sha256').update(field).digest('hex').slice(0, 12)}`;
}

/** Installed packages from the dpkg database: `package:<name>:<arch>` → version. */
export async function readPackages(root: string): Promise<Objects> {
  const out: Objects = {};
  const text = await readText(path.join(root, 'var/lib/dpkg/status'));
  for (const para of text.split('\n\n')) {
    const name = /^Package: (.+)$/m.exec(para)?.[1];
    const status = /^Status: (.+)$/m.exec(para)?.[1];
    if (!name || !status?.endsWith(' installed')) continue;
    const arch = /^Architecture: (.+)$/m.exec(para)?.[1] ?? 'all';
    out[`package:${name}:${arch}`] = /^Version: (.+)$/m.exec(para)?.[1] ?? '';
  }
  return out;
}

/** The package set and its digest (sha256 of the sorted `package version` lines). */
export interface PackageSet {
  objects: Objects;
  digest: string;
  count: number;
}

/** The package set under `root`; with `cache`, parsed again only when the database file changed. */
export async function readPackageSet(root: string, cache?: ByStat<PackageSet>): Promise<PackageSet> {
  const compute = async (): Promise<PackageSet> => {
    const objects = await readPackages(root);
    const lines = Object.entries(objects)
      .map(([k, v]) => `${k} ${v}`)
      .sort();
    return { objects, digest: lines.length ? createHash('sha256').update(lines.join('\n')).digest('hex') : '', count: lines.length };
  };
  return cache ? cache.get(path.join(root, 'var/lib/dpkg/status'), compute) : compute();
}

/** The identity of this image: machine id, running kernel, and the digest of the package set. */
export function readIdentity(root: string, proc: string, packages: PackageSet): HostIdentity {
  return {
    machineId: readTextSync(path.join(root, 'etc/machine-id')).trim(),
    kernel: readTextSync(path.join(proc, 'sys/kernel/osrelease')).trim(),
    packageSet: packages.digest,
    packageCount: packages.count,
  };
}

/** A subordinate id range of /etc/subuid or /etc/subgid. */
export interface IdRange {
  start: number;
  count: number;
}

/** The ranges `user` (by name or uid) owns in a subordinate id file; none when absent. */
export function readSubIds(file: string, user: { name: string; uid: number }): IdRange[] {
  const out: IdRange[] = [];
  for (const line of readTextSync(file).split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if (!who || start === undefined || count === undefined) continue;
    if (who !== user.name && who !== String(user.uid)) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isInteger(s) && Number.isInteger(c) && c > 0) out.push({ start: s, count: c });
  }
  return out;
}

/** True when `id` falls in one of the ranges. */
export function inRanges(id: number, ranges: readonly IdRange[]): boolean {
  return ranges.some((r) => id >= r.start && id < r.start + r.count);
}

/** Async for its callers; read with readTextSync's care (a FIFO or device in its place is never read). */
function readText(file: string): Promise<string> {
  return Promise.resolve(readTextSync(file));
}
