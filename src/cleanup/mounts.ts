/**
 * Mounts under a directory the agent is about to delete. `rm -rf` walks into a same-filesystem
 * bind mount and empties its source (`--one-file-system` compares st_dev, which a bind mount
 * shares), so every mount under a tree is detached before the tree is touched,
 * and a tree that still holds a mount is never deleted.
 *
 * Paths are kept as bytes: mountinfo escapes space, tab, newline and backslash as octal (`\040`)
 * and passes every other byte through, including bytes that are not UTF-8.
 */
import { promises as fsp, constants as fsc } from 'node:fs';
import { spawn } from 'node:child_process';

/** One line of /proc/self/mountinfo. */
export interface MountEntry {
  id: number;
  parentId: number;
  /** The mount point as raw bytes. */
  mountPoint: Buffer;
  /** The mount point for logs (invalid UTF-8 shown as U+FFFD). */
  mountPointText: string;
  fsType: string;
  source: string;
  /** The per-superblock options (`rw,user_id=1001,...`): FUSE names the mounting user here. */
  superOptions: string;
}

/** The mount table of the agent's own mount namespace. */
export const MOUNTINFO = '/proc/self/mountinfo';

/**
 * Rounds of detach-and-reread: mounts can be stacked on one point and nested; each round detaches
 * every mount still listed, deepest first. Eight covers any real stack; more means something keeps
 * mounting, and the caller marks the host dirty.
 */
export const UNMOUNT_ROUNDS = 8;

/** How long one `umount` may take: a lazy detach returns at once, a hung call must not block cleanup. */
export const UMOUNT_TIMEOUT_MS = 10_000;

/** Parses mountinfo bytes. Lines it cannot read are skipped. */
export function parseMountInfo(raw: Buffer): MountEntry[] {
  const out: MountEntry[] = [];
  // latin1 maps every byte to one char and back, so byte paths survive the split.
  for (const line of raw.toString('latin1').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    if (left.length < 5) continue;
    const mountPoint = unescapeOctal(left[4] as string);
    out.push({
      id: Number(left[0]),
      parentId: Number(left[1]),
      mountPoint,
      mountPointText: mountPoint.toString('utf8'),
      fsType: unescapeOctal(right[0] ?? '').toString('utf8'),
      source: unescapeOctal(right[1] ?? '').toString('utf8'),
      superOptions: right[2] ?? '',
    });
  }
  return out;
}

/** Reads and parses a mountinfo file (default: the agent's own). */
export async function readMountInfo(file = MOUNTINFO): Promise<MountEntry[]> {
  return parseMountInfo(await fsp.readFile(file));
}

/**
 * Mounts at or below `dir` (at `dir` itself only with includeSelf), deepest first. `dir` must be
 * absolute and is compared byte for byte after removing a trailing slash.
 */
export function mountsUnder(entries: MountEntry[], dir: string | Buffer, includeSelf = false): MountEntry[] {
  let base = typeof dir === 'string' ? Buffer.from(dir) : dir;
  while (base.length > 1 && base[base.length - 1] === 0x2f) base = base.subarray(0, base.length - 1);
  const prefix = base.length === 1 ? base : Buffer.concat([base, Buffer.from('/')]);
  return entries
    .filter((m) => (m.mountPoint.equals(base) ? includeSelf : m.mountPoint.subarray(0, prefix.length).equals(prefix)))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}

/** Options of unmountUnder; defaults: the real mountinfo and `umount`. */
export interface UnmountOptions {
  mountinfoFile?: string;
  /** The umount program (tests pass `false` to simulate a mount that will not go). */
  umountCommand?: string;
  includeSelf?: boolean;
  signal?: AbortSignal;
}

/** What unmountUnder did: mount points detached, and those still mounted afterwards. */
export interface UnmountResult {
  unmounted: string[];
  remaining: string[];
}

/**
 * Detaches (umount -l) every mount under `dir`, deepest first, until mountinfo lists none or
 * UNMOUNT_ROUNDS pass. A lazy detach cannot fail for "busy", so the usual remaining cause is a
 * mount the kernel refuses to drop (a locked mount from another user namespace).
 */
export async function unmountUnder(dir: string | Buffer, opts: UnmountOptions = {}): Promise<UnmountResult> {
  // Never the root directory, never a relative path: "/" would select every mount of the host.
  const bytes = typeof dir === 'string' ? Buffer.from(dir) : dir;
  if (bytes[0] !== 0x2f || bytes.length < 2) throw new Error(`unmountUnder: refusing ${JSON.stringify(bytes.toString())}`);
  const unmounted: string[] = [];
  let left: MountEntry[] = [];
  for (let round = 0; round < UNMOUNT_ROUNDS; round++) {
    left = mountsUnder(await readMountInfo(opts.mountinfoFile), dir, opts.includeSelf);
    if (left.length === 0 || opts.signal?.aborted) break;
    for (const m of left) {
      if (await umountLazy(m.mountPoint, opts.umountCommand ?? 'umount')) unmounted.push(m.mountPointText);
    }
  }
  left = mountsUnder(await readMountInfo(opts.mountinfoFile), dir, opts.includeSelf);
  return { unmounted: [...new Set(unmounted)], remaining: left.map((m) => m.mountPointText) };
}

/**
 * `umount -l` one mount point. A path that is valid UTF-8 goes in argv as is (no
 * canonicalization, so no symlink is resolved); one that is not cannot be put in a Node argv, so
 * the agent opens the directory itself (O_NOFOLLOW) and hands the child `/proc/self/fd/3`.
 */
async function umountLazy(mountPoint: Buffer, cmd: string): Promise<boolean> {
  const text = mountPoint.toString('utf8');
  if (Buffer.from(text).equals(mountPoint)) {
    return (await run(cmd, ['-l', '--no-canonicalize', text])) === 0;
  }
  try {
    const fh = await fsp.open(mountPoint, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
    try {
      return (await run(cmd, ['-l', '/proc/self/fd/3'], fh.fd)) === 0;
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[], fd3?: number): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      stdio: fd3 === undefined ? 'ignore' : ['ignore', 'ignore', 'ignore', fd3],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), UMOUNT_TIMEOUT_MS);
    child.once('error', () => {
      clearTimeout(timer);
      resolve(null);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

function unescapeOctal(s: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      bytes.push(s.charCodeAt(i) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

/** Who could have made a mount, as far as the agent can tell (see attributeMount). */
export type MountOrigin = 'job' | 'other';

/** What attributeMount needs to know about the job and the mount's place. */
export interface MountAttribution {
  /** The runner user's uid. */
  uid: number;
  /** Trees only the job writes (the work dir, the runner home, the per-job dirs): any mount there is the job's. */
  jobTrees: string[];
  /** The job may act as root (sudo granted, the host's engine shared): it could have made any mount. */
  jobMayBeRoot: boolean;
  /** Owner of the mounted filesystem's root directory (lstat of the mount point), when known. */
  rootUid?: number;
  /** Owner of the directory the mount point sits in, when known. */
  parentUid?: number;
}

/**
 * Decides whether a mount visible in the agent's mount namespace counts against the job. An
 * unprivileged job cannot mount in the host's namespace (its own user namespaces' mounts die with
 * its processes), except through FUSE's setuid helper, which records `user_id=<uid>`. So a mount
 * is the job's when: it is under a tree only the job writes; FUSE says the runner user made it;
 * the runner user owns the mounted root or the directory it is mounted on (a place the job made);
 * or the job may act as root. Anything else (a root-owned mount another service made under /tmp)
 * is reported, not blamed on the job.
 */
export function attributeMount(m: MountEntry, a: MountAttribution): MountOrigin {
  if (a.jobMayBeRoot) return 'job';
  const mp = m.mountPointText;
  if (a.jobTrees.some((t) => mp === t || mp.startsWith(`${t.replace(/\/+$/, '')}/`))) return 'job';
  if (m.fsType.startsWith('fuse') && m.superOptions.split(',').includes(`user_id=${a.uid}`)) return 'job';
  if (a.rootUid === a.uid || a.parentUid === a.uid) return 'job';
  return 'other';
}
