/**
 * POSIX ACLs and `user.*` extended attributes on the home's recorded directories (and the home
 * itself). A recorded file that gained them is replaced by a fresh copy (its ctime moved, see
 * home-diff.ts); a directory cannot be replaced, so its ACL entries beyond the mode and its user
 * attributes are removed with Debian's `acl` and `attr` tools. Node has no xattr API.
 *
 * The tools run as root, without a shell, with `--` before the paths and without following links
 * (`-P`, `-h`); every path is checked to be a directory (lstat) just before. Names that are not
 * valid UTF-8 cannot be passed as arguments and are reported instead.
 */
import { existsSync, lstatSync } from 'node:fs';
import { runCommand } from '../lib/process.js';
import { shown, isGone } from '../lib/nofollow.js';
import type { TreeIndex } from './baseline.js';

const GETFACL = '/usr/bin/getfacl';
const SETFACL = '/usr/bin/setfacl';
const GETFATTR = '/usr/bin/getfattr';
const SETFATTR = '/usr/bin/setfattr';

/** Paths per tool invocation: far below ARG_MAX even for 4 KiB paths. */
const PATHS_PER_CALL = 256;
/** A tool reading a few thousand directories' attributes; generous on a loaded 2-core host. */
const TOOL_TIMEOUT_MS = 60_000;
/** The C locale: the tools then escape every non-ASCII or special byte of a name as \ooo. */
const TOOL_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

/** True when the acl and attr tools are installed (fixed paths: root's PATH may hold shims). */
export function hasAttrTools(): boolean {
  return [GETFACL, SETFACL, GETFATTR, SETFATTR].every((p) => existsSync(p));
}

/** Recorded directories (byte-string rels, '' is the home) not inside a kept path. */
export function recordedDirs(index: TreeIndex, keep: { has(rel: string): boolean }): string[] {
  const out: string[] = [];
  for (const e of index.entries.values()) if (e.type === 'dir' && (e.rel === '' || !keep.has(e.rel))) out.push(e.rel);
  return out.sort();
}

/** Reverses the tools' \ooo escapes (attr's quote()): a byte string. */
function unquote(s: string): string {
  return Buffer.from(
    s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))),
    'latin1',
  ).toString('latin1');
}

interface Targets {
  /** UTF-8 absolute path → rel (byte string), for directories that are still directories. */
  paths: Map<string, string>;
  problems: string[];
}

function targets(home: string, rels: readonly string[]): Targets {
  const paths = new Map<string, string>();
  const problems: string[] = [];
  for (const rel of rels) {
    const abs = rel === '' ? home : `${home}/${rel}`;
    const buf = Buffer.from(abs, 'latin1');
    const text = buf.toString('utf8');
    const show = rel === '' ? '~' : `~/${shown(rel)}`;
    if (!Buffer.from(text, 'utf8').equals(buf)) {
      problems.push(`home: ${show}: name is not valid UTF-8, its ACLs and attributes cannot be checked`);
      continue;
    }
    try {
      if (lstatSync(buf).isDirectory()) paths.set(text, rel);
    } catch (err) {
      if (!isGone(err)) throw err;
    }
  }
  return { paths, problems };
}

function chunks<T>(xs: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += PATHS_PER_CALL) out.push(xs.slice(i, i + PATHS_PER_CALL));
  return out;
}

async function tool(cmd: string, args: string[]): Promise<string> {
  const r = await runCommand(cmd, args, { timeoutMs: TOOL_TIMEOUT_MS, env: TOOL_ENV, maxOutputBytes: 16 << 20 });
  // getfattr exits 1 when a file has no attribute matching; only a timeout or signal is a failure.
  if (r.timedOut || r.signal || (r.code !== 0 && r.code !== 1)) {
    throw new Error(`${cmd} failed (${r.timedOut ? 'timed out' : (r.signal ?? `exit ${r.code}`)}): ${r.stderr.trim().slice(0, 200)}`);
  }
  if (r.code === 1 && cmd !== GETFATTR) throw new Error(`${cmd} failed: ${r.stderr.trim().slice(0, 200)}`);
  return r.stdout;
}

/** Per file: the names under each "# file: " header of getfacl/getfattr output (byte strings). */
function parseByFile(out: string): Map<string, string[]> {
  const found = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = [];
      found.set(unquote(line.slice(8)), cur);
    } else if (cur && line !== '' && !line.startsWith('#')) cur.push(line);
  }
  return found;
}

/** What is left: one line per directory with extended ACL entries or user attributes. */
export async function findDirAttrs(home: string, rels: readonly string[]): Promise<string[]> {
  const { paths, problems } = targets(home, rels);
  const homeLen = home.length;
  const show = (p: string): string => (p.length <= homeLen ? '~' : `~/${shown(p.slice(homeLen + 1))}`);
  for (const batch of chunks([...paths.keys()])) {
    const acls = parseByFile(await tool(GETFACL, ['-P', '-s', '-p', '--', ...batch]));
    for (const p of acls.keys()) problems.push(`home: ${show(p)} carries a POSIX ACL beyond its mode`);
    const xattrs = parseByFile(await tool(GETFATTR, ['-h', '--absolute-names', '-m', '^user\\.', '--', ...batch]));
    for (const [p, names] of xattrs) if (names.length > 0) problems.push(`home: ${show(p)} carries user attributes (${names.join(', ')})`);
  }
  return problems;
}

/** Removes extended ACL entries, default ACLs and user attributes of the recorded directories; returns problems. */
export async function stripDirAttrs(home: string, rels: readonly string[]): Promise<string[]> {
  const { paths, problems } = targets(home, rels);
  for (const batch of chunks([...paths.keys()])) {
    await tool(SETFACL, ['-P', '-b', '-k', '--', ...batch]);
    const xattrs = parseByFile(await tool(GETFATTR, ['-h', '--absolute-names', '-m', '^user\\.', '--', ...batch]));
    for (const [p, names] of xattrs) {
      const text = Buffer.from(p, 'latin1').toString('utf8');
      for (const name of names) {
        // A name the tool had to escape cannot be handed back to setfattr unambiguously.
        if (name.includes('\\') || name.includes('=')) {
          problems.push(`home: ${shown(p)}: user attribute with an unusual name left in place`);
          continue;
        }
        await tool(SETFATTR, ['-h', '-x', name, '--', text]);
      }
    }
  }
  return problems;
}
