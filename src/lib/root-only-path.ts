/**
 * Whether only root can change what a path names. The agent writes its state (the quarantine fact,
 * state.json, the journal, the trash) as root: if another user owns or can write the directory, or
 * any directory above it, that user can rename it away and put its own in its place (dropping the
 * quarantine fact, or planting links for root to write through). A directory writable by others is
 * acceptable only with the sticky bit (as /tmp): there only an entry's owner may rename it, and the
 * entry below is checked to be root's.
 */
import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';

/** Symbolic links followed while checking one path: more is a loop, or not a layout worth trusting. */
const MAX_LINKS = 16;

/**
 * Why another user could replace `target` (the path, or a missing part of it, or one of its
 * ancestors), or undefined when only root can. Missing components are fine: the agent makes them
 * root-owned, inside the last existing one, which is checked.
 */
export async function whyNotRootOnly(target: string): Promise<string | undefined> {
  let links = 0;
  const check = async (abs: string): Promise<string | undefined> => {
    const parts = abs.split('/').filter((p) => p !== '');
    let cur = '/';
    for (let i = 0; i <= parts.length; i++) {
      if (i > 0) cur = path.join(cur, parts[i - 1] as string);
      let st;
      try {
        st = await lstat(cur);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
      if (st.isSymbolicLink()) {
        // The link itself can only be replaced through its directory, already checked; its target is not.
        if (++links > MAX_LINKS) return `${cur} goes through more than ${MAX_LINKS} symbolic links`;
        const to = path.resolve(path.dirname(cur), await readlink(cur));
        return check(path.join(to, ...parts.slice(i)));
      }
      if (st.uid !== 0) return `${cur} is owned by uid ${st.uid}, not root`;
      const sticky = (st.mode & 0o1000) !== 0;
      if (st.isDirectory() && !sticky && (st.mode & 0o002) !== 0) return `${cur} is writable by every user`;
      if (st.isDirectory() && !sticky && (st.mode & 0o020) !== 0 && st.gid !== 0) return `${cur} is writable by group ${st.gid}`;
    }
    return undefined;
  };
  return check(path.resolve(target));
}
