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
export async function lookupUser(
  name: string,
  passwdFile = '/etc/passwd',
): Promise<UserInfo | undefined> {
  const text = await readFile(passwdFile, 'utf8');
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 7) {
      return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '', shell: f[6] ?? '' };
    }
  }
  return undefined;
}
