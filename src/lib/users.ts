import { readFile } from 'node:fs/promises';

/** A local account, as the password database has it. */
export interface UserInfo {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/**
 * Looks a user up in `passwdFile` (default /etc/passwd). Returns undefined when absent. The agent
 * reads the file rather than calling getent so it works the same in tests and minimal images.
 */
export async function lookupUser(name: string, passwdFile = '/etc/passwd'): Promise<UserInfo | undefined> {
  const text = await readFile(passwdFile, 'utf8');
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 7) {
      return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '', shell: f[6] ?? '' };
    }
  }
  return undefined;
}

/** A group of the group database. */
export interface GroupInfo {
  name: string;
  gid: number;
  members: string[];
}

/** Reads `groupFile` (default /etc/group); malformed lines are skipped. */
export async function readGroups(groupFile = '/etc/group'): Promise<GroupInfo[]> {
  const text = await readFile(groupFile, 'utf8');
  const out: GroupInfo[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || f[0] === '' || !/^\d+$/.test(f[2] ?? '')) continue;
    out.push({
      name: f[0] as string,
      gid: Number(f[2]),
      members: (f[3] ?? '')
        .split(',')
        .map((m) => m.trim())
        .filter((m) => m !== ''),
    });
  }
  return out;
}

/** The groups `user` belongs to: its primary group (by gid) and every group listing it as a member. */
export async function groupsOfUser(user: Pick<UserInfo, 'name' | 'gid'>, groupFile = '/etc/group'): Promise<GroupInfo[]> {
  return (await readGroups(groupFile)).filter((g) => g.gid === user.gid || g.members.includes(user.name));
}

/** Every account of `passwdFile` (default /etc/passwd); malformed lines are skipped. */
export async function listUsers(passwdFile = '/etc/passwd'): Promise<UserInfo[]> {
  const out: UserInfo[] = [];
  for (const line of (await readFile(passwdFile, 'utf8')).split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || f[0] === '' || !/^\d+$/.test(f[2] ?? '') || !/^\d+$/.test(f[3] ?? '')) continue;
    out.push({ name: f[0] as string, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '', shell: f[6] ?? '' });
  }
  return out;
}
