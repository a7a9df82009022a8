/**
 * Does a user have sudo rights? Read from the sudoers file and its includes under a root prefix:
 * a rule whose user list names the user, `#uid`, `ALL`, one of its groups (`%group`, `%#gid`) or a
 * User_Alias that does. Membership of a group that reaches root through sudo is a right too.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { readProcFile, readTextSync } from './proc-table.js';

/** Include depth followed at most: sudo itself stops at 128; real images use one or two. */
const MAX_INCLUDE_DEPTH = 8;

/** The user as sudoers matches it. */
export interface SudoSubject {
  name: string;
  uid: number;
  /** Names and gids of every group the user is in (primary included). */
  groups: { name: string; gid: number }[];
}

/** The groups `user` belongs to, from `<root>/etc/group` plus its primary gid. */
export async function groupsOf(root: string, user: { name: string; gid: number }): Promise<{ name: string; gid: number }[]> {
  const out: { name: string; gid: number }[] = [];
  const text = readTextSync(path.join(root, 'etc/group'));
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (!f[0] || f.length < 4) continue;
    const gid = Number(f[2]);
    if (gid === user.gid || (f[3] ?? '').split(',').includes(user.name)) out.push({ name: f[0], gid });
  }
  return out;
}

/** Every sudoers rule line (comments stripped, continuations joined), with its file. */
async function ruleLines(root: string, file: string, depth: number, out: { file: string; line: string }[]): Promise<void> {
  if (depth > MAX_INCLUDE_DEPTH) return;
  const text = readProcFile(path.join(root, file));
  if (text === undefined) return;
  for (const raw of text.replace(/\\\n/g, ' ').split('\n')) {
    const line = raw.trim();
    const inc = /^[#@]include(dir)?\s+(.+)$/.exec(line);
    if (inc) {
      const target = path.isAbsolute(inc[2] as string) ? (inc[2] as string) : path.join(path.dirname(file), inc[2] as string);
      if (inc[1]) {
        // sudo skips names with a dot or ending in ~ inside an includedir.
        const names = (await readdir(path.join(root, target)).catch(() => [] as string[]))
          .filter((n) => !n.includes('.') && !n.endsWith('~'))
          .sort();
        for (const n of names) await ruleLines(root, path.join(target, n), depth + 1, out);
      } else await ruleLines(root, target, depth + 1, out);
      continue;
    }
    const body = line.replace(/(^|\s)#(?![0-9]).*$/, '').trim();
    if (body) out.push({ file, line: body });
  }
}

/** The rules that give `who` sudo rights, as `file: line`; empty = none. */
export async function sudoRights(root: string, who: SudoSubject): Promise<string[]> {
  const lines: { file: string; line: string }[] = [];
  await ruleLines(root, '/etc/sudoers', 0, lines);
  const aliases = new Map<string, string[]>();
  for (const { line } of lines) {
    const m = /^User_Alias\s+(.+)$/.exec(line);
    if (!m) continue;
    for (const def of (m[1] as string).split(':')) {
      const [name, list] = def.split('=');
      if (name && list)
        aliases.set(
          name.trim(),
          list.split(',').map((s) => s.trim()),
        );
    }
  }
  const matches = (item: string, depth = 0): boolean => {
    const neg = item.startsWith('!');
    if (neg) return false;
    if (item === 'ALL' || item === who.name || item === `#${who.uid}`) return true;
    if (item.startsWith('%#')) return who.groups.some((g) => `%#${g.gid}` === item);
    if (item.startsWith('%')) return who.groups.some((g) => `%${g.name}` === item || `%:${g.name}` === item);
    const alias = aliases.get(item);
    return alias !== undefined && depth < MAX_INCLUDE_DEPTH && alias.some((a) => matches(a, depth + 1));
  };
  const out: string[] = [];
  for (const { file, line } of lines) {
    if (/^(Defaults|User_Alias|Runas_Alias|Host_Alias|Cmnd_Alias|Cmd_Alias)\b/.test(line)) continue;
    const users = line.split(/\s+/)[0] ?? '';
    if (users.split(',').some((u) => matches(u.trim()))) out.push(`${file}: ${line}`);
  }
  return out;
}
