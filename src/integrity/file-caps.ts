/**
 * File capabilities (the `security.capability` attribute `setcap` writes): a copy of python with
 * `cap_setuid+ep` is a root shell as surely as a setuid one, and its mode bits show nothing;
 * setting one on an existing file changes only its ctime, and the content comparison then finds the
 * same bytes. Read with `getcap -r` (libcap2-bin, priority important on Debian) over the file
 * surfaces' trees, one child beside the walk: `filecap:<path>` → the capability text.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';

/** The getcap run: a few thousand files on a stock image; a hung file system must not hold the check. */
const GETCAP_TIMEOUT_MS = 60_000;
/** getcap prints one line per file with capabilities: a handful on an image. */
const GETCAP_MAX_BYTES = 16 * 1024 * 1024;

/** `filecap:<host path>` objects, and what could not be read. */
export interface FileCaps {
  objects: Record<string, string>;
  unreadable: string[];
}

/**
 * Every file with capabilities under `paths` (host view, read under `root`), outside `excluded`.
 * getcap's own complaints (a file gone mid-walk, a path that does not exist) do not count; a
 * missing getcap is named as unreadable, so a baseline that had it and a check that has not differ.
 */
export function readFileCaps(root: string, paths: readonly string[], excluded: readonly string[], signal?: AbortSignal): Promise<FileCaps> {
  const real = (p: string): string => (root === '/' ? p : path.join(root, p));
  const inside = (p: string): boolean => excluded.some((e) => p === e || p.startsWith(`${e}/`));
  return new Promise((resolve) => {
    execFile(
      'getcap',
      ['-r', ...paths.map(real)],
      { timeout: GETCAP_TIMEOUT_MS, maxBuffer: GETCAP_MAX_BYTES, ...(signal ? { signal } : {}) },
      (err, stdout) => {
        const code = (err as NodeJS.ErrnoException | null)?.code;
        if (code === 'ENOENT') return resolve({ objects: {}, unreadable: ['filecap: getcap is not installed (libcap2-bin)'] });
        if (err && (typeof code === 'string' || (err as { killed?: boolean }).killed)) {
          return resolve({ objects: {}, unreadable: [`filecap: getcap: ${typeof code === 'string' ? code : 'timed out'}`] });
        }
        const objects: Record<string, string> = {};
        for (const line of stdout.split('\n')) {
          // libcap 2.4x prints `path = caps`, newer ones `path caps` (`=ep` is every capability).
          const m = /^(.+?)\s+(?:=\s+)?(\S+)$/.exec(line);
          if (!m) continue;
          const file = root === '/' ? (m[1] as string) : `/${path.relative(root, m[1] as string)}`;
          if (!inside(file)) objects[`filecap:${file}`] = m[2] as string;
        }
        resolve({ objects, unreadable: [] });
      },
    );
  });
}
