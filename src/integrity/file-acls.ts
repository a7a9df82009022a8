/**
 * POSIX access ACLs on files (`setfacl`): a named-user entry gives that user access the mode bits
 * do not show when the ACL's mask equals the group bits already there. `setfacl -m u:runner:r
 * /etc/shadow` leaves the mode 0640 and the bytes as they were and changes only the ctime, so the
 * metadata and content comparison finds nothing, and every later job of the runner user reads the
 * password hashes. Read with `getfacl -s` (only files with more than the base entries), like file
 * capabilities: over every tree for the baseline, then only for files and directories whose
 * metadata changed: `acl:<path>` → its entries, a directory's default entries included
 * (`default:user:runner:rwx`). A default ACL changes no file: `setfacl -d -m u:runner:rwx
 * /etc/cron.d` makes every file root later creates there writable by the runner user, a delayed
 * escalation. Setting or removing one changes the directory's ctime; a directory whose ctime moved
 * for its entries is asked too (a few on a check after a job).
 */
import path from 'node:path';
import { shellQuote, type ToolShell } from './tool-shell.js';

/** Like getcap's run: a few thousand files on a stock image; a hung file system must not hold the check. */
const GETFACL_TIMEOUT_MS = 60_000;
/** A few lines per file with an ACL: none or a handful on an image. */
const GETFACL_MAX_BYTES = 16 * 1024 * 1024;

/**
 * `acl:<host path>` objects of the files with extended ACLs among `paths` (recursively for the
 * baseline), read under `root`, outside `excluded`, through `shell`. Without getfacl (the `acl`
 * package, Recommends of the .deb) there are none: at the baseline and at every check alike.
 */
export async function readFileAcls(
  root: string,
  paths: readonly string[],
  recursive: boolean,
  excluded: readonly string[],
  shell: ToolShell,
  signal?: AbortSignal,
): Promise<{ objects: Record<string, string>; unreadable: string[] }> {
  if (paths.length === 0) return { objects: {}, unreadable: [] };
  const real = (p: string): string => (root === '/' ? p : path.join(root, p));
  const inside = (p: string): boolean => excluded.some((e) => p === e || p.startsWith(`${e}/`));
  const script = `command -v getfacl >/dev/null || exit 0\ngetfacl -P -s -p ${recursive ? '-R ' : ''}-- ${paths.map((p) => shellQuote(real(p))).join(' ')}`;
  const r = await shell.run(script, { timeoutMs: GETFACL_TIMEOUT_MS, maxBytes: GETFACL_MAX_BYTES }, signal);
  if (!r.ok) return { objects: {}, unreadable: [`acl: getfacl: ${r.why}`] };
  const objects: Record<string, string> = {};
  for (const block of r.stdout.split(/\n\n+/)) {
    const name = /^# file: (.*)$/m.exec(block)?.[1];
    if (!name) continue;
    const abs = unescapeGetfacl(name);
    const file = root === '/' ? abs : `/${path.relative(root, abs)}`;
    const entries = block
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .join(',');
    if (!inside(file)) objects[`acl:${file}`] = entries;
  }
  return { objects, unreadable: [] };
}

/** getfacl prints unusual bytes of a name as `\ooo`. */
function unescapeGetfacl(s: string): string {
  return Buffer.from(
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    'latin1',
  ).toString('utf8');
}
